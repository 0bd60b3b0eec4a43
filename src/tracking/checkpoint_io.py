"""Checkpoints written atomically and synced to disk, read back with a one-line error.

Lightning's own save stages a checkpoint in the system's temporary folder and moves it into
place, which is a copy into the final name where that folder is on another file system than
logs/ (usual on clusters), and nothing is synced to disk: a kill or a crashed node mid-save can
leave a truncated last.ckpt. This plugin writes each checkpoint beside its final name, syncs it,
renames it into place and syncs the folder (src/core/files.py), so the file is always the
old checkpoint or the new one. Remote paths (s3://, gs://, ...) keep Lightning's own save.
"""

import logging
import zipfile
from pathlib import Path
from typing import Any

import fsspec
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, ListConfig

from src.compat import WrappingCheckpointIO
from src.core.errors import ConfigError
from src.core.files import remove_partial_files, sync_folder, write_atomically

log = logging.getLogger(__name__)
ZIP_START = b"PK\x03\x04"  # how every file torch.save writes begins


def is_local(path: str | Path) -> bool:
    """Whether path is on a local (or mounted) file system rather than in object storage."""
    return fsspec.utils.get_protocol(str(path)) in ("file", "local")


class _KeepsWriteErrors:
    """A file for torch.save that remembers why a write failed: torch reports any failure as
    a RuntimeError without the errno, which tells a full disk from a read-only folder."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def save_torch_file(content: Any, path: Path) -> None:
    """torch.save(content, path), a failed write raised as its OSError."""
    with open(path, "wb") as file:
        keeper = _KeepsWriteErrors(file)
        try:
            torch.save(content, keeper)
        except RuntimeError:
            if keeper.error is not None:
                raise keeper.error from None
            raise


def why_unreadable(path: Path, exc: BaseException, what: str = "checkpoint") -> str | None:
    """Why torch.load could not read the file at path (a `what`), as the rest of a sentence;
    None where the file looks whole (the error is then not the file's)."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): it was cut off while it was saved"
    with open(path, "rb") as file:
        start = file.read(len(ZIP_START))
    if start == ZIP_START and not zipfile.is_zipfile(path):
        return f"is cut off ({size} bytes, its end is missing): it was cut off while it was saved"
    first_line = next(iter(str(exc).strip().splitlines()), "")
    if start == ZIP_START and "Weights only load failed" in first_line:
        return "holds pickled Python objects besides tensors, not loaded as they could run code"
    if start != ZIP_START or "PytorchStreamReader" in first_line:
        return f"is not a readable {what} ({type(exc).__name__}: {first_line[:100]})"
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoints, saved atomically and durably (see the module's doc)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        for partial in remove_partial_files(path.parent):
            log.info(f"Removed {partial}, left by a save that was cut off")
        write_atomically(path, lambda partial: save_torch_file(checkpoint, partial))

    def load_checkpoint(self, path: str | Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
            why = why_unreadable(Path(path), exc) if is_local(path) else None
            if why is None:
                raise
            raise ConfigError(
                f"checkpoint {path} {why}: pass another checkpoint, e.g. last.ckpt or best.ckpt "
                "of its run"
            ) from exc

    def remove_checkpoint(self, path: str | Path) -> None:
        if not is_local(path):
            super().remove_checkpoint(path)
            return
        path = Path(path)
        if path.is_file() or path.is_symlink():
            path.unlink()
            sync_folder(path.parent)
            log.debug(f"Removed checkpoint: {path}")
        elif path.exists():  # a sharded checkpoint is a folder: Lightning's own removal
            super().remove_checkpoint(path)


def trainer_plugins(trainer_cfg: DictConfig) -> list[Any]:
    """The Trainer's plugins: the configured `plugins` (if any) with atomic checkpoint saving,
    unless the config chose its own checkpoint plugin (a wrapper, such as Lightning's
    AsyncCheckpointIO without a plugin of its own, wraps the atomic one)."""
    configured = trainer_cfg.get("plugins")
    if isinstance(configured, DictConfig | ListConfig):
        configured = instantiate(configured, _convert_="all")  # a list, not a ListConfig
    plugins = list(configured) if isinstance(configured, list | tuple) else [configured]
    plugins = [p for p in plugins if p is not None]
    wrappers = [p for p in plugins if isinstance(p, WrappingCheckpointIO)]
    strategy = trainer_cfg.get("strategy")
    if isinstance(strategy, DictConfig) and strategy.get("checkpoint_io") is not None:
        return plugins  # the strategy brings its own; Lightning refuses a second
    if wrappers:  # a no-op where the wrapper already wraps a plugin
        wrappers[0].checkpoint_io = AtomicCheckpointIO()
    elif not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins
