"""What a metric's name says: which way it improves, and which metric each task watches.

The one table of metric directions. Checkpointing and early stopping (their `mode`, through the
`metric_mode` resolver), the best-so-far metrics the model logs, the Optuna search's direction and
the comparison report all read it.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from src.cli.errors import ConfigError

# A metric's name after its stage (train/, val/, test/) and before `_best` -> max or min.
DIRECTIONS = {
    "acc": "max",
    "acc_top5": "max",
    "f1": "max",
    "f1_micro": "max",
    "map": "max",
    "ap": "max",
    "precision": "max",
    "recall": "max",
    "exact_match": "max",
    "loss": "min",
    "hamming": "min",
    "calibration_error": "min",
    "epoch_time": "min",
}
# Per-class test metrics are named `<metric>_<class name>`, e.g. test/f1_cat or test/ap_7.
PER_CLASS = ("f1", "ap")
# The validation metric that picks best.ckpt and stops early, unless `monitor` says otherwise.
DEFAULT_MONITOR = {"multiclass": "val/acc", "multilabel": "val/map"}
BEST = "_best"  # `<metric>_best`: the best value of a validation metric so far


def metric_mode(metric: str) -> str:
    """`max` or `min`: which way `metric` improves, e.g. val/acc_best -> max, val/loss -> min."""
    name = metric.rsplit("/", 1)[-1].removesuffix(BEST)
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    prefix, _, class_name = name.partition("_")
    if prefix in PER_CLASS and class_name:
        return DIRECTIONS[prefix]
    raise ConfigError(
        f"no direction is known for metric {metric!r}: name one whose last part is "
        f"{', '.join(DIRECTIONS)} (optionally with {BEST})"
    )


def default_monitor(task: str | None) -> str:
    """The validation metric a task is judged by: val/acc (multi-class) or val/map."""
    return DEFAULT_MONITOR.get(task or "multiclass", DEFAULT_MONITOR["multiclass"])


def check_metrics_are_logged(
    monitors: Mapping[str, str],
    validation: Iterable[str],
    optimized: str | None,
    logged: Iterable[str],
) -> None:
    """Refuse, before training, a monitored metric (config key -> name) that is not one of the
    `validation` metrics, or an `optimized_metric` that is not `logged` at all."""
    validation, logged = list(validation), list(logged)
    for key, name in monitors.items():
        if name not in validation:
            raise ConfigError(
                f"{key}={name} is not a metric the model logs after validation: use one of "
                f"{', '.join(validation)}"
            )
    if optimized and optimized not in logged:
        raise ConfigError(
            f"optimized_metric={optimized} is not a metric this run logs: use one of "
            f"{', '.join(logged)}"
        )


def metric_value(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """The value of metric `name`, for sweepers; None when no metric is named."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric={name} was not logged: use one of {', '.join(sorted(metrics))}"
        )
    return float(metrics[name])
