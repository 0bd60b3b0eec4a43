"""The study an Optuna search runs in, new or continued: created or loaded with its sampler seeded
past the trials it holds, refused when it was started with another search, its cut-off trials
failed and queued again, and the count of the trials still to run."""

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from src.compat import storage_of
from src.sweepers.optuna_trial import SEARCH_ATTR, RetryCutOffTrial, quietly, retried_trials
from src.sweepers.outcome import SweepSetupError

log = logging.getLogger(__name__)

Sampler = optuna.samplers.BaseSampler | Callable[..., optuna.samplers.BaseSampler]


def seeded_sampler(sampler: Sampler, trials_so_far: int) -> optuna.samplers.BaseSampler:
    """The sampler (or the one `sampler` makes), seeded with its seed plus the trials the study
    already holds."""
    if isinstance(sampler, optuna.samplers.BaseSampler):
        if trials_so_far:  # built with its seed: draw afresh rather than repeat
            sampler.reseed_rng()
        return sampler
    seed = sampler.keywords.get("seed") if isinstance(sampler, functools.partial) else None
    if seed is None:
        return sampler()
    return sampler(seed=int(seed) + trials_so_far)


def differences(before: dict[str, Any], now: dict[str, Any]) -> str:
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


def open_study(
    name: str,
    storage: optuna.storages.BaseStorage,
    sampler: Sampler,
    pruner: optuna.pruners.BasePruner | None,
    search: dict[str, Any],
    enqueue_trials: Sequence[dict[str, Any]],
    sweep_dir: Path,
) -> optuna.Study:
    """Create the study, or load it and check it searches what this command asks (`search`: the
    space, the fixed overrides and the direction)."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=optuna.samplers.RandomSampler(),  # replaced below, once the trials are known
        pruner=pruner or optuna.pruners.NopPruner(),
        direction=search["direction"],
        load_if_exists=True,
    )
    study.sampler = seeded_sampler(sampler, len(study.get_trials(deepcopy=False)))
    started_with = study.user_attrs.get(SEARCH_ATTR)
    if started_with is None:
        study.set_user_attr(SEARCH_ATTR, search)
        for params in enqueue_trials:  # a new study tries these first
            study.enqueue_trial(params)
    elif started_with != search:
        raise SweepSetupError(
            f"study {name!r} in {sweep_dir} was started with another search "
            f"({differences(started_with, search)}): run that command again to continue "
            "it, or pass hydra.sweeper.study_name=NEW_NAME to start a new one"
        )
    return study


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials that are running (in this search or in another)."""
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def fail_cut_off_trials(
    study: optuna.Study,
    starting: bool,
    max_retry: int | None,
    grace_period: int,
    heartbeat_interval: int,
) -> None:
    """Fail the running trials whose search is gone and queue their parameters again (at most
    max_retry times).

    A database storage knows by the heartbeat. When a search starts and finds trials
    running, it waits up to grace_period for their heartbeat to tell (a search cut off a
    moment ago, or another search at work). A journal file keeps no heartbeat: the trials a
    search finds running when it starts are taken as cut off."""
    if isinstance(storage_of(study), optuna.storages.JournalStorage):
        if starting:
            retry = RetryCutOffTrial(max_retry)
            for trial in running_trials(study):
                study.tell(trial.number, state=TrialState.FAIL)
                retry(study, trial)
        return
    with quietly():  # the storage's own callback queues the retries (optuna_trial.study_storage)
        optuna.storages.fail_stale_trials(study)
    running = [t.number for t in running_trials(study)]
    if not (starting and running):
        return
    log.info(
        f"Trials {running} are running: waiting up to {grace_period} s for their "
        "heartbeat to tell whether their search is still at work"
    )
    deadline = time.monotonic() + grace_period + heartbeat_interval + 2
    while running_trials(study) and time.monotonic() < deadline:
        time.sleep(1)
        with quietly():
            optuna.storages.fail_stale_trials(study)
    for trial in running_trials(study):
        log.info(f"Trial {trial.number} is running for another search.")


def trials_done(study: optuna.Study) -> int:
    """Trials that ended: complete, pruned, or failed and not tried again."""
    trials = study.get_trials(deepcopy=False)
    retried = {number for t in trials for number in retried_trials(t)}
    ended = (TrialState.COMPLETE, TrialState.PRUNED)
    return sum(
        t.state in ended or (t.state == TrialState.FAIL and t.number not in retried) for t in trials
    )
