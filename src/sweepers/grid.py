"""Hydra's basic sweeper, except that one failing job does not end the sweep."""

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from src.cli.one_line_errors import release_stderr
from src.compat import HydraBasicSweeper, sweep_params
from src.sweepers.ddp_guard import refuse_ddp_jobs
from src.sweepers.outcome import end_failed_sweep, report_failures

log = logging.getLogger(__name__)


class GridSweeper(HydraBasicSweeper):
    """Run every combination of the sweep's values. A job that fails is reported at the end,
    with its overrides and error; the other jobs still run and keep their results. The command
    exits with 1 when any job failed, after Hydra's on_multirun_end callbacks."""

    def sweep(self, arguments: list[str]) -> Any:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(sweep_params(self) + list(arguments))
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        # every job's config, composed before any job runs: composition errors, and jobs whose
        # DDP processes Lightning would start (each would run this sweep again), stop it here
        loader = self.hydra_context.config_loader
        jobs = [
            loader.load_sweep_config(self.config, list(job)) for b in self.overrides for job in b
        ]
        refuse_ddp_jobs(self.config, jobs)

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        results: list[JobReturn] = []
        release_stderr()  # jobs may run in other processes, which cannot release it
        while not self.is_done():
            batch = self.get_job_batch()
            results.extend(self.launcher.launch(batch, initial_job_idx=len(results)))

        failed = report_failures(results)
        log.info(f"{len(results) - failed} of {len(results)} jobs finished: {sweep_dir}")
        if failed:
            message = f"{failed} of {len(results)} jobs failed (their errors are above)"
            end_failed_sweep(self.hydra_context, self.config, message)
        return [results]
