"""Read checkpoints the way resuming, eval, predict and init_from need: safely, on any device,
and with one line naming a file that is empty, cut off, foreign or not a checkpoint."""

import zipfile
from pathlib import Path
from typing import Any

import torch

from src.cli.errors import ConfigError
from src.models.classifier import ImageClassifier
from src.tracking.checkpoint_io import why_unreadable

# Where a checkpoint keeps the composed config of its run (src/callbacks/run_config.py puts it
# there), which eval and predict rebuild the data and transforms from.
RUN_CONFIG_KEY = "run_config"
EXAMPLE = "logs/train/runs/<run>/checkpoints/best.ckpt"


def existing_file(path: str | Path | None, key: str = "ckpt_path") -> Path:
    """The path of an existing file, or a ConfigError saying what to pass."""
    if not path:
        raise ConfigError(f"{key} is not set: pass {key}={EXAMPLE}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={path} does not exist: pass a .ckpt file, e.g. {EXAMPLE}")
    return path


def load_torch_file(
    path: Path,
    key: str,
    map_location: str = "cpu",
    mmap: bool = False,
    what: str = "checkpoint",
    advice: str = "",
) -> Any:
    """torch.load with the safe loader; a file that is empty, cut off or not a readable `what`
    is a one-line ConfigError naming it and what to pass instead (`advice` for a file that is
    not one). mmap: map the tensors instead of reading them (a quick look)."""
    try:
        mmap = mmap and zipfile.is_zipfile(path)  # torch maps only its zip format
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        why = why_unreadable(path, exc, what)
        if why is None:
            raise
        if "cut off" in why:
            advice = "pass another checkpoint, e.g. last.ckpt or best.ckpt of its run"
        advice = advice or f"pass a .ckpt that src/train.py wrote, e.g. {EXAMPLE}"
        raise ConfigError(f"{key}={path} {why}: {advice}") from exc


def check_checkpoint(checkpoint: Any, path: Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint, if src/train.py wrote it; else a ConfigError saying what it is."""
    init_from = f"to start a new run from its weights use model.init_from={path}"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(
            f"{key}={path} is a torch file but not a Lightning checkpoint: {init_from}"
        )
    missing = {"hyper_parameters", RUN_CONFIG_KEY} - set(checkpoint)
    if missing:
        raise ConfigError(
            f"{key}={path} is not a checkpoint written by src/train.py (missing "
            f"{sorted(missing)}; another project's?): {init_from}"
        )
    return checkpoint


def existing_checkpoint(path: str | Path | None) -> Path:
    """The path of a checkpoint training can continue from, else a ConfigError saying why; its
    tensors are mapped, not read, so this is quick enough to run before any set-up."""
    path = existing_file(path)
    checkpoint = check_checkpoint(load_torch_file(path, "ckpt_path", mmap=True), path)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise ConfigError(
            f"ckpt_path={path} holds weights only (saved with save_weights_only=true), so "
            f"training cannot continue from it: to start a new run from them use "
            f"model.init_from={path}"
        )
    return path


def read_checkpoint(path: str | Path | None, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with torch's safe loader, refusing files that are not one of ours."""
    path = existing_file(path)
    return check_checkpoint(load_torch_file(path, "ckpt_path", map_location), path)


def classifier_from_checkpoint(checkpoint: dict[str, Any]) -> ImageClassifier:
    """Rebuild the classifier from a checkpoint alone, without downloading pretrained weights."""
    hparams = dict(checkpoint["hyper_parameters"])
    net = dict(hparams["net"])
    if net.get("weights"):
        net["weights"] = None  # the checkpoint already holds the trained weights
    hparams["net"] = net
    model = ImageClassifier(**hparams)
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model
