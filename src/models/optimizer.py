"""The optimizer over the network's parameter groups, and its schedule, from partial configs."""

import copy
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from src.core.errors import ConfigError
from src.models.param_groups import parameter_groups
from src.models.partial_settings import build_partial

# Keys of a scheduler config that are Lightning's settings, not the scheduler's arguments.
SCHEDULER_LIGHTNING_KEYS = ("interval", "frequency", "monitor")


def build_optimizer(
    net: nn.Module,
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any] | None = None,
    backbone_lr_scale: float = 1.0,
    total_steps: int | Callable[[], int] = 1,
) -> Any:
    """What LightningModule.configure_optimizers returns: the optimizer over the trainable
    parameter groups (src/models/param_groups.py), with its scheduler when one is configured.

    total_steps: the run's optimizer steps, for a scheduler's `total_steps: auto` (one-cycle),
        or a function giving them, called only then (Lightning's estimate sets up the loaders).
    A value a class refuses is a one-line ConfigError naming its key.
    """
    settings = dict(optimizer)
    # without the key every parameter is weight-decayed alike, as torch.optim does
    decay_norm_and_bias = settings.pop("decay_norm_and_bias", True)
    if backbone_lr_scale != 1 and "lr" not in settings:
        raise ConfigError("model.backbone_lr_scale needs optimizer.lr: set it")
    groups = list(
        parameter_groups(
            net,
            lr=settings.get("lr", 0.0),
            weight_decay=settings.get("weight_decay"),
            backbone_lr_scale=backbone_lr_scale,
            decay_norm_and_bias=decay_norm_and_bias,
        )
    )
    if not groups:
        raise ConfigError(
            "every parameter is frozen (model.freeze_until / model.backbone_lr_scale=0): "
            "leave some of the network to train"
        )
    params: Any = groups[0]["params"] if len(groups) == 1 else groups
    fresh = (lambda: params) if len(groups) == 1 else (lambda: [dict(g) for g in groups])
    built = build_partial("optimizer", settings, fresh(), fresh)
    if not scheduler:
        return built
    settings = dict(scheduler)
    lightning_keys = {k: settings.pop(k) for k in SCHEDULER_LIGHTNING_KEYS if k in settings}
    if settings.get("total_steps") == "auto":  # e.g. one-cycle: the run's optimizer steps
        settings["total_steps"] = total_steps() if callable(total_steps) else total_steps
    schedule = build_partial("scheduler", settings, built, lambda: copy.deepcopy(built))
    return {"optimizer": built, "lr_scheduler": {"scheduler": schedule, **lightning_keys}}


def check_optimizer(
    net: nn.Module,
    optimizer: Mapping[str, Any],
    scheduler: Mapping[str, Any] | None = None,
    backbone_lr_scale: float = 1.0,
) -> None:
    """Refuse, before any work, settings the optimizer or scheduler would refuse when training
    starts: both are built once on the network's parameter groups, and dropped."""
    build_optimizer(net, optimizer, scheduler, backbone_lr_scale)
