"""Several nodes on Lightning's own engine: every process of a torchrun or srun launch shares one
run folder, and two nodes of one process each (simulated on this machine) train exactly the run
that Lightning's own DDP launcher trains with two processes on one node."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src import PROJECT_ROOT
from src.models.checkpoint import read_checkpoint
from tests.conftest import QUIET, compose_with_hydra
from tests.helpers import (
    csv_metric,
    error_lines,
    run_folders,
    run_in_process,
    tensorboard_scalars,
)

# The same run each time: two epochs of DDP on CPU processes (gloo), with CSV beside TensorBoard.
RUN = [*QUIET, "trainer=ddp_cpu", "trainer.max_epochs=2", "logger=tensorboard_csv"]
TWO_NODES = ["trainer.devices=1", "trainer.num_nodes=2"]
TIMEOUT = 300  # seconds for one launch, all its processes together
LAUNCHERS = ("TORCHELASTIC_", "SLURM_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_", "GROUP_")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without a launcher's variables (pytest itself may run under one), one
    thread per process (2 cores; the same arithmetic in both launches), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHERS)}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch):
    """Each test sets the launcher's variables it needs (pytest itself may run under one)."""
    for name in [k for k in os.environ if k.startswith(LAUNCHERS)]:
        monkeypatch.delenv(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def launch(commands: list[tuple[list[str], dict[str, str]]], logs: Path) -> list[str]:
    """Start every (command, env) at once, as the nodes of one launch, and wait for all: the
    output of each. If one fails or the launch overruns TIMEOUT, kill them all (each with the
    processes it started: its own session) and fail with what they wrote."""
    logs.mkdir(parents=True, exist_ok=True)
    files = [logs / f"node{i}.log" for i in range(len(commands))]
    processes = []
    for (command, env), file in zip(commands, files, strict=True):
        with open(file, "w") as out:
            processes.append(
                subprocess.Popen(
                    command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            codes = [p.poll() for p in processes]
            if None not in codes or any(code not in (None, 0) for code in codes):
                break  # all done, or one failed: the others would wait for it until they time out
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    outputs = [file.read_text() for file in files]
    codes = [p.returncode for p in processes]
    report = "".join(
        f"\n--- node {i}, exit {codes[i]}:\n{out[-3000:]}" for i, out in enumerate(outputs)
    )
    assert codes == [0] * len(processes), report
    return outputs


def torchrun_nodes(log_dir: Path, run_id: str) -> list[tuple[list[str], dict[str, str]]]:
    """What a user types on each of two nodes: one torchrun agent per node, one process each,
    meeting at node 0's address (static rendezvous: --node-rank fixes each node's ranks)."""
    port = free_port()
    agent = [sys.executable, "-m", "torch.distributed.run"]  # the `torchrun` command
    return [
        (
            [
                *agent, "--nnodes=2", "--nproc-per-node=1", f"--node-rank={node}",
                "--master-addr=localhost", f"--master-port={port}", f"--rdzv-id={run_id}",
                "src/train.py", f"paths.log_dir={log_dir}", *RUN, *TWO_NODES,
            ],
            clean_env(),
        )
        for node in range(2)
    ]  # fmt: skip


def srun_tasks(log_dir: Path, job_id: str) -> list[tuple[list[str], dict[str, str]]]:
    """What `srun` starts for `sbatch --nodes=2 --ntasks-per-node=1`: one task per node, told its
    place by SLURM's variables, which Lightning's SLURMEnvironment reads."""
    slurm = {
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_NAME": "train",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NODELIST": "localhost",
        "MASTER_PORT": str(free_port()),  # else derived from the job id
    }
    command = [sys.executable, "src/train.py", f"paths.log_dir={log_dir}", *RUN, *TWO_NODES]
    return [
        (
            command,
            clean_env(**slurm, SLURM_PROCID=str(task), SLURM_NODEID=str(task), SLURM_LOCALID="0"),
        )
        for task in range(2)
    ]


@pytest.fixture(scope="module")
def one_node_run(tmp_path_factory) -> Path:
    """The reference: two processes on one node, started by Lightning's own DDP launcher."""
    log_dir = tmp_path_factory.mktemp("one_node")
    command = [sys.executable, "src/train.py", f"paths.log_dir={log_dir}", *RUN]
    launch([(command, clean_env())], log_dir / "output")
    (folder,) = run_folders(log_dir)
    return folder


def assert_one_run_of_two_nodes(log_dir: Path, name: str, outputs: list[str]) -> Path:
    """One run folder, `name`, with one set of outputs, written by rank zero on node 0 while
    global rank 1 ran on node 1."""
    assert run_folders(log_dir) == [log_dir / "train" / "runs" / name]
    folder = log_dir / "train" / "runs" / name
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in folder.glob("*.log")) == ["train.log"]
    assert (folder / "train.log").read_text().count("Tested checkpoint:") == 1  # rank zero's only
    assert sorted(p.name for p in (folder / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    ]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in outputs[0] and "GLOBAL_RANK: 1" not in outputs[0]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    run_config = read_checkpoint(folder / "checkpoints" / "best.ckpt")["run_config"]
    assert (run_config["trainer"]["num_nodes"], run_config["trainer"]["devices"]) == (2, 1)
    return folder


def assert_same_metrics(two_nodes: Path, one_node: Path) -> None:
    """Every validation and test value of the two runs, epoch by epoch, in TensorBoard and CSV."""
    ours, reference = tensorboard_scalars(two_nodes), tensorboard_scalars(one_node)
    compared = sorted(tag for tag in reference if tag.startswith(("val/", "test/")))
    assert {"val/loss", "val/acc", "val/acc_best", "test/acc"} <= set(compared)
    assert len(reference["val/acc"]) == 2  # one value per epoch
    for tag in compared:
        assert ours[tag] == pytest.approx(reference[tag], abs=1e-5), tag
    for name in ("val/loss", "val/acc"):
        assert csv_metric(two_nodes, name) == pytest.approx(csv_metric(one_node, name), abs=1e-5)


@pytest.mark.slow
def test_two_torchrun_nodes_train_the_run_of_two_processes_on_one_node(tmp_path, one_node_run):
    outputs = launch(torchrun_nodes(tmp_path, run_id="digits-2x1"), tmp_path / "output")
    folder = assert_one_run_of_two_nodes(tmp_path, "torchrun-digits-2x1", outputs)
    assert_same_metrics(folder, one_node_run)


@pytest.mark.slow
def test_two_srun_nodes_train_the_run_of_two_processes_on_one_node(tmp_path, one_node_run):
    outputs = launch(srun_tasks(tmp_path, job_id="4242"), tmp_path / "output")
    folder = assert_one_run_of_two_nodes(tmp_path, "slurm-4242", outputs)
    assert_same_metrics(folder, one_node_run)


# The resolvers behind the shared folder (configs/hydra/default.yaml, src/cli/resolvers.py).


def run_dir(*overrides: str) -> str:
    return compose_with_hydra(*overrides).hydra.run.dir


def test_a_plain_run_is_named_by_its_start_time_to_the_microsecond():
    first, second = Path(run_dir()), Path(run_dir())
    assert first.parent == second.parent and first.parent.name == "runs"
    assert first != second and len(first.name) == len("2026-11-23_04-41-03-288497")


def test_every_torchrun_process_resolves_one_folder_named_by_the_rendezvous_id(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "exp/7 a")
    monkeypatch.setenv("WORLD_SIZE", "8")
    first = run_dir()
    time.sleep(0.01)
    assert run_dir() == first and first.endswith("/train/runs/torchrun-exp-7-a")


def test_every_srun_task_resolves_one_folder_named_by_the_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert run_dir().endswith("/train/runs/slurm-123")
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # Lightning launches: a plain run
    assert "slurm" not in run_dir()
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task: Lightning's launcher, if any
    assert "slurm" not in run_dir()


@pytest.mark.parametrize(
    ("env", "written"),
    [
        ({}, ".hydra"),
        ({"RANK": "0"}, ".hydra"),
        ({"RANK": "3"}, None),
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "2"}, None),
        ({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}, ".hydra"),
    ],
)
def test_only_global_rank_zero_writes_the_composed_config(monkeypatch, env, written):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert compose_with_hydra().hydra.output_subdir == written


def test_torchrun_without_a_rendezvous_id_gives_one_line_and_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's default on several nodes
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = run_in_process("src/train.py", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: torchrun was started without --rdzv-id, so its processes cannot agree on one run "
        "folder: pass the same --rdzv-id=<a new name for this run> to torchrun on every node"
    ]
    assert result.stderr.strip() == error_lines(result)[0] and not any(tmp_path.iterdir())
