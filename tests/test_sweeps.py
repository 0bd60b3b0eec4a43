"""Grid sweeps as a researcher runs them: a multirun's job folders, its comparison and
TensorBoard view, a failing job, the submitit launcher (Optuna searches: test_optuna_search.py)."""

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from tests.helpers import (
    job_folders,
    multirun,
    multirun_args,
    only_folder,
    run_in_process,
    run_script,
    run_status,
    tensorboard_scalars,
)


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
    return run_in_process("scripts/compare_runs.py", *args)


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


@pytest.mark.slow
def test_the_submitit_launcher_runs_sweep_jobs(tmp_path):
    # the machinery of hydra/launcher=slurm, with local processes instead of SLURM jobs
    args = multirun_args(tmp_path, "hydra/launcher=submitit_local", "optimizer.lr=0.001,0.01")
    result = run_script("src/train.py", *args)  # a new process, as submitit pickles the task
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = only_folder(tmp_path / "train" / "multiruns")
    assert (sweep_dir / ".submitit").is_dir()
    for job in job_folders(sweep_dir):
        assert (job / "checkpoints" / "best.ckpt").is_file()
        assert run_status(job) == "finished"
