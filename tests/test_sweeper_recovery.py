"""Searches and sweeps that continue, crash or fail: a continued Optuna search draws new
parameters, cut-off trials are found by Optuna's heartbeat (or, in a journal file, by being left
running), a search whose every trial failed ends non-zero, and both sweepers let Hydra's
on_multirun_end callbacks run.

Most tests drive the real sweeper, built from the real configs, with a stand-in launcher that
returns a value per job at once: no training, so they run in a second or two each."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra._internal.callbacks import Callbacks
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import HydraContext
from hydra.utils import instantiate
from omegaconf import DictConfig
from optuna.trial import TrialState

from src.sweepers.optuna_heartbeat import Heartbeats
from tests.conftest import compose_with_hydra
from tests.helpers import error_lines, run_in_process

STUDY = "digits-cnn"  # the study name the default search gets (<data>-<model>)
# quick heartbeats, so that a stopped one is noticed within seconds
BEATS = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=1"]


class SearchCrashed(BaseException):
    """The search process dies (a kill, a crashed node) while a job runs."""


class StandInLauncher:
    """Hydra's launcher, minus the jobs: each job returns 0.5 + its number / 100 at once, or
    fails (fail=True); at job `crash_at` the whole search dies."""

    def __init__(self, fail: bool = False, crash_at: int | None = None) -> None:
        self.fail = fail
        self.crash_at = crash_at

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
        returns = []
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            if number == self.crash_at:
                raise SearchCrashed
            if self.fail:
                result = JobReturn(list(overrides), status=JobStatus.FAILED)
                result._return_value = RuntimeError("out of memory")
            else:
                result = JobReturn(list(overrides), status=JobStatus.COMPLETED)
                result._return_value = 0.5 + number / 100
            returns.append(result)
        return returns


class MultirunEnd(Callback):
    """A Hydra callback that leaves a file behind when the multirun ends."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.marker.write_text("ended")


def search(log_dir: Path, *overrides: str, launcher: StandInLauncher | None = None) -> Any:
    """The Optuna sweeper of `python src/train.py -m hparams_search=optuna OVERRIDES`, set up as
    Hydra sets it up, with a stand-in launcher; call .sweep(.arguments) to run it."""
    cfg = compose_with_hydra("hparams_search=optuna", f"paths.log_dir={log_dir}", *overrides)
    sweeper = instantiate(cfg.hydra.sweeper).sweeper  # the template's class behind Hydra's shim
    context = HydraContext(config_loader=None, callbacks=Callbacks(cfg))
    sweeper.setup(hydra_context=context, task_function=lambda _: None, config=cfg)
    sweeper.launcher = launcher or StandInLauncher()
    sweeper.arguments = list(cfg.hydra.overrides.task)
    return sweeper


def sweep_dir(log_dir: Path) -> Path:
    return log_dir / "train" / "searches" / STUDY


