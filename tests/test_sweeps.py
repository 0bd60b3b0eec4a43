"""Sweeps as a researcher runs them: a grid multirun with a failing job, and Optuna searches
that reproduce, prune and continue after a crash."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pytest
import yaml
from optuna.study import StudyDirection
from optuna.trial import TrialState

from src import PROJECT_ROOT
from tests.conftest import QUIET
from tests.helpers import run_script, run_status, tensorboard_scalars


def multirun_args(log_dir: Path, *args: str) -> list[str]:
    """-m, the log folder, quiet output and two short epochs, then ARGS."""
    return ["-m", f"paths.log_dir={log_dir}", *QUIET, "trainer.max_epochs=2", *args]


def multirun(log_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`python src/train.py -m ARGS` in a new process, logging under log_dir."""
    return run_script("src/train.py", *multirun_args(log_dir, *args))


def job_folders(sweep_dir: Path) -> list[Path]:
    """A sweep's job folders in job order (their names start with the job number)."""
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    return sorted(jobs, key=lambda p: int(p.name.split("_")[0]))


def only_folder(parent: Path) -> Path:
    (folder,) = list(parent.iterdir())
    return folder


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory) -> Path:
    """A 4-job multirun of the CNN on digits: 2 optimizers x 2 learning rates."""
    log_dir = tmp_path_factory.mktemp("grid")
    result = multirun(log_dir, "optimizer=adam,sgd", "optimizer.lr=0.001,0.01")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 of 4 jobs finished" in result.stdout
    return only_folder(log_dir / "train" / "multiruns")


def test_a_multirun_gives_each_job_its_folder_checkpoints_and_curves(grid_sweep):
    jobs = job_folders(grid_sweep)
    assert [job.name for job in jobs] == [
        "0_optimizer.lr=0.001,optimizer=adam,trainer.max_epochs=2",
        "1_optimizer.lr=0.01,optimizer=adam,trainer.max_epochs=2",
        "2_optimizer.lr=0.001,optimizer=sgd,trainer.max_epochs=2",
        "3_optimizer.lr=0.01,optimizer=sgd,trainer.max_epochs=2",
    ]
    for job in jobs:
        assert (job / "checkpoints" / "best.ckpt").is_file()
        assert (job / "checkpoints" / "last.ckpt").is_file()
        scalars = tensorboard_scalars(job)
        for tag in ["train/loss", "val/loss", "val/acc", "val/acc_best", "train/lr"]:
            assert len(scalars[tag]) == 2, (job.name, tag)  # the same names in every run
        assert run_status(job) == "finished"
    lrs = [tensorboard_scalars(job)["train/lr"][0] for job in jobs]
    assert lrs == pytest.approx([0.001, 0.01, 0.001, 0.01])


def compare_runs(*args: str) -> subprocess.CompletedProcess:
    return run_script("scripts/compare_runs.py", *args)


