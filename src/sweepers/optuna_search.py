"""An Optuna search as a Hydra sweeper: seeded sampling, pruning, and a study that survives.

The study lives in a SQLite file in the sweep folder (`optuna.db`; `storage: journal` keeps a
journal file instead, for folders on a shared file system), so the same command run again after
a crash continues the search: finished trials are kept, a trial that was cut off is tried again
with its parameters, and only the trials still missing are run, with parameters the first run did
not draw. Each trial is a Hydra job in `<sweep dir>/<trial number>/`; the OptunaPruning callback in
the job reports the optimized metric after every epoch and stops the trial early when the pruner
finds it hopeless.

Cut-off trials are found by Optuna's heartbeat: while a search runs trials it records their
heartbeat every `heartbeat_interval` seconds, and a running trial whose heartbeat is more than
`grace_period` seconds old belongs to a search that is gone (`optuna.storages.fail_stale_trials`).
Journal files keep no heartbeats: a search continuing a journal study takes the trials left
running as cut off, so only one search may run a journal study at a time. Opening, checking and
continuing the study: src/sweepers/optuna_study.py; this module runs its trials.
"""

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from src.cli.one_line_errors import release_stderr
from src.compat import job_outcome, storage_of, trial_id
from src.core.hparams import is_hyperparameter
from src.sweepers.ddp_guard import refuse_ddp_jobs
from src.sweepers.optuna_heartbeat import Heartbeats
from src.sweepers.optuna_study import (
    Sampler,
    fail_cut_off_trials,
    open_study,
    running_trials,
    trials_done,
)
from src.sweepers.optuna_trial import (
    PRUNED_ATTR,
    log_optuna_through_hydra,
    quietly,
    storage_name,
    study_storage,
)
from src.sweepers.outcome import SweepSetupError, end_failed_sweep, report_failures
from src.sweepers.search_space import parse_search_space

log = logging.getLogger(__name__)

# `direction` as the metric_mode resolver gives it (max, min) or as Optuna names it
DIRECTIONS = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}


