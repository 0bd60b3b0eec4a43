"""Image-classification research template: Lightning modules, data and Hydra entry points."""

import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# configs/paths reads this, so runs and tests find data/ and logs/ whatever the working directory.
os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))


def _best_metric(task: str | None) -> str:
    """The validation metric that picks the best checkpoint for a task (acc or map)."""
    from src.models.tasks import BEST_METRIC

    return BEST_METRIC.get(task or "multiclass", "acc")


# configs/train.yaml: `monitor: val/${best_metric:${data.task}}`
OmegaConf.register_new_resolver("best_metric", _best_metric, replace=True)
