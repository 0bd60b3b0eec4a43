"""Image-classification research template: Lightning modules, data and Hydra entry points."""

import os
from pathlib import Path

from omegaconf import OmegaConf

from src.utils.hparams import metric_direction

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# configs/paths reads this, so runs and tests find data/ and logs/ whatever the working directory.
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))


def _best_metric(task: str | None) -> str:
    """The validation metric that picks the best checkpoint for a task (acc or map)."""
    from src.models.tasks import BEST_METRIC

    return BEST_METRIC.get(task or "multiclass", "acc")


# configs/train.yaml: `monitor: val/${best_metric:${data.task}}`
OmegaConf.register_new_resolver("best_metric", _best_metric, replace=True)


# configs/hydra/sweeper/optuna.yaml: `direction: ${metric_direction:${optimized_metric}}`
OmegaConf.register_new_resolver("metric_direction", metric_direction, replace=True)


def _short_value(item: str) -> str:
    """`key=value` with a long float value cut to 4 significant digits (a label, not the value)."""
    key, _, value = item.partition("=")
    try:
        number = float(value)
    except ValueError:
        return item
    return f"{key}={number:.4g}" if len(value) > 6 and ("." in value or "e" in value) else item


def _sweep_job_dir(number: int, overrides: str) -> str:
    """A sweep job's folder name: its number and overrides, e.g. `1_optimizer=sgd,optimizer.lr=0.1`,
    so TensorBoard's run names say what each run changed (at most 120 characters)."""
    name = str(number)
    for item in overrides.split(","):
        if item and not item.startswith("~"):
            part = _short_value(item).replace("/", "-")
            if len(name) + 1 + len(part) > 120:
                break
            name += ("_" if name == str(number) else ",") + part
    return name


# configs/hydra/default.yaml:
#   `subdir: ${sweep_job_dir:${hydra.job.num},${hydra.job.override_dirname}}`
OmegaConf.register_new_resolver("sweep_job_dir", _sweep_job_dir, replace=True)
