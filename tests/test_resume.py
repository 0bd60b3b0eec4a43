"""resume=auto finds the newest unfinished run of the same command and continues it in its own
folder, from its newest checkpoint (mid-epoch ones included), with curves that continue
without doubled points; it refuses a changed run length under a schedule that follows it."""

import os
from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from src.callbacks.last_checkpoint import LastCheckpoint, parse_interval
from src.cli.resume import (
    command_overrides,
    find_unfinished_run,
    refuse_changed_schedule,
    resume_folder,
)
from src.core.errors import ConfigError
from src.tracking.run_status import TensorBoardSession
from tests.conftest import LEAN_SHORT as SHORT
from tests.conftest import STEPS_PER_EPOCH, compose_config
from tests.helpers import (
    error_lines,
    last_checkpoint,
    run_folders,
    run_in_process,
    tensorboard_events,
)


class CrashAt(L.Callback):
    """Test only: raise, as a crash would end the process, at a hook of an epoch (from 1); once,
    if the file `once` does not exist yet (it makes it), so the same command resumes."""

    def __init__(
        self, epoch: int, once: str, hook: str = "on_train_epoch_end", batch: int = 0
    ) -> None:
        self.epoch, self.once, self.hook, self.batch = epoch, Path(once), hook, batch

    def _at(self, trainer: L.Trainer, hook: str, batch: int = 0) -> None:
        at = hook == self.hook and trainer.current_epoch + 1 == self.epoch and batch == self.batch
        if at and not self.once.exists():
            self.once.write_text("crashed")
            raise RuntimeError("simulated crash")

    def on_train_epoch_end(self, trainer, pl_module):
        self._at(trainer, "on_train_epoch_end")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._at(trainer, "on_train_batch_start", batch_idx)


def crash_at(epoch: int, once: Path, **settings: object) -> list[str]:
    """The overrides that add CrashAt to a run."""
    settings = {"_target_": f"{__name__}.CrashAt", "epoch": epoch, "once": once, **settings}
    return [f"+callbacks.crash.{key}={value}" for key, value in settings.items()]


def fake_run(runs: Path, name: str, overrides: list[str], status: str, checkpoint: bool) -> Path:
    """A run folder as a run leaves it: its overrides, status and (maybe) last.ckpt."""
    run = runs / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / "status.txt").write_text(status + "\n")
    if checkpoint:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    stamp = 1_000_000 + len(list(runs.iterdir()))  # started in the order made
    os.utime(run / ".hydra" / "overrides.yaml", (stamp, stamp))
    return run


def test_the_same_command_may_differ_in_resume_and_run_length_only():
    command = ["optimizer=sgd", "+trainer.limit_train_batches=4", "trainer.max_epochs=6"]
    same = ["trainer.limit_train_batches=4", "optimizer=sgd", "trainer.max_epochs=9", "resume=auto"]
    assert command_overrides(command) == command_overrides(same)
    assert command_overrides(command) != command_overrides([*command, "seed=1"])
    assert command_overrides(command) != command_overrides(["optimizer=adam", *command[1:]])


