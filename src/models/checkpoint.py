"""Read checkpoints the way eval and predict need: safely, on any device, with clear errors."""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from src.cli.errors import ConfigError
from src.models.classifier import ImageClassifier

# Where a checkpoint keeps the composed config of its run (src/callbacks/run_config.py puts it
# there), which eval and predict rebuild the data and transforms from.
RUN_CONFIG_KEY = "run_config"
EXAMPLE = "logs/train/runs/<run>/checkpoints/best.ckpt"


def existing_checkpoint(path: str | Path | None) -> Path:
    """The path of an existing checkpoint file, or a ConfigError saying what to pass."""
    if not path:
        raise ConfigError(f"ckpt_path is not set: pass ckpt_path={EXAMPLE}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path} does not exist: pass a .ckpt file, e.g. {EXAMPLE}")
    return path


def read_checkpoint(path: str | Path | None, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with torch's safe loader, refusing paths that are not one of ours."""
    path = existing_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"ckpt_path={path} is not a readable checkpoint ({exc})") from exc
    missing = {"state_dict", "hyper_parameters", RUN_CONFIG_KEY} - set(checkpoint)
    if not isinstance(checkpoint, dict) or missing:
        raise ConfigError(
            f"ckpt_path={path} is not a checkpoint written by src/train.py "
            f"(missing {sorted(missing)})"
        )
    return checkpoint


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
