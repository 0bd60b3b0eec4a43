"""The composed config as flat hyperparameters, for TensorBoard's HPARAMS tab and run reports."""

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Config parts that say where and how a run is recorded, not what was trained.
NOT_HYPERPARAMETERS = ("paths", "extras", "logger", "callbacks", "hydra")
NOT_HYPERPARAMETER_KEYS = ("trainer.default_root_dir",)

HParamValue = str | int | float | bool


def metric_direction(metric: str) -> str:
    """How a search or a report should move a metric: minimize losses and errors, maximize the
    rest."""
    return "minimize" if any(word in metric for word in ("loss", "error")) else "maximize"


def _short(value: Any) -> str:
    """A compact text for a list or a `_target_` config, e.g. RandomAffine(degrees=10)."""
    if isinstance(value, Mapping) and "_target_" in value:
        if str(value["_target_"]).startswith("hydra.utils.get_") and "path" in value:
            return str(value["path"])  # a reference, e.g. torch.float32
        name = str(value["_target_"]).rsplit(".", 1)[-1]
        args = ", ".join(f"{k}={_short(v)}" for k, v in value.items() if not k.startswith("_"))
        return f"{name}({args})"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _flatten(node: Any, prefix: str, into: dict[str, HParamValue]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("_partial_", "_convert_", "_recursive_"):
                continue
            _flatten(value, f"{prefix}{key}.", into)
        return
    key = prefix[:-1]
    if node is None:
        into[key] = "None"
    elif isinstance(node, bool | int | float | str):
        into[key] = node
    else:  # lists (transforms, class names, milestones) as one readable value
        into[key] = _short(node)


def flat_hyperparameters(cfg: DictConfig) -> dict[str, HParamValue]:
    """Every resolved config value that shapes a run, keyed by its dotted path."""
    container = OmegaConf.to_container(cfg, resolve=True)
    flat: dict[str, HParamValue] = {}
    for key, value in container.items():
        if key not in NOT_HYPERPARAMETERS:
            _flatten(value, f"{key}.", flat)
    return {k: v for k, v in flat.items() if k not in NOT_HYPERPARAMETER_KEYS}
