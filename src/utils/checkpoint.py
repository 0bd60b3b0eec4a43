"""Read checkpoints the way eval and predict need: safely, on any device, with clear errors."""

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from src.callbacks.run_config import RUN_CONFIG_KEY
from src.models.classifier import ImageClassifier
from src.utils.errors import ConfigError

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
    model.load_state_dict(checkpoint["state_dict"])
    return model


def allow_data_overrides(argv: list[str]) -> list[str]:
    """Let `data.KEY=VALUE` arguments add to the data settings restored from the checkpoint.

    eval.yaml starts with an empty `data` node that the checkpoint fills in, and Hydra only adds
    keys to it when they are written `+data.KEY=VALUE`; this writes that for the user.
    """
    return [f"+{a}" if a.startswith("data.") and "=" in a else a for a in argv]
