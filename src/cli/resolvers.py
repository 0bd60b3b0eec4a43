"""The OmegaConf resolvers the configs use, registered when this module is imported.

Each use in configs/ carries a comment naming this file. The entry points import it; so must
anything else that composes and resolves the configs (tests, scripts).
"""

from omegaconf import OmegaConf

from src import PROJECT_ROOT
from src.tracking.hparams import is_hyperparameter
from src.tracking.metrics import default_monitor, metric_mode

JOB_DIR_LENGTH = 120  # the most characters of a sweep job's folder name


def _short_value(item: str) -> str:
    """`key=value` with a long float value cut to 4 significant digits (a label, not the value)."""
    key, _, value = item.partition("=")
    try:
        number = float(value)
    except ValueError:
        return item
    return f"{key}={number:.4g}" if len(value) > 6 and ("." in value or "e" in value) else item


def sweep_job_dir(number: int, overrides: list[str]) -> str:
    """A sweep job's folder name: its number and the overrides that set hyperparameters, sorted,
    e.g. `1_optimizer=sgd,optimizer.lr=0.1`, so TensorBoard's run names say what each run
    changed (at most JOB_DIR_LENGTH characters, cut at an override)."""
    name = str(number)
    kept = sorted(o for o in overrides if not o.startswith("~") and is_hyperparameter(o))
    for item in kept:
        part = _short_value(item.lstrip("+")).replace("/", "-")
        if len(name) + 1 + len(part) > JOB_DIR_LENGTH:
            break
        name += ("_" if name == str(number) else ",") + part
    return name


def register_resolvers() -> None:
    """Register every resolver (again, if already there: tests import this module repeatedly)."""
    resolvers = {
        # configs/paths/default.yaml: `root_dir: ${project_root:}`
        "project_root": lambda: str(PROJECT_ROOT),
        # configs/train.yaml: `monitor: ${default_monitor:${data.task}}`
        "default_monitor": default_monitor,
        # callbacks, scheduler/plateau.yaml, hydra/sweeper/optuna.yaml: max or min for a metric
        "metric_mode": metric_mode,
        # configs/hydra/default.yaml: `subdir: ${sweep_job_dir:${hydra.job.num},...}`
        "sweep_job_dir": sweep_job_dir,
    }
    for name, resolver in resolvers.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


register_resolvers()
