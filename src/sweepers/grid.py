"""Hydra's basic sweeper, except that one failing job does not end the sweep."""

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from src.cli.errors import one_line_reason
from src.cli.one_line_errors import release_stderr

log = logging.getLogger(__name__)


def report_failures(results: Sequence[JobReturn], what: str = "jobs") -> int:
    """Log one line per failed job (its folder, named by number and overrides, and its error);
    return how many failed."""
    failed = [r for r in results if r.status != JobStatus.COMPLETED]
    if failed:
        log.error(f"{len(failed)} of {len(results)} {what} failed:")
    for result in failed:
        folder = result.hydra_cfg.hydra.runtime.output_dir if result.hydra_cfg else None
        name = Path(folder).name if folder else " ".join(result.overrides or [])
        log.error(f"  {name}: {one_line_reason(result._return_value)}")
    return len(failed)


class GridSweeper(BasicSweeper):
    """Run every combination of the sweep's values. A job that fails is reported at the end,
    with its overrides and error; the other jobs still run and keep their results. The command
    exits with 1 when any job failed."""

    def sweep(self, arguments: list[str]) -> Any:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        self.overrides = self.split_arguments(overrides, self.max_batch_size)

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        results: list[JobReturn] = []
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)  # composition errors before any job runs
            release_stderr()  # jobs may run in other processes, which cannot release it
            results.extend(self.launcher.launch(batch, initial_job_idx=len(results)))

        failed = report_failures(results)
        log.info(f"{len(results) - failed} of {len(results)} jobs finished: {sweep_dir}")
        if failed:
            sys.exit(1)
        return [results]
