"""An Optuna search as a Hydra sweeper: seeded sampling, pruning, and a study that survives.

The study lives in a SQLite file in the sweep folder (`optuna.db`), so the same command run
again after a crash continues the search: finished trials are kept, the trial that was cut off is
tried again with its parameters, and only the trials still missing are run. Each trial is a Hydra
job in `<sweep dir>/<trial number>/`; the OptunaPruning callback in the job reports the optimized
metric after every epoch and stops the trial early when the pruner finds it hopeless.
"""

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from src.cli.one_line_errors import release_stderr
from src.sweepers.grid import report_failures
from src.sweepers.optuna_trial import (
    INTERRUPTED_ATTR,
    OWNER_ATTR,
    PRUNED_ATTR,
    SEARCH_ATTR,
    log_optuna_through_hydra,
    study_storage,
)
from src.sweepers.search_space import parse_search_space
from src.tracking.hparams import is_hyperparameter
from src.tracking.run_records import pid_alive

log = logging.getLogger(__name__)

# `direction` as the metric_mode resolver gives it (max, min) or as Optuna names it
DIRECTIONS = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}


class SearchSetupError(CompactHydraException):
    """A search that cannot start as asked; Hydra prints the message without a traceback."""


def _differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    """How the search a study started with differs from this one, e.g. `scheduler: choice(none,
    cosine), now choice(none,step)`."""
    changes = []
    for name in dict.fromkeys([*before["space"], *now["space"]]):
        old, new = before["space"].get(name, "-"), now["space"].get(name, "-")
        if old != new:
            changes.append(f"{name}: {old}, now {new}")
    for override in sorted(set(before["fixed"]) ^ set(now["fixed"])):
        changes.append(f"{override} {'dropped' if override in before['fixed'] else 'added'}")
    if before["direction"] != now["direction"]:
        changes.append(f"direction: {before['direction']}, now {now['direction']}")
    return "; ".join(changes)


class OptunaSweeper(Sweeper):
    """Draw `n_trials` trials from the search space in `params` (plus sweeps on the command
    line), run each as a Hydra job through the configured launcher (`n_jobs` at a time), and
    report the best parameters and value."""

    def __init__(
        self,
        study_name: str,
        direction: str,
        n_trials: int,
        sampler: optuna.samplers.BaseSampler,
        pruner: optuna.pruners.BasePruner | None = None,
        storage: str | None = None,
        n_jobs: int = 1,
        params: DictConfig | None = None,
        enqueue_trials: Sequence[Mapping[str, Any]] = (),
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
        log_optuna_through_hydra()

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        # checked here, not when built: Hydra would wrap the message in its own
        if self.direction not in DIRECTIONS:
            raise SearchSetupError(f"hydra.sweeper.direction={self.direction}: use max or min")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise SearchSetupError("hydra.sweeper.n_trials and n_jobs must be 1 or more")
        self.direction = DIRECTIONS[self.direction]
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _study(
        self, storage: optuna.storages.RDBStorage, sweep_dir: Path, search: dict[str, Any]
    ) -> optuna.Study:
        """Create the study, or load it and check it searches what this command asks."""
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            pruner=self.pruner or optuna.pruners.NopPruner(),
            direction=self.direction,
            load_if_exists=True,
        )
        started_with = study.user_attrs.get(SEARCH_ATTR)
        if started_with is None:
            study.set_user_attr(SEARCH_ATTR, search)
            for params in self.enqueue_trials:  # a new study tries these first
                study.enqueue_trial(params)
        elif started_with != search:
            raise SearchSetupError(
                f"study {self.study_name!r} in {sweep_dir} was started with another search "
                f"({_differences(started_with, search)}): run that command again to continue "
                "it, or pass hydra.sweeper.study_name=NEW_NAME to start a new one"
            )
        return study

    def _retry_interrupted(self, study: optuna.Study) -> None:
        """Trials left running by a crashed search fail, and their parameters are tried again.

        Only trials whose search process is gone: a study in a shared database may have trials
        running for another search, here or on another machine. A trial with no process named
        was cut off between being drawn and being named."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.user_attrs.get(OWNER_ATTR)
            host, _, pid = str(owner).rpartition(":")
            if owner and (host != socket.gethostname() or pid_alive(int(pid))):
                log.info(f"Trial {trial.number} is running for another search ({owner}).")
                continue
            log.warning(f"Trial {trial.number} was cut off; trying its parameters again.")
            optuna.Trial(study, trial._trial_id).set_user_attr(INTERRUPTED_ATTR, True)
            study.tell(trial.number, state=TrialState.FAIL)
            if trial.params:  # none were drawn yet: the next new trial takes its place
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})

    def _trials_done(self, study: optuna.Study) -> int:
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        failed = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if not t.user_attrs.get(INTERRUPTED_ATTR)
        ]
        return len(finished) + len(failed)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, result: JobReturn) -> None:
        """Record a finished job: complete with its value, pruned, or failed."""
        # the job wrote to the storage: read it there, not from the trial's cached copy
        pruned = study._storage.get_trial_user_attrs(trial._trial_id).get(PRUNED_ATTR)
        if result.status == JobStatus.COMPLETED and pruned:
            study.tell(trial, state=TrialState.PRUNED)
            log.info(f"Trial {trial.number} pruned: {pruned}")
        elif result.status == JobStatus.COMPLETED and result._return_value is not None:
            value = float(result._return_value)
            study.tell(trial, value)
            log.info(f"Trial {trial.number} finished: {value:.6g}")
        else:
            study.tell(trial, state=TrialState.FAIL)

    def sweep(self, arguments: list[str]) -> Sequence[JobReturn]:
        space = parse_search_space([f"{k}={v}" for k, v in self.params.items()] + arguments)
        if not space.suggestions:
            raise SearchSetupError(
                "the search space is empty: give hydra.sweeper.params, or sweeps such as "
                "optimizer.lr=tag(log,interval(1e-4,1e-1)) on the command line"
            )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # what a continued study must share with its start; where results go and how the
        # config prints may change (another paths.log_dir is another study folder anyway)
        fixed = [o for o in space.fixed if is_hyperparameter(o)]
        search = {"space": space.descriptions, "fixed": fixed, "direction": self.direction}
        storage = study_storage(self.storage, str(sweep_dir))
        study = self._study(storage, sweep_dir, search)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        release_stderr()  # the search is set up; trials may run in other processes
        self._retry_interrupted(study)

        done = self._trials_done(study)
        if done:
            log.info(f"Study {self.study_name!r}: {done} of {self.n_trials} trials already done.")
        log.info(f"Study {self.study_name!r} in {storage.url}")
        results: list[JobReturn] = []
        while done < self.n_trials:
            trials = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - done))]
            for trial in trials:
                trial.set_user_attr(OWNER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
            # each job is numbered after its trial (the pruning callback finds it so); another
            # search sharing the study may have taken numbers in between
            numbers = [t.number for t in trials]
            consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
            for launch in [trials] if consecutive else [[t] for t in trials]:
                batch = [space.overrides(t) for t in launch]
                returns = self.launcher.launch(batch, initial_job_idx=launch[0].number)
                for trial, result in zip(launch, returns, strict=True):
                    self._tell(study, trial, result)
                results.extend(returns)
            done += len(trials)

        report_failures(results, what="trials")
        self._report(study, sweep_dir)
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
