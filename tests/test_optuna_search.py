"""Optuna searches as a researcher runs them: they minimise or maximise what they are told,
reproduce from a seed, refuse another search space, prune and continue after a crash."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.study import StudyDirection
from optuna.trial import TrialState

from src import PROJECT_ROOT
from tests.helpers import (
    job_folders,
    multirun,
    multirun_args,
    run_script,
    run_status,
    tensorboard_scalars,
)

# Trials of a smaller network on part of each split: a search's behaviour in a fraction of the
# time (the search space leaves these keys alone).
LEAN_TRIALS = [
    "model.net.channels=[8,8,16]",
    "model.net.hidden_dim=32",
    "trainer.limit_train_batches=10",
    "trainer.limit_val_batches=3",
    "trainer.limit_test_batches=2",
]


def search_args(study: str, *args: str) -> list[str]:
    return ["hparams_search=optuna", f"hydra.sweeper.study_name={study}", *LEAN_TRIALS, *args]


def load_study(log_dir: Path, study: str) -> optuna.Study:
    storage = f"sqlite:///{log_dir / 'train' / 'searches' / study / 'optuna.db'}"
    return optuna.load_study(study_name=study, storage=storage)


# The search below minimises: the lowest validation loss of each trial.
LOWEST_LOSS = "optimized_metric=val/loss_best"


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A 4-trial Optuna search over the default search space, for the lowest validation loss."""
    log_dir = tmp_path_factory.mktemp("search")
    result = multirun(log_dir, *search_args("first", "hydra.sweeper.n_trials=4", LOWEST_LOSS))
    assert result.returncode == 0, result.stderr[-3000:]
    return log_dir, result


def test_an_optuna_search_for_the_lowest_loss_minimises_it(search):
    log_dir, result = search
    study = load_study(log_dir, "first")
    assert study.direction == StudyDirection.MINIMIZE
    sweep_dir = log_dir / "train" / "searches" / "first"
    # each trial's value is the lowest validation loss in its own event files
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            losses = tensorboard_scalars(job_folders(sweep_dir)[trial.number])["val/loss"]
            assert trial.value == pytest.approx(min(losses))
    values = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    assert study.best_value == min(values) and len(set(values)) > 1


def test_an_optuna_search_reports_its_best_parameters_and_value(search):
    log_dir, result = search
    study = load_study(log_dir, "first")
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert set(study.best_params) == {
        "optimizer",
        "optimizer.lr",
        "optimizer.weight_decay",
        "data.batch_size",
        "scheduler",
    }
    assert f"Best parameters: {study.best_params}" in result.stdout
    assert f"Best value: {study.best_value}" in result.stdout
    sweep_dir = log_dir / "train" / "searches" / "first"
    summary = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert summary["best_value"] == pytest.approx(study.best_value)
    assert summary["best_trial"] == study.best_trial.number


def test_the_same_seed_proposes_the_same_first_trials(search, tmp_path):
    log_dir, _ = search
    result = multirun(tmp_path, *search_args("again", "hydra.sweeper.n_trials=2", LOWEST_LOSS))
    assert result.returncode == 0, result.stderr[-3000:]
    first = [t.params for t in load_study(log_dir, "first").trials[:2]]
    again = [t.params for t in load_study(tmp_path, "again").trials]
    assert again == first


def test_continuing_a_study_with_another_search_space_is_refused(search):
    log_dir, _ = search
    other = "scheduler=choice(none,step)"  # a sweep on the command line joins the space
    args = search_args("first", "hydra.sweeper.n_trials=4", LOWEST_LOSS, other)
    result = multirun(log_dir, *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "study 'first' in " in errors[0], result.stderr
    assert "hydra.sweeper.study_name=NEW_NAME" in errors[0]
    assert len(load_study(log_dir, "first").trials) == 4  # untouched


def test_pruning_stops_a_hopeless_trial_early(tmp_path):
    # two trials that learn, then one whose learning rate is far too small
    trials = (
        "hydra.sweeper.enqueue_trials=["
        "{optimizer:adam,optimizer.lr:0.003,scheduler:none,data.batch_size:64},"
        "{optimizer:adam,optimizer.lr:0.002,scheduler:none,data.batch_size:64},"
        "{optimizer:sgd,optimizer.lr:0.0001,scheduler:none,data.batch_size:128}]"
    )
    args = search_args(
        "pruning",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.pruner.n_startup_trials=2",
        "trainer.max_epochs=4",
        trials,
    )
    result = multirun(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(tmp_path, "pruning")
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
    ]
    hopeless = job_folders(tmp_path / "train" / "searches" / "pruning")[2]
    epochs = len(tensorboard_scalars(hopeless)["train/epoch_time"])
    assert epochs < 4  # stopped before max_epochs
    # it reported what the study ranks trials by: their best validation accuracy so far
    assert run_status(hopeless).startswith(f"pruned: after {epochs} epochs, val/acc_best=")
    assert "Trial 2 pruned" in result.stdout


def test_a_search_cut_off_in_its_third_trial_continues_with_the_same_command(tmp_path):
    args = multirun_args(
        tmp_path,
        *search_args(
            "resume",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=2",
        ),
    )
    command = [sys.executable, "src/train.py", *args]
    search = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    sweep_dir = tmp_path / "train" / "searches" / "resume"
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and search.poll() is None:
            # the third trial's job has started (its parameters are drawn), the first two ended
            started = sweep_dir.is_dir() and len(job_folders(sweep_dir)) == 3
            if started and len(load_study(tmp_path, "resume").get_trials(states=finished)) == 2:
                break
            time.sleep(0.2)
        assert search.poll() is None, "the search ended before it could be cut off"
        os.kill(search.pid, signal.SIGKILL)  # a crash: no chance to clean up
    finally:
        search.kill()
        search.wait()

    before = load_study(tmp_path, "resume").trials
    done = [t for t in before if t.state in finished]
    ended = {job: (job / "status.txt").stat().st_mtime_ns for job in job_folders(sweep_dir)[:2]}
    (cut_off,) = [t for t in before if t.state == TrialState.RUNNING]
    assert len(done) == 2 and cut_off.number == 2 and cut_off.params

    result = run_script("src/train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 of 4 trials already done" in result.stdout
    assert "Trial 2 was cut off" in result.stdout
    after = load_study(tmp_path, "resume").trials
    # the first two trials are kept as they were, not run again
    assert [(t.params, t.value) for t in after[:2]] == [(t.params, t.value) for t in done]
    for job, mtime in ended.items():  # their jobs did not start again
        assert run_status(job) == "finished" and (job / "status.txt").stat().st_mtime_ns == mtime
    # the cut-off trial failed and its parameters ran again next; 4 trials ended in all
    assert after[2].state == TrialState.FAIL and after[3].params == cut_off.params
    assert [t.number for t in after if t.state in finished] == [0, 1, 3, 4]


@pytest.mark.slow
def test_the_joblib_launcher_runs_a_search_two_trials_at_a_time(tmp_path):
    args = search_args(
        "parallel", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib"
    )
    result = run_script("src/train.py", *multirun_args(tmp_path, *args))  # its own workers
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("is launching 2 jobs") == 2  # two batches of two parallel trials
    study = load_study(tmp_path, "parallel")
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert len(job_folders(tmp_path / "train" / "searches" / "parallel")) == 4
