"""The composed config as flat hyperparameters (what is not one: src/core/hparams.py)."""

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.core.hparams import is_hyperparameter

HParamValue = str | int | float | bool
# Where the run config notes the values a finder applied before training (tune=lr: optimizer.lr),
# by their config key: the comparison report shows them as it shows overrides.
APPLIED = "tune.applied"


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


def flat_hyperparameters(cfg: DictConfig | Mapping[str, Any]) -> dict[str, HParamValue]:
    """Every resolved config value that shapes a run, keyed by its dotted path."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, HParamValue] = {}
    for key, value in container.items():
        _flatten(value, f"{key}.", flat)
    return {k: v for k, v in flat.items() if is_hyperparameter(k)}