def test_the_newest_unfinished_run_with_a_checkpoint_is_continued(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    command = ["optimizer=sgd"]
    wanted = fake_run(tmp_path, "a", command, "interrupted: SIGTERM after epoch 1 at step 5", True)
    elsewhere = "running: pid 999999999 on elsewhere\nslurm job 77"
    fake_run(tmp_path, "b", command, elsewhere, True)  # may still run on another machine
    fake_run(tmp_path, "c", ["optimizer=adam"], "interrupted", True)  # another command
    fake_run(tmp_path, "d", command, "failed: RuntimeError", False)  # nothing to continue
    fake_run(tmp_path, "e", command, "finished", True)
    alive = f"running: pid {os.getpid()} on {os.uname().nodename}"
    fake_run(tmp_path, "f", command, alive, True)  # still running here

    run, notes = find_unfinished_run(tmp_path, [*command, "resume=auto"])
    assert run == wanted
    assert [note.split()[0] for note in notes] == ["f", "d", "b"]
    assert f"continue it with hydra.run.dir={tmp_path / 'b'} resume=auto" in notes[-1]
    assert find_unfinished_run(tmp_path, ["optimizer=rmsprop"]) == (None, [])
    assert find_unfinished_run(tmp_path / "none_yet", command) == (None, [])

    monkeypatch.setenv("SLURM_JOB_ID", "77")  # the same job, requeued: its run is gone
    assert find_unfinished_run(tmp_path, command)[0] == tmp_path / "b"


def test_the_run_folder_resolver_names_a_new_run_unless_resume_is_auto(tmp_path):
    fake_run(tmp_path, "old", ["seed=3"], "interrupted", True)
    assert resume_folder(str(tmp_path), "new", None, ["seed=3"]) == "new"
    assert resume_folder(str(tmp_path), "new", "auto", ["seed=3", "resume=auto"]) == "old"
    assert resume_folder(str(tmp_path), "new2", "auto", ["seed=4", "resume=auto"]) == "new2"


@pytest.mark.parametrize(
    ("scheduler", "refused"),
    [
        ("cosine", True),
        ("warmup_cosine", True),
        ("onecycle", True),
        ("step", False),
        ("none", False),
    ],
)
def test_a_changed_max_epochs_is_refused_where_the_schedule_follows_it(
    tmp_path, scheduler, refused
):
    cfg = compose_config("train.yaml", tmp_path, [f"scheduler={scheduler}", "trainer.max_epochs=9"])
    checkpoint = {"run_config": {"trainer": {"max_epochs": 6}}}
    if not refused:
        refuse_changed_schedule(cfg, checkpoint, tmp_path / "last.ckpt")
        return
    with pytest.raises(ConfigError, match="resume with trainer.max_epochs=6, or start a new run"):
        refuse_changed_schedule(cfg, checkpoint, tmp_path / "last.ckpt")
    same = {"run_config": {"trainer": {"max_epochs": 9}}}
    refuse_changed_schedule(cfg, same, tmp_path / "last.ckpt")  # the same length: fine


def test_the_refusal_is_one_line_and_leaves_the_run_as_it_was(tmp_path):
    command = [*SHORT, "scheduler=cosine", f"paths.log_dir={tmp_path}"]
    run = fake_run(tmp_path / "train" / "runs", "old", command, "interrupted: SIGTERM", True)
    torch.save({"run_config": {"trainer": {"max_epochs": 6}}}, run / "checkpoints" / "last.ckpt")
    result = run_in_process("src/train.py", *command, "trainer.max_epochs=8", "resume=auto")
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: resume=auto with trainer.max_epochs=8, but the run started with 6 and its "
        "schedule follows the run's length (scheduler.T_max=${trainer.max_epochs}): resume with "
        f"trainer.max_epochs=6, or start a new run from its weights with "
        f"model.init_from={run / 'checkpoints' / 'last.ckpt'}"
    ]
    assert run_folders(tmp_path) == [run]
    assert (run / "status.txt").read_text() == "interrupted: SIGTERM\n"


def test_after_a_crash_past_validation_the_resumed_curves_hold_each_epoch_once(tmp_path):
    """A crash (no signal, no save) after epoch 2 was validated and logged, before its
    checkpoint: resume=auto continues from epoch 1's last.ckpt, and TensorBoard hides what the
    crashed attempt logged after it (SummaryWriter's purge_step), so each epoch shows once."""
    command = [*SHORT, "test=false", "trainer.max_epochs=3", f"paths.log_dir={tmp_path}"]
    command += [*crash_at(2, tmp_path / "crashed"), "resume=auto"]
    first = run_in_process("src/train.py", *command)
    assert first.returncode != 0
    assert "resume=auto: no unfinished run of this command" in first.stdout + first.stderr
    [run] = run_folders(tmp_path)
    assert (run / "status.txt").read_text().startswith("failed: RuntimeError: simulated crash")
    assert last_checkpoint(run)["global_step"] == STEPS_PER_EPOCH  # epoch 1's

    resumed = run_in_process("src/train.py", *command)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert run_folders(tmp_path) == [run]
    events = tensorboard_events(run)  # the whole folder, as TensorBoard reads it
    for tag in ("val/acc", "val/loss", "train/loss"):
        steps = [event.step for event in events.Scalars(tag)]
        assert len(steps) == 3 and steps == sorted(set(steps)), tag


