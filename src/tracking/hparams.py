"""The composed config as flat hyperparameters, and the one list of what is not one.

The HPARAMS record in TensorBoard, the comparison report's columns, the folder names of sweep jobs
and the settings a continued Optuna study must share all leave out the same keys.
"""

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Config keys (and everything under them) that say where a run is recorded, how it is watched or
# started, not what it trains. Overrides of them do not name sweep jobs or tell runs apart.
NOT_HYPERPARAMETERS = (
    "paths",
    "extras",
    "logger",
    "callbacks",
    "hydra",
    "hparams_search",
    "task_name",
    "resume",
    "tags",
    "ckpt_path",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
)

HParamValue = str | int | float | bool
# Where the run config notes the values a finder applied before training (tune=lr: optimizer.lr),
# by their config key: the comparison report shows them as it shows overrides.
APPLIED = "tune.applied"


def is_hyperparameter(key: str) -> bool:
    """Whether a config key or a command-line override (`optimizer.lr`, `+data.x=1`) sets
    something that shapes what a run trains."""
    key = key.partition("=")[0].lstrip("+~")
    return not any(key == k or key.startswith(f"{k}.") for k in NOT_HYPERPARAMETERS)


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
