"""The classifier's settings checked together, each refusal one line naming the key to change."""

from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from src.core.errors import ConfigError
from src.core.metrics import check_per_class_names
from src.models.tasks import TASKS, output_width

MATMUL_PRECISIONS = ("highest", "high", "medium")


def to_plain(value: Any) -> Any:
    """OmegaConf containers to plain dicts and lists (resolved), anything else unchanged: what
    checkpoints keep, loadable with torch.load(weights_only=True)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def check_settings(hp: Mapping[str, Any]) -> None:
    """Refuse settings that contradict each other or the task, before anything is built."""
    if hp["task"] not in TASKS:
        raise ConfigError(f"model.task={hp['task']!r} is not supported: use one of {TASKS}")
    num_classes, task = hp["num_classes"], hp["task"]
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if len(hp["class_names"]) != num_classes:
        raise ConfigError(f"{len(hp['class_names'])} class names for {num_classes} classes")
    weights = {"class_weights": hp["class_weights"], "pos_weight": hp["pos_weight"]}
    for name, value in weights.items():
        if isinstance(value, str) and value != "auto":
            raise ConfigError(f"model.{name}={value!r}: use a list, auto or null")
    if task == "multilabel" and hp["class_weights"] == "auto":
        raise ConfigError(
            "model.class_weights=auto applies to multi-class data: for multi-label data set "
            "model.pos_weight=auto (and class_weights to null)"
        )
    if task == "binary" and hp["class_weights"] is not None:
        raise ConfigError(
            "model.class_weights applies to multi-class data: for binary data weight class 1 "
            "with model.pos_weight (a number, or auto: negatives over positives in the training "
            "data) and set class_weights to null"
        )
    widths = {"class_weights": num_classes, "pos_weight": output_width(task, num_classes)}
    for name, values in weights.items():
        if isinstance(values, int | float) and not isinstance(values, bool):
            values = [values]  # one number: every label's (binary: class 1's) weight
        if isinstance(values, list) and (len(values) != widths[name] or min(values) < 0):
            raise ConfigError(
                f"model.{name} needs {widths[name]} non-negative numbers, got {hp[name]}"
            )
    if not 0 <= hp["label_smoothing"] < 1:
        raise ConfigError(f"model.label_smoothing must lie in [0, 1), got {hp['label_smoothing']}")
    if not hp["backbone_lr_scale"] >= 0:
        raise ConfigError(
            f"model.backbone_lr_scale must be 0 (frozen) or more, got {hp['backbone_lr_scale']}"
        )
    if task == "multilabel":  # each class's test metrics are logged by its name
        check_per_class_names(hp["class_names"])
    if not 0 < hp["threshold"] < 1:
        raise ConfigError(f"model.threshold must lie in (0, 1), got {hp['threshold']}")
    # a setting of the other task would be silently ignored: refuse it instead
    if task == "multiclass" and hp["pos_weight"] is not None:
        raise ConfigError(
            "model.pos_weight applies to multi-label data (and binary data): set it to null"
        )
    if task == "multilabel" and (hp["class_weights"] is not None or hp["label_smoothing"]):
        raise ConfigError(
            "model.class_weights and model.label_smoothing apply to multi-class data: "
            "set them to null and 0"
        )
    if hp["matmul_precision"] not in MATMUL_PRECISIONS:
        raise ConfigError(
            f"model.matmul_precision={hp['matmul_precision']!r}: use highest, high or medium"
        )


def check_head_width(net: nn.Module, task: str, num_classes: int) -> None:
    """Refuse a network whose head does not have the task's outputs: one per class, or one
    logit for binary data (src/models/tasks.py `output_width`)."""
    expected = output_width(task, num_classes)
    width = getattr(net, "num_classes", expected)
    if width != expected:
        wanted = f"{num_classes} classes" if task != "binary" else "binary classes (one logit)"
        raise ConfigError(
            f"the network's head has {width} outputs but the data has {wanted}: "
            "remove model.net.num_classes so it follows the data"
        )


def set_matmul_precision(precision: str) -> None:
    """torch.set_float32_matmul_precision on machines with CUDA (a setting of the process), set
    before the trainer is built, which warns when it is left unset."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision(precision)