def trials(log_dir: Path, storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read back from its storage (SQLite unless a storage is given)."""
    storage = storage or f"sqlite:///{sweep_dir(log_dir) / 'optuna.db'}"
    return optuna.load_study(study_name=STUDY, storage=storage).trials


def test_a_continued_search_draws_new_parameters_not_its_first_trials_again(tmp_path):
    first = search(tmp_path, "hydra.sweeper.n_trials=3")
    first.sweep(first.arguments)
    again = search(tmp_path, "hydra.sweeper.n_trials=6")  # the same command, 3 more trials
    again.sweep(again.arguments)
    drawn = [t.params for t in trials(tmp_path)]
    assert len(drawn) == 6
    assert len({tuple(sorted(p.items())) for p in drawn}) == 6  # no parameter set twice
    assert all(drawn[3 + i] != drawn[i] for i in range(3))
    # and a continued search is as reproducible as a new one
    other = tmp_path / "other"
    for n_trials in (3, 6):
        replay = search(other, f"hydra.sweeper.n_trials={n_trials}")
        replay.sweep(replay.arguments)
    assert [t.params for t in trials(other)] == drawn


def test_a_trial_whose_search_stopped_beating_fails_and_its_parameters_run_again(tmp_path):
    crashing = search(
        tmp_path, "hydra.sweeper.n_trials=3", *BEATS, launcher=StandInLauncher(crash_at=1)
    )
    with pytest.raises(SearchCrashed):
        crashing.sweep(crashing.arguments)
    before = trials(tmp_path)
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]

    again = search(tmp_path, "hydra.sweeper.n_trials=3", *BEATS)  # in this same process
    again.sweep(again.arguments)
    after = trials(tmp_path)
    assert after[1].state == TrialState.FAIL
    assert after[2].params == before[1].params  # the cut-off trial's parameters, next
    assert [t.number for t in after if t.state == TrialState.COMPLETE] == [0, 2, 3]
    assert all(t.state != TrialState.RUNNING for t in after)


def test_a_trial_whose_search_still_beats_is_left_to_that_search(tmp_path):
    crashing = search(
        tmp_path, "hydra.sweeper.n_trials=2", *BEATS, launcher=StandInLauncher(crash_at=0)
    )
    with pytest.raises(SearchCrashed):
        crashing.sweep(crashing.arguments)
    (running,) = trials(tmp_path)
    storage = optuna.storages.RDBStorage(f"sqlite:///{sweep_dir(tmp_path) / 'optuna.db'}")
    with Heartbeats(storage, [running._trial_id], interval=1):  # another search, alive
        second = search(tmp_path, "hydra.sweeper.n_trials=2", *BEATS)
        second.sweep(second.arguments)
    after = trials(tmp_path)
    assert [t.state for t in after] == [TrialState.RUNNING, TrialState.COMPLETE]


def test_a_journal_study_lives_in_one_file_and_retries_what_a_crash_left_running(tmp_path):
    args = ["hydra.sweeper.n_trials=3", "hydra.sweeper.storage=journal"]
    crashing = search(tmp_path, *args, launcher=StandInLauncher(crash_at=1))
    with pytest.raises(SearchCrashed):
        crashing.sweep(crashing.arguments)
    again = search(tmp_path, *args)
    again.sweep(again.arguments)
    assert sorted(p.name for p in sweep_dir(tmp_path).iterdir()) == [
        "multirun.yaml",
        "optimization_results.yaml",
        "optuna.journal",
    ]
    journal = optuna.storages.journal.JournalFileBackend(
        str(sweep_dir(tmp_path) / "optuna.journal")
    )
    after = trials(tmp_path, optuna.storages.JournalStorage(journal))
    assert [t.state for t in after] == [TrialState.COMPLETE, TrialState.FAIL] + [
        TrialState.COMPLETE
    ] * 2
    assert after[2].params == after[1].params


def test_a_search_whose_every_trial_failed_exits_1_with_one_line_after_the_callbacks(
    tmp_path, capsys
):
    marker = tmp_path / "ended"
    failing = search(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        f"+hydra.callbacks.end._target_={__name__}.MultirunEnd",
        f"+hydra.callbacks.end.marker={marker}",
        launcher=StandInLauncher(fail=True),
    )
    with pytest.raises(SystemExit) as exit:
        failing.sweep(failing.arguments)
    assert exit.value.code == 1
    assert marker.read_text() == "ended"
    assert capsys.readouterr().err.splitlines() == [
        f"error: all 2 trials of study '{STUDY}' failed (their errors are above)"
    ]


# Jobs that fail at once, before any data is loaded: a bad data.num_workers.
FAILING_JOB = "data.num_workers=-1"


def test_a_grid_sweep_with_failed_jobs_exits_1_after_hydras_multirun_end_callbacks(tmp_path):
    marker = tmp_path / "ended"
    result = run_in_process(
        "src/train.py",
        "-m",
        f"paths.log_dir={tmp_path}",
        "extras.print_config=false",
        "data.num_workers=-1,-2",
        f"+hydra.callbacks.end._target_={__name__}.MultirunEnd",
        f"+hydra.callbacks.end.marker={marker}",
    )
    assert result.returncode == 1
    assert marker.read_text() == "ended"
    assert "2 of 2 jobs failed:" in result.stdout
    assert error_lines(result) == ["error: 2 of 2 jobs failed (their errors are above)"]
    assert "HYDRA_FULL_ERROR" not in result.stderr  # the one line, no traceback hint


def test_a_search_whose_trials_all_fail_exits_1_with_one_line_after_the_callbacks(tmp_path):
    marker = tmp_path / "ended"
    result = run_in_process(
        "src/train.py",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        f"paths.log_dir={tmp_path}",
        "extras.print_config=false",
        FAILING_JOB,
        f"+hydra.callbacks.end._target_={__name__}.MultirunEnd",
        f"+hydra.callbacks.end.marker={marker}",
    )
    assert result.returncode == 1
    assert error_lines(result) == [
        f"error: all 2 trials of study '{STUDY}' failed (their errors are above)"
    ]
    assert "data.num_workers must be auto or 0 or more" in result.stdout
    assert marker.read_text() == "ended"
    assert [t.state for t in trials(tmp_path)] == [TrialState.FAIL] * 2
