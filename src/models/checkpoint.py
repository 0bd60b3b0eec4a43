"""Read checkpoints the way resuming, eval, predict and init_from need: safely, on any device,
and with one line naming a file that is empty, cut off, foreign or not a checkpoint."""

import inspect
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from src.core.errors import ConfigError
from src.core.runs import RUN_CONFIG_KEY
from src.models.classifier import ImageClassifier
from src.models.trusted_config import refuse_untrusted
from src.tracking.checkpoint_io import why_unreadable

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


def _damaged(source: str, key: str, problem: str) -> ConfigError:
    return ConfigError(
        f"{source} is damaged or incomplete: {key} {problem}: pass a checkpoint that "
        f"src/train.py wrote, e.g. {EXAMPLE}"
    )


def _numbers(value: object, count: int) -> bool:
    numbers = isinstance(value, list) and len(value) == count
    return numbers and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)


def check_hyper_parameters(checkpoint: Mapping[str, Any], source: str) -> None:
    """Refuse hyper_parameters that name code outside the allow-list or cannot build the
    classifier (a key missing, unknown or of the wrong type), in one line naming the key."""
    hparams = checkpoint.get("hyper_parameters")
    refuse_untrusted(hparams, source, "hyper_parameters")
    if not isinstance(hparams, Mapping):
        raise _damaged(source, "hyper_parameters", "is not a mapping")
    settings = inspect.signature(ImageClassifier).parameters
    for key in hparams:
        if key not in settings:
            raise _damaged(source, f"hyper_parameters.{key}", "is not a setting of the classifier")
    for key in ("net", "optimizer"):
        if not isinstance(hparams.get(key), Mapping) or "_target_" not in hparams[key]:
            raise _damaged(source, f"hyper_parameters.{key}", "is not a mapping with a _target_")
    if hparams.get("scheduler") is not None and not isinstance(hparams["scheduler"], Mapping):
        raise _damaged(source, "hyper_parameters.scheduler", "is not a mapping or null")
    if not isinstance(hparams.get("num_classes"), int):
        raise _damaged(source, "hyper_parameters.num_classes", "is not a whole number")
    names = hparams.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _damaged(source, "hyper_parameters.class_names", "is not a list of names")


def check_run_data(checkpoint: Mapping[str, Any], source: str) -> None:
    """Refuse a run config whose data settings name code outside the allow-list or cannot give
    the data and its evaluation transform (a key missing or of the wrong type)."""
    run_config = checkpoint.get(RUN_CONFIG_KEY)
    if not isinstance(run_config, Mapping):
        raise _damaged(source, RUN_CONFIG_KEY, "is not a mapping")
    data = run_config.get("data")
    refuse_untrusted(data, source, "data")
    if not isinstance(data, Mapping):
        raise _damaged(source, "data", "is missing from its run config or not a mapping")
    if not isinstance(data.get("_target_"), str):
        raise _damaged(source, "data._target_", "is missing or not a class name")
    if not isinstance(data.get("eval_transforms") or [], list):
        raise _damaged(source, "data.eval_transforms", "is not a list")
    channels = data.get("channels", 3)
    if channels not in (1, 3):
        raise _damaged(source, "data.channels", "is not 1 or 3")
    for key in ("mean", "std"):  # what normalises without an eval_transforms list
        needed = key in data or data.get("eval_transforms") is None
        if needed and not _numbers(data.get(key), channels):
            count = "one number" if channels == 1 else "three numbers"
            raise _damaged(source, f"data.{key}", f"is not {count} (data.channels={channels})")
    size = data.get("image_size")
    if not (size is None or size == "auto" or (isinstance(size, int) and size > 0)):
        raise _damaged(source, "data.image_size", "is not a positive whole number, auto or null")


def resumable_checkpoint(path: str | Path | None) -> tuple[Path, dict[str, Any]]:
    """The path and content of a checkpoint training can continue from, else a ConfigError
    saying why; its tensors are mapped, not read, so this is quick enough to run before any
    set-up."""
    path = existing_file(path)
    checkpoint = check_checkpoint(load_torch_file(path, "ckpt_path", mmap=True), path)
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise ConfigError(
            f"ckpt_path={path} holds weights only (saved with save_weights_only=true), so "
            f"training cannot continue from it: to start a new run from them use "
            f"model.init_from={path}"
        )
    check_run_data(checkpoint, f"ckpt_path={path}")
    check_hyper_parameters(checkpoint, f"ckpt_path={path}")
    return path, checkpoint


def read_checkpoint(path: str | Path | None, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with torch's safe loader, refusing files that are not one of ours, are
    damaged, or name code to build that is not on the allow-list (src/models/trusted_config.py)."""
    path = existing_file(path)
    checkpoint = load_torch_file(path, "ckpt_path", map_location)
    checkpoint = check_checkpoint(checkpoint, path)
    check_run_data(checkpoint, f"ckpt_path={path}")
    check_hyper_parameters(checkpoint, f"ckpt_path={path}")
    return checkpoint


def classifier_from_checkpoint(
    checkpoint: dict[str, Any], source: str = "the checkpoint"
) -> ImageClassifier:
    """Rebuild the classifier from a checkpoint alone, without downloading pretrained weights;
    its hyper_parameters are checked first (`source` names the file in the error)."""
    check_hyper_parameters(checkpoint, source)
    hparams = dict(checkpoint["hyper_parameters"])
    net = dict(hparams["net"])
    if net.get("weights"):
        net["weights"] = None  # the checkpoint already holds the trained weights
    hparams["net"] = net
    model = ImageClassifier(**hparams)
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model