class OptunaSweeper(Sweeper):
    """Draw `n_trials` trials from the search space in `params` (plus sweeps on the command
    line), run each as a Hydra job through the configured launcher (`n_jobs` at a time), and
    report the best parameters and value.

    `sampler` is a sampler, or (`_partial_: true` in the config) a function that makes one: it is
    called with `seed` plus the number of trials already in the study, so a continued search
    draws new parameters, and the same command still draws the same ones."""

    def __init__(
        self,
        study_name: str,
        direction: str,
        n_trials: int,
        sampler: Sampler,
        pruner: optuna.pruners.BasePruner | None = None,
        storage: str | None = None,
        n_jobs: int = 1,
        params: DictConfig | None = None,
        enqueue_trials: Sequence[Mapping[str, Any]] = (),
        heartbeat_interval: int = 10,
        grace_period: int = 30,
        max_retry: int | None = 3,
    ) -> None:
        self.study_name = study_name
        self.direction = direction
        self.n_trials = n_trials
        self.sampler = sampler
        self.pruner = pruner
        self.storage = storage
        self.n_jobs = n_jobs
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.enqueue_trials = [dict(t) for t in enqueue_trials or ()]
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retry = max_retry
        log_optuna_through_hydra()

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        # checked here, not when built: Hydra would wrap the message in its own
        if self.direction not in DIRECTIONS:
            raise SweepSetupError(f"hydra.sweeper.direction={self.direction}: use max or min")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise SweepSetupError("hydra.sweeper.n_trials and n_jobs must be 1 or more")
        if not (self.heartbeat_interval >= 1 and self.grace_period >= 1):
            raise SweepSetupError(
                "hydra.sweeper.heartbeat_interval and grace_period are seconds: 1 or more"
            )
        self.direction = DIRECTIONS[self.direction]
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _fail_cut_off_trials(self, study: optuna.Study, starting: bool) -> None:
        """Fail the trials whose search is gone and queue their parameters again."""
        fail_cut_off_trials(
            study, starting, self.max_retry, self.grace_period, self.heartbeat_interval
        )

    def _ask(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> optuna.Trial:
        """A new trial (or a queued one), its heartbeat recorded at once."""
        with quietly():
            trial = study.ask()
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.record_heartbeat(trial_id(trial))
        return trial

    def _heartbeats(
        self, storage: optuna.storages.BaseStorage, trials: Sequence[optuna.Trial]
    ) -> AbstractContextManager:
        """The heartbeats of `trials` while their jobs run (none in a journal file)."""
        if not isinstance(storage, optuna.storages.RDBStorage):
            return nullcontext()
        return Heartbeats(storage, [trial_id(t) for t in trials], self.heartbeat_interval)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, result: JobReturn) -> None:
        """Record a finished job: complete with its value, pruned, or failed."""
        # the job wrote to the storage: read it there, not from the trial's cached copy
        pruned = storage_of(study).get_trial_user_attrs(trial_id(trial)).get(PRUNED_ATTR)
        if result.status == JobStatus.COMPLETED and pruned:
            study.tell(trial, state=TrialState.PRUNED)
            log.info(f"Trial {trial.number} pruned: {pruned}")
        elif result.status == JobStatus.COMPLETED and job_outcome(result) is not None:
            value = float(job_outcome(result))
            study.tell(trial, value)
            log.info(f"Trial {trial.number} finished: {value:.6g}")
        else:
            study.tell(trial, state=TrialState.FAIL)

    def sweep(self, arguments: list[str]) -> Sequence[JobReturn]:
        space = parse_search_space([f"{k}={v}" for k, v in self.params.items()] + arguments)
        if not space.suggestions:
            raise SweepSetupError(
                "the search space is empty: give hydra.sweeper.params, or sweeps such as "
                "optimizer.lr=tag(log,interval(1e-4,1e-1)) on the command line"
            )
        refuse_ddp_jobs(self.config, [self.config])  # the trials' trainer is the command's
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # what a continued study must share with its start; where results go and how the
        # config prints may change (another paths.log_dir is another study folder anyway)
        fixed = [o for o in space.fixed if is_hyperparameter(o)]
        search = {"space": space.descriptions, "fixed": fixed, "direction": self.direction}
        storage = study_storage(
            self.storage, str(sweep_dir), self.heartbeat_interval, self.grace_period, self.max_retry
        )
        study = open_study(
            self.study_name,
            storage,
            self.sampler,
            self.pruner,
            search,
            self.enqueue_trials,
            sweep_dir,
        )
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        release_stderr()  # the search is set up; trials may run in other processes
        self._fail_cut_off_trials(study, starting=True)

        done = trials_done(study)
        if done:
            log.info(f"Study {self.study_name!r}: {done} of {self.n_trials} trials already done.")
        log.info(f"Study {self.study_name!r} in {storage_name(storage, str(sweep_dir))}")
        results: list[JobReturn] = []
        while True:
            self._fail_cut_off_trials(study, starting=False)
            # trials another search runs count too: together they make n_trials
            missing = self.n_trials - trials_done(study) - len(running_trials(study))
            if missing <= 0:
                break
            trials = [self._ask(study, storage) for _ in range(min(self.n_jobs, missing))]
            # each job is numbered after its trial (the pruning callback finds it so); another
            # search sharing the study may have taken numbers in between
            numbers = [t.number for t in trials]
            consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
            with self._heartbeats(storage, trials):
                for launch in [trials] if consecutive else [[t] for t in trials]:
                    batch = [space.overrides(t) for t in launch]
                    returns = self.launcher.launch(batch, initial_job_idx=launch[0].number)
                    for trial, result in zip(launch, returns, strict=True):
                        self._tell(study, trial, result)
                    results.extend(returns)

        report_failures(results, what="trials")
        self._report(study, sweep_dir)
        self._fail_if_nothing_finished(study)
        return results

    def _report(self, study: optuna.Study, sweep_dir: Path) -> None:
        """Log the best trial and write optimization_results.yaml into the sweep folder."""
        states = {s.name.lower(): len(study.get_trials(states=(s,))) for s in TrialState}
        summary: dict[str, Any] = {"study_name": self.study_name, "trials": states}
        try:
            best = study.best_trial
        except ValueError:
            log.error(f"No trial of study {self.study_name!r} finished: {states}")
        else:
            summary.update(best_trial=best.number, best_value=best.value, best_params=best.params)
            log.info(f"Best trial: #{best.number} of {len(study.trials)}")
            log.info(f"Best parameters: {best.params}")
            log.info(f"Best value: {best.value}")
        OmegaConf.save(OmegaConf.create(summary), sweep_dir / "optimization_results.yaml")

    def _fail_if_nothing_finished(self, study: optuna.Study) -> None:
        """End the command with exit code 1 when every trial of the study failed."""
        trials = study.get_trials(deepcopy=False)
        failed = [t for t in trials if t.state == TrialState.FAIL]
        if failed and len(failed) == len(trials):
            end_failed_sweep(
                self.hydra_context,
                self.config,
                f"all {len(failed)} trials of study {self.study_name!r} failed "
                "(their errors are above)",
            )
