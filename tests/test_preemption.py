"""A run stopped by SIGTERM or Ctrl-C saves last.ckpt at the next safe point, records itself as
interrupted, prints the command that resumes it and exits non-zero; that command continues it in
the same folder and TensorBoard run as if it had never stopped."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest

from src import PROJECT_ROOT
from tests.conftest import LEAN_SHORT as SHORT
from tests.conftest import STEPS_PER_EPOCH, compose_with_hydra
from tests.helpers import (
    last_checkpoint,
    run_folders,
    run_in_process,
    run_status,
    tensorboard_scalars,
)

COMPARED = ("val/acc", "val/loss", "val/acc_best", "train/loss", "test/acc", "test/loss")


class SignalAt(L.Callback):
    """Test only: at a hook of an epoch (counted from 1), and batch if given, send `signal` to
    this process `count` times; or, with `marker`, write that file and wait (at most two
    minutes) for a signal from outside."""

    def __init__(
        self,
        epoch: int,
        hook: str = "on_train_epoch_end",
        batch: int | None = None,
        signal: str = "SIGTERM",
        count: int = 1,
        marker: str | None = None,
    ) -> None:
        self.epoch, self.hook, self.batch = epoch, hook, batch
        self.signal, self.count, self.marker = signal, count, marker
        self.done = False

    def _at(self, trainer: L.Trainer, hook: str, batch: int | None = None) -> None:
        if self.done or hook != self.hook or trainer.current_epoch + 1 != self.epoch:
            return
        if self.batch is not None and batch != self.batch:
            return
        self.done = True
        if self.marker:
            Path(self.marker).write_text("waiting")
            deadline = time.monotonic() + 120
            while not trainer.received_sigterm and time.monotonic() < deadline:
                time.sleep(0.02)
            return
        for _ in range(self.count):
            os.kill(os.getpid(), getattr(signal, self.signal))

    def on_train_epoch_end(self, trainer, pl_module):
        self._at(trainer, "on_train_epoch_end")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._at(trainer, "on_train_batch_end", batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
        if not trainer.sanity_checking:
            self._at(trainer, "on_validation_batch_end", batch_idx)


def signal_at(epoch: int, **settings: object) -> list[str]:
    """The overrides that add SignalAt to a run."""
    added = [
        f"+callbacks.signal_at._target_={__name__}.SignalAt",
        f"+callbacks.signal_at.epoch={epoch}",
    ]
    return added + [f"+callbacks.signal_at.{key}={value}" for key, value in settings.items()]


def printed_resume_command(result: subprocess.CompletedProcess) -> list[str]:
    """The command the run printed after `Resume with:`, split as a shell would."""
    lines = (result.stdout + result.stderr).splitlines()
    index = next(i for i, line in enumerate(lines) if line.endswith("Resume with:"))
    return shlex.split(lines[index + 1])


def best_score(checkpoint: dict) -> float:
    state = next(v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint"))
    return float(state["best_model_score"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, list[float]]:
    """The scalars of the same 6-epoch run, never stopped."""
    logs = tmp_path_factory.mktemp("uninterrupted")
    result = run_in_process("src/train.py", *SHORT, "trainer.max_epochs=6", f"paths.log_dir={logs}")
    assert result.returncode == 0, result.stderr[-2000:]
    [run] = run_folders(logs)
    return tensorboard_scalars(run)


def test_sigterm_after_epoch_3_of_6_then_the_printed_command_continues_the_same_run(
    tmp_path, uninterrupted
):
    command = [*SHORT, "trainer.max_epochs=6", f"paths.log_dir={tmp_path}", *signal_at(3)]
    stopped = run_in_process("src/train.py", *command)
    assert stopped.returncode == 128 + signal.SIGTERM
    [run] = run_folders(tmp_path)
    assert (run / "status.txt").read_text() == "interrupted: SIGTERM after epoch 3 at step 15\n"
    assert last_checkpoint(run)["global_step"] == 3 * STEPS_PER_EPOCH

    resume = printed_resume_command(stopped)
    assert resume == ["python", "src/train.py", *command, "resume=auto"]
    resumed = run_in_process(*resume[1:])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "dirpath has changed" not in resumed.stderr  # best.ckpt's state came back whole

    assert run_folders(tmp_path) == [run]  # the same folder and TensorBoard run
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) > 1
    scalars = tensorboard_scalars(run)
    assert len(scalars["val/acc"]) == 6
    for tag in COMPARED:  # as if it had never stopped
        assert scalars[tag] == uninterrupted[tag], tag
    assert best_score(last_checkpoint(run)) == max(scalars["val/acc"])
    assert (run / "status.txt").read_text() == "finished\n"
    # the run's config stays as it was first written; its log goes on
    assert "resume=auto" not in (run / ".hydra" / "overrides.yaml").read_text()
    log = (run / "train.log").read_text()
    assert "Interrupted by SIGTERM" in log and "resume=auto: continuing" in log


def test_sigterm_during_validation_stops_after_that_validation(tmp_path, uninterrupted):
    command = [*SHORT, "test=false", "trainer.max_epochs=2", f"paths.log_dir={tmp_path}"]
    during_validation = signal_at(1, hook="on_validation_batch_end", batch=0)
    stopped = run_in_process("src/train.py", *command, *during_validation)
    assert stopped.returncode == 128 + signal.SIGTERM
    [run] = run_folders(tmp_path)
    assert (run / "status.txt").read_text() == "interrupted: SIGTERM after epoch 1 at step 5\n"
    assert tensorboard_scalars(run)["val/acc"] == uninterrupted["val/acc"][:1]  # validated

    resumed = run_in_process("src/train.py", *command, *during_validation, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert tensorboard_scalars(run)["val/acc"] == uninterrupted["val/acc"][:2]


def test_sigterm_in_an_epochs_last_step_waits_for_its_validation_and_resumes(
    tmp_path, uninterrupted
):
    """Found by tests/fault_injection/harness.py: a stop passed on in the last step cut the epoch's
    validation short, and the resume from that checkpoint crashed in early stopping."""
    command = [*SHORT, "test=false", "trainer.max_epochs=2", f"paths.log_dir={tmp_path}"]
    last_step = signal_at(1, hook="on_train_batch_end", batch=STEPS_PER_EPOCH - 1)
    stopped = run_in_process("src/train.py", *command, *last_step)
    assert stopped.returncode == 128 + signal.SIGTERM
    [run] = run_folders(tmp_path)
    assert (run / "status.txt").read_text() == "interrupted: SIGTERM after epoch 1 at step 5\n"
    assert tensorboard_scalars(run)["val/acc"] == uninterrupted["val/acc"][:1]  # validated
    resumed = run_in_process("src/train.py", *command, *last_step, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert tensorboard_scalars(run)["val/acc"] == uninterrupted["val/acc"][:2]


def test_a_run_stopped_in_its_last_validation_resumes_to_finished(tmp_path):
    """Found by tests/fault_injection/harness.py: resuming where training had ended validated
    nothing, and the run then failed on its optimized metric."""
    command = [*SHORT, "test=false", "trainer.max_epochs=2", f"paths.log_dir={tmp_path}"]
    during_last_validation = signal_at(2, hook="on_validation_batch_end", batch=0)
    stopped = run_in_process("src/train.py", *command, *during_last_validation)
    assert stopped.returncode == 128 + signal.SIGTERM
    resumed = run_in_process("src/train.py", *command, *during_last_validation, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    [run] = run_folders(tmp_path)
    assert (run / "status.txt").read_text().startswith("finished")


def test_ctrl_c_mid_epoch_saves_that_step_and_the_resume_continues_mid_epoch(tmp_path):
    # EpochTime included: a run resumed mid-epoch starts no epoch (it starts its clock at
    # on_train_start too)
    command = [*SHORT, "test=false", "trainer.max_epochs=2"]
    command.append(f"paths.log_dir={tmp_path}")
    sigint = signal_at(1, hook="on_train_batch_end", batch=2, signal="SIGINT")
    stopped = run_in_process("src/train.py", *command, *sigint)
    assert stopped.returncode == 128 + signal.SIGINT
    assert "SIGINT received: stopping at the end of this step" in stopped.stdout + stopped.stderr
    [run] = run_folders(tmp_path)
    assert last_checkpoint(run)["global_step"] == 3  # the step it came in
    assert (run / "status.txt").read_text() == "interrupted: SIGINT in epoch 1 at step 3\n"

    resumed = run_in_process("src/train.py", *command, *sigint, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "(saved in epoch 1, at step 3)" in resumed.stdout + resumed.stderr
    assert last_checkpoint(run)["global_step"] == 2 * STEPS_PER_EPOCH  # epoch 1's other 2
    assert len(tensorboard_scalars(run)["val/acc"]) == 2


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    command = [*SHORT, "test=false", "trainer.max_epochs=2", f"paths.log_dir={tmp_path}"]
    twice = signal_at(1, hook="on_train_batch_end", batch=2, signal="SIGINT", count=2)
    stopped = run_in_process("src/train.py", *command, *twice)
    assert stopped.returncode == 128 + signal.SIGINT
    [run] = run_folders(tmp_path)
    assert not (run / "checkpoints" / "last.ckpt").exists()
    assert (run / "status.txt").read_text().startswith("interrupted: SIGINT in epoch 1")


def start_until(marker: Path, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start `python src/train.py command` and wait until it writes marker (SignalAt waits)."""
    env = {**env, "PYTHONPATH": str(PROJECT_ROOT)}  # SignalAt is in this module
    process = subprocess.Popen(
        [sys.executable, "src/train.py", *command],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), process.communicate()[1][-2000:]
    return process


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_printed(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a printed `python src/train.py ...` command from the repository root."""
    env = {**env, "PYTHONPATH": str(PROJECT_ROOT)}
    assert command[:2] == ["python", "src/train.py"]
    return subprocess.run(
        [sys.executable, *command[1:]], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )


def assert_continued_as_uninterrupted(logs: Path, uninterrupted: dict[str, list[float]]) -> None:
    [run] = run_folders(logs)
    scalars = tensorboard_scalars(run)
    assert len(scalars["val/acc"]) == 6
    for tag in COMPARED:
        assert scalars[tag] == uninterrupted[tag], tag
    assert run_status(run) == "finished"


@pytest.mark.slow
def test_a_real_sigterm_from_outside_at_epoch_3_of_6_and_resume_auto(tmp_path, uninterrupted):
    """The issue's demonstration: kill a training process at epoch 3 of 6, resume it."""
    marker = tmp_path / "at_epoch_3"
    command = [*SHORT, "trainer.max_epochs=6", f"paths.log_dir={tmp_path / 'logs'}"]
    command += signal_at(3, marker=marker)
    process = start_until(marker, command, dict(os.environ))
    process.send_signal(signal.SIGTERM)
    stopped = finish(process)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]

    resumed = run_printed(printed_resume_command(stopped), dict(os.environ))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_continued_as_uninterrupted(tmp_path / "logs", uninterrupted)