def test_every_n_train_steps_saves_last_ckpt_mid_epoch_and_the_resume_continues_there(
    tmp_path,
):
    command = [*SHORT, "test=false", "trainer.max_epochs=2"]
    command += [f"paths.log_dir={tmp_path}", "callbacks.last_checkpoint.every_n_train_steps=3"]
    command += crash_at(2, tmp_path / "crashed", hook="on_train_batch_start", batch=3)
    crashed = run_in_process("src/train.py", *command)
    assert crashed.returncode != 0
    [run] = run_folders(tmp_path)
    # saved at steps 3 (mid-epoch 1), 5 (end of epoch 1) and 6 (mid-epoch 2); not at 8
    assert last_checkpoint(run)["global_step"] == 6

    resumed = run_in_process("src/train.py", *command, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "(saved in epoch 2, at step 6)" in resumed.stdout + resumed.stderr
    assert last_checkpoint(run)["global_step"] == 2 * STEPS_PER_EPOCH
    assert len(tensorboard_events(run).Scalars("val/acc")) == 2


def test_the_time_interval_reads_like_max_time():
    assert parse_interval("00:00:30:00") == timedelta(minutes=30)
    assert parse_interval({"minutes": 30}) == timedelta(minutes=30)
    assert parse_interval(90) == timedelta(seconds=90)
    checkpoint = LastCheckpoint("ckpts", train_time_interval="00:01:00:00")
    assert checkpoint._train_time_interval == timedelta(hours=1)
    assert checkpoint.every_n_epochs == 1  # and after every epoch too
    for bad in ("30 minutes", "00:00:00:00"):
        with pytest.raises(ConfigError, match="train_time_interval"):
            parse_interval(bad)


def test_resume_takes_auto_or_nothing(tmp_path):
    result = run_in_process("src/train.py", f"paths.log_dir={tmp_path}", "resume=yes")
    assert error_lines(result) == [
        "error: resume=yes is not an option: resume=auto continues the newest unfinished run "
        "of this command; leave it out to start a new run, or pass ckpt_path=<a .ckpt>"
    ]
    assert result.returncode == 2 and run_folders(tmp_path) == []


def test_the_status_file_names_the_slurm_job_a_requeue_keeps(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with TensorBoardSession(None, run_dir=tmp_path) as session:
        session.start({})
        lines = (tmp_path / "status.txt").read_text().splitlines()
        assert lines == [f"running: pid {os.getpid()} on {os.uname().nodename}", "slurm job 4242"]
        session.end("interrupted", "SIGTERM after epoch 1 at step 5")
    assert (tmp_path / "status.txt").read_text().startswith("interrupted: SIGTERM after epoch 1")


def test_ckpt_path_with_a_changed_max_epochs_is_refused_under_onecycle(tmp_path):
    """ckpt_path= resume with another run length under one-cycle is refused in one line before
    any work (one-cycle would otherwise raise mid-run when it steps past its old end); the same
    length still resumes."""
    command = [*SHORT, "test=false", "scheduler=onecycle", f"paths.log_dir={tmp_path}"]
    first = run_in_process("src/train.py", *command, "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-2000:]
    [run] = run_folders(tmp_path)
    last = run / "checkpoints" / "last.ckpt"

    longer = run_in_process("src/train.py", *command, "trainer.max_epochs=2", f"ckpt_path={last}")
    assert longer.returncode == 2
    assert error_lines(longer) == [
        f"error: ckpt_path={last} with trainer.max_epochs=2, but the run started with 1 and its "
        "schedule follows the run's length (scheduler.total_steps=auto): resume with "
        f"trainer.max_epochs=1, or start a new run from its weights with model.init_from={last}"
    ]
    assert "Traceback" not in longer.stderr
    assert run_folders(tmp_path) == [run]  # nothing built or written

    same = run_in_process("src/train.py", *command, "trainer.max_epochs=1", f"ckpt_path={last}")
    assert same.returncode == 0, same.stderr[-2000:]
