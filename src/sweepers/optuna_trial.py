"""What links a Hydra job to its Optuna trial: the study's storage, the trial's user attributes,
trials cut off by a crash, and finding this job's trial from inside the job (for the pruning
callback)."""

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

from src.compat import trial_by_number

log = logging.getLogger(__name__)

# User attributes of a trial, and of the study.
PRUNED_ATTR = "pruned"  # why the pruning callback stopped the trial
SEARCH_ATTR = "search"  # study: the search space and fixed overrides it was started with

JOURNAL = "journal"  # hydra.sweeper.storage=journal: a journal file, for shared file systems


@contextmanager
def quietly() -> Iterator[None]:
    """Without the warnings that Optuna's heartbeat and retry API are experimental, and that
    heartbeats are meant for study.optimize (a search records them itself: optuna_heartbeat)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with")
        yield


class RetryCutOffTrial(RetryHeartbeatStaleTrialCallback):
    """Queue the parameters of a trial that was cut off (failed by `fail_stale_trials`, or left
    running in a journal) to run again, at most `max_retry` times, and say so."""

    def __init__(self, max_retry: int | None) -> None:
        with quietly():
            super().__init__(max_retry=max_retry)
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        tries = len(retried_trials(trial)) + 1
        if self.max_retry is not None and tries > self.max_retry:
            log.warning(f"Trial {trial.number} was cut off, {tries} times: not tried again.")
            return
        log.warning(f"Trial {trial.number} was cut off; trying its parameters again.")
        with quietly():
            super().__call__(study, trial)


def retried_trials(trial: FrozenTrial) -> list[int]:
    """The numbers of the cut-off trials `trial` retries (the first one first)."""
    with quietly():
        return RetryHeartbeatStaleTrialCallback.retry_history(trial)


def study_storage(
    storage: str | None,
    sweep_dir: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = None,
) -> optuna.storages.BaseStorage:
    """The study's storage: the SQLite file optuna.db in the sweep folder (None), the journal
    file optuna.journal there (`journal`), or the database at a URL.

    With a heartbeat_interval (the search; its jobs need none) a database storage fails the
    running trials whose heartbeat is more than grace_period seconds old when
    `optuna.storages.fail_stale_trials` is called, and queues their parameters again."""
    folder = Path(sweep_dir).resolve()
    if storage == JOURNAL:
        return optuna.storages.JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
    url = storage or f"sqlite:///{folder / 'optuna.db'}"
    # parallel trials write to the same file: wait for its lock instead of failing at once
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if heartbeat_interval is None:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    with quietly():
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryCutOffTrial(max_retry),
        )


def storage_name(storage: optuna.storages.BaseStorage, sweep_dir: str) -> str:
    """Where the study lives, for the log: a database URL or the journal file."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage.url
    return str(Path(sweep_dir).resolve() / "optuna.journal")


def log_optuna_through_hydra() -> None:
    """Optuna's messages through Python logging (Hydra's format, the run's log file), not
    Optuna's own stderr handler."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def trial_of_this_job() -> optuna.Trial | None:
    """This Hydra job's trial when it runs inside an OptunaSweeper search, else None."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra_cfg = HydraConfig.get()
    sweeper = hydra_cfg.sweeper
    if not str(sweeper.get("_target_", "")).endswith("OptunaSweeper"):
        return None
    log_optuna_through_hydra()
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else optuna.pruners.NopPruner()
    study = optuna.load_study(
        study_name=sweeper.study_name,
        storage=study_storage(sweeper.get("storage"), hydra_cfg.sweep.dir),
        pruner=pruner,
    )
    return trial_by_number(study, int(hydra_cfg.job.num))  # each job is numbered after its trial
