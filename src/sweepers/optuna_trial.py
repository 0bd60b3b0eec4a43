"""What links a Hydra job to its Optuna trial: the study's storage, the trial's user attributes,
and finding this job's trial from inside the job (for the pruning callback)."""

from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate

# User attributes of a trial, and of the study.
INTERRUPTED_ATTR = "interrupted"  # a trial cut off by a crash (its parameters are tried again)
PRUNED_ATTR = "pruned"  # why the pruning callback stopped the trial
OWNER_ATTR = "search_process"  # host:pid of the search that runs the trial
SEARCH_ATTR = "search"  # study: the search space and fixed overrides it was started with


def study_storage(storage: str | None, sweep_dir: str) -> optuna.storages.RDBStorage:
    """The study's storage: `storage` if given, else SQLite file optuna.db in the sweep folder."""
    url = storage or f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"
    # parallel trials write to the same file: wait for its lock instead of failing at once
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine)


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
    # the sweeper numbers each job after its trial
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(
        study._study_id, int(hydra_cfg.job.num)
    )
    return optuna.Trial(study, trial_id)
