"""What a metric's name says: which way it improves, and which metric each task watches.

The one table of metric directions. Checkpointing and early stopping (their `mode`, through the
`metric_mode` resolver), the best-so-far metrics the model logs, the Optuna search's direction and
the comparison report all read it.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from src.core.errors import ConfigError

# A metric's name after its stage (train/, val/, test/) and before `_best` -> max or min.
DIRECTIONS = {
    "acc": "max",
    "acc_top5": "max",
    "f1": "max",
    "f1_micro": "max",
    "map": "max",
    "ap": "max",
    "auroc": "max",
    "precision": "max",
    "recall": "max",
    "exact_match": "max",
    "loss": "min",
    "hamming": "min",
    "calibration_error": "min",
    "epoch_time": "min",
}
# Per-class test metrics (multi-label) are named `<stage>/per_class/<metric>/<class name>`, e.g.
# test/per_class/f1/cat: a level below the task's metrics, so no class name (`micro`) makes the
# name of another metric (test/f1_micro); a `/` in a class name is logged as `_`.
PER_CLASS = ("f1", "ap")
PER_CLASS_LEVEL = "per_class"
# The validation metric that picks best.ckpt and stops early, unless `monitor` says otherwise.
# Binary data is watched by accuracy at the threshold, like the two-class multi-class model it
# replaces; monitor=val/auroc judges the ranking, whatever the threshold.
DEFAULT_MONITOR = {"multiclass": "val/acc", "binary": "val/acc", "multilabel": "val/map"}
BEST = "_best"  # `<metric>_best`: the best value of a validation metric so far


def metric_mode(metric: str) -> str:
    """`max` or `min`: which way `metric` improves, e.g. val/acc_best -> max, val/loss -> min."""
    parts = metric.split("/")
    if len(parts) == 4 and parts[1] == PER_CLASS_LEVEL and parts[2] in PER_CLASS:
        return DIRECTIONS[parts[2]]
    name = parts[-1].removesuffix(BEST)
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    raise ConfigError(
        f"no direction is known for metric {metric!r}: name one whose last part is "
        f"{', '.join(DIRECTIONS)} (optionally with {BEST})"
    )


def per_class_metric(stage: str, metric: str, class_name: str) -> str:
    """The name one class's metric is logged under, e.g. test/per_class/f1/hot_dog."""
    return f"{stage}/{PER_CLASS_LEVEL}/{metric}/{str(class_name).replace('/', '_')}"


def check_per_class_names(class_names: Iterable[str]) -> None:
    """Refuse two class names that would log under one per-class name (`a/b` and `a_b`)."""
    seen: dict[str, str] = {}
    for name in class_names:
        logged = per_class_metric("test", "f1", name)
        if logged in seen:
            raise ConfigError(
                f"the classes {seen[logged]!r} and {name!r} would log under one name, {logged} "
                "(a / in a class name is logged as _): rename one of them"
            )
        seen[logged] = name


def default_monitor(task: str | None) -> str:
    """The validation metric a task is judged by: val/acc (multi-class, binary) or val/map."""
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