@pytest.mark.slow
def test_slurms_warning_signal_requeues_and_the_requeued_job_resumes(tmp_path, uninterrupted):
    """scripts/slurm/train.sbatch without SLURM: SLURM's variables as srun sets them for one
    task, and an `scontrol` that notes the requeue. SIGUSR1 (the warning): Lightning saves an
    hpc checkpoint and requeues; SIGTERM (the time limit): last.ckpt and exit; the same command
    again (the requeued job) continues the run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
    }
    marker = tmp_path / "at_epoch_3"
    logs = tmp_path / "logs"
    command = [*SHORT, "trainer.max_epochs=6", f"paths.log_dir={logs}", "resume=auto"]
    command += signal_at(3, marker=marker)
    process = start_until(marker, command, env)
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not (tmp_path / "scontrol.log").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    [run] = run_folders(logs)
    assert (run / "hpc_ckpt_1.ckpt").is_file()
    process.send_signal(signal.SIGTERM)
    stopped = finish(process)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert (run / "status.txt").read_text() == (
        "interrupted: SIGTERM after epoch 3 at step 15\nslurm job 4242\n"
    )

    requeued = run_printed(["python", "src/train.py", *command], env)
    assert requeued.returncode == 0, requeued.stderr[-2000:]
    assert "resume=auto: continuing" in requeued.stdout + requeued.stderr
    assert_continued_as_uninterrupted(logs, uninterrupted)


def test_the_sbatch_script_asks_for_the_warning_signal_and_resumes():
    script = PROJECT_ROOT / "scripts" / "slurm" / "train.sbatch"
    text = script.read_text()
    assert "#SBATCH --signal=SIGUSR1@90" in text.splitlines()
    assert "#SBATCH --requeue" in text.splitlines()
    assert 'srun python src/train.py "$@" resume=auto' in text
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_submitit_jobs_take_lightnings_warning_signal_instead_of_submitits():
    """-m hydra/launcher=slurm: each job's sbatch script asks for SIGUSR1 before the time limit
    (Lightning saves and requeues) and allows the requeue."""
    from submitit.slurm.slurm import _make_sbatch_string

    launcher = compose_with_hydra("hydra/launcher=slurm").hydra.launcher
    script = _make_sbatch_string(
        command="python -m submitit.core._submit",
        folder="/tmp/submitit/%j",
        signal_delay_s=launcher.signal_delay_s,
        additional_parameters=dict(launcher.additional_parameters),
    ).splitlines()
    assert "#SBATCH --signal=USR1@90" in script and "#SBATCH --requeue" in script