def test_compare_runs_ranks_the_sweep_as_its_event_files_do(grid_sweep, tmp_path):
    result = compare_runs(str(grid_sweep), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "comparison.csv") as file:
        rows = list(csv.DictReader(file))
    # the best validation accuracy of each job, read straight from its event files
    best = {job.name: max(tensorboard_scalars(job)["val/acc"]) for job in job_folders(grid_sweep)}
    assert [row["run"] for row in rows] == sorted(best, key=best.get, reverse=True)
    assert float(rows[0]["val/acc_best"]) == pytest.approx(max(best.values()))
    assert {(row["optimizer"], row["optimizer.lr"]) for row in rows} == {
        ("adam", "0.001"),
        ("adam", "0.01"),
        ("sgd", "0.001"),
        ("sgd", "0.01"),
    }
    assert all(row["status"] == "finished" and float(row["s/epoch"]) > 0 for row in rows)
    assert "4 runs under" in result.stdout
    image = plt.imread(tmp_path / "comparison.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.std() > 0.05  # not a blank page


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_tensorboard_server_lists_the_runs_scalars_and_hparams(grid_sweep):
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "tensorboard"),
        f"--logdir={grid_sweep}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--load_fast=false",
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/data"

    def get(route: str, body: dict | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url + route, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    try:
        expected = sorted(f"{job.name}/tensorboard" for job in job_folders(grid_sweep))
        runs: object = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and runs != expected:
            assert server.poll() is None, "tensorboard exited"
            try:
                runs = sorted(get("/runs"))
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
        assert runs == expected

        tags = get("/plugin/scalars/tags")
        for run in expected:
            assert {"train/loss", "val/loss", "val/acc", "val/acc_best", "train/lr"} <= set(
                tags[run]
            )
        experiment = get("/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {info["name"] for info in experiment["hparamInfos"]}
        assert {"optimizer.lr", "optimizer._target_", "data.batch_size", "seed"} <= hparams
        metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
        assert {"val/acc_best", "test/acc"} <= metrics
        statuses = ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING", "STATUS_UNKNOWN"]
        query = {"experimentName": "", "allowedStatuses": statuses, "sliceSize": 100}
        groups = get("/plugin/hparams/session_groups", query)["sessionGroups"]
        lrs = sorted(
            (g["hparams"]["optimizer._target_"], g["hparams"]["optimizer.lr"]) for g in groups
        )
        assert lrs == [
            ("torch.optim.Adam", 0.001),
            ("torch.optim.Adam", 0.01),
            ("torch.optim.SGD", 0.001),
            ("torch.optim.SGD", 0.01),
        ]
        assert all(s["status"] == "STATUS_SUCCESS" for g in groups for s in g["sessions"])
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_failing_job_is_reported_and_the_others_keep_their_results(tmp_path):
    result = multirun(tmp_path, "optimizer.lr=0.001,-1")
    assert result.returncode == 1
    assert "1 of 2 jobs failed:" in result.stdout
    line = "  1_optimizer.lr=-1,trainer.max_epochs=2: optimizer.lr=-1 is refused by torch.optim."
    assert line in result.stdout
    assert "1 of 2 jobs finished" in result.stdout
    good, bad = job_folders(only_folder(tmp_path / "train" / "multiruns"))
    assert (good / "checkpoints" / "best.ckpt").is_file()
    assert run_status(good) == "finished"
    assert run_status(bad) == (
        "failed: optimizer.lr=-1 is refused by torch.optim.Adam: Invalid learning rate: -1: "
        "pass another optimizer.lr (Adam's default, 0.001, works)"
    )
    report = compare_runs(str(good.parent))  # both jobs, the failed one last
    assert report.returncode == 0, report.stderr
    with open(good.parent / "comparison.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(row["run"], row["status"]) for row in rows] == [
        (good.name, "finished"),
        (bad.name, "failed"),
    ]
    assert "Invalid learning rate: -1" in rows[1]["note"]


def search_args(study: str, *args: str) -> list[str]:
    return ["hparams_search=optuna", f"hydra.sweeper.study_name={study}", *args]


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
    result = multirun(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("is launching 2 jobs") == 2  # two batches of two parallel trials
    study = load_study(tmp_path, "parallel")
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert len(job_folders(tmp_path / "train" / "searches" / "parallel")) == 4


@pytest.mark.slow
def test_the_submitit_launcher_runs_sweep_jobs(tmp_path):
    # the machinery of hydra/launcher=slurm, with local processes instead of SLURM jobs
    result = multirun(tmp_path, "hydra/launcher=submitit_local", "optimizer.lr=0.001,0.01")
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = only_folder(tmp_path / "train" / "multiruns")
    assert (sweep_dir / ".submitit").is_dir()
    for job in job_folders(sweep_dir):
        assert (job / "checkpoints" / "best.ckpt").is_file()
        assert run_status(job) == "finished"
