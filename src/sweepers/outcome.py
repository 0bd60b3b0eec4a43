"""How a sweep ends badly: a one-line refusal before it starts, the failed jobs listed at its end,
and a non-zero exit that still lets Hydra's on_multirun_end callbacks run."""

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.types import HydraContext
from omegaconf import DictConfig

from src.compat import job_outcome
from src.core.errors import one_line_reason

log = logging.getLogger(__name__)


class SweepSetupError(CompactHydraException):
    """A sweep that cannot start as asked; Hydra prints the message without a traceback."""


def report_failures(results: Sequence[JobReturn], what: str = "jobs") -> int:
    """Log one line per failed job (its folder, named by number and overrides, and its error);
    return how many failed."""
    failed = [r for r in results if r.status != JobStatus.COMPLETED]
    if failed:
        log.error(f"{len(failed)} of {len(results)} {what} failed:")
    for result in failed:
        folder = result.hydra_cfg.hydra.runtime.output_dir if result.hydra_cfg else None
        name = Path(folder).name if folder else " ".join(result.overrides or [])
        log.error(f"  {name}: {one_line_reason(job_outcome(result))}")
    return len(failed)


def end_failed_sweep(context: HydraContext, config: DictConfig, message: str) -> NoReturn:
    """Run Hydra's on_multirun_end callbacks (Hydra calls them only when a sweep returns), then
    end the command with the one line `error: MESSAGE` on stderr and exit code 1."""
    context.callbacks.on_multirun_end(config=config, config_name=config.hydra.job.config_name)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
