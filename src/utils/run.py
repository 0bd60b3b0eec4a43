"""What every entry point does around its task: extras, one-line user errors, metric lookup."""

import logging
import sys
import warnings
from collections.abc import Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from src.utils.errors import ConfigError, user_error_in
from src.utils.rich_utils import print_config_tree

log = logging.getLogger(__name__)


def apply_extras(cfg: DictConfig) -> None:
    """Optional run-wide utilities from the `extras` group (never prompts: CI has no terminal)."""
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("print_config"):
        print_config_tree(cfg, save_to=Path(cfg.paths.output_dir) / "config_tree.log")


def _remove_empty_run_folder() -> None:
    """Remove what Hydra wrote for a run that failed before doing anything (its config, log)."""
    if not HydraConfig.initialized() or not rank_zero_only.rank == 0:
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    written = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log"}
    if written <= hydra_files:
        for name in written:
            path = folder / name
            if path.is_dir():
                for item in path.iterdir():
                    item.unlink()
                path.rmdir()
            else:
                path.unlink()
        folder.rmdir()


def report_user_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn bad user input into one `error: ...` line on stderr and exit code 2, not a traceback."""

    @wraps(task)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except Exception as exc:
            error = user_error_in(exc)
            if error is None:
                raise
            print(f"error: {error}", file=sys.stderr)
            _remove_empty_run_folder()
            sys.exit(2)

    return wrapped


def metric_value(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """The value of metric `name`, for sweepers; None when no metric is named."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric={name} was not logged: use one of {', '.join(sorted(metrics))}"
        )
    return float(metrics[name])


def keep_file_logs_on_rank_zero() -> None:
    """Under DDP, only rank zero writes the run's log file (the others' handlers never open it)."""
    if rank_zero_only.rank == 0:
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
