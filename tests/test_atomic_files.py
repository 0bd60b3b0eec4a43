"""Checkpoints and run files are written whole or not at all; bad checkpoints give one line."""

import errno
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.plugins import AsyncCheckpointIO, TorchCheckpointIO
from lightning.pytorch.plugins.precision import MixedPrecision
from omegaconf import OmegaConf

import src.core.files as files
import src.tracking.checkpoint_io as checkpoint_io
from src.core.errors import ConfigError
from src.core.files import write_atomically
from src.tracking.checkpoint_io import AtomicCheckpointIO, trainer_plugins
from src.tracking.figures import save_figure
from tests.conftest import LEAN
from tests.helpers import error_lines, run_folders, run_in_process, run_script, run_status

# lean epochs of two training batches, one validation and one test batch
FEW_BATCHES = [
    *LEAN,
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]


def checkpoint(seed: int, size: int = 1_000_000) -> dict:
    """A checkpoint-shaped dict with a few MB of tensors that differ by seed."""
    generator = torch.Generator().manual_seed(seed)
    return {"state_dict": {"w": torch.randn(size, generator=generator)}, "epoch": seed}


def same(a: dict, b: dict) -> bool:
    return a["epoch"] == b["epoch"] and torch.equal(a["state_dict"]["w"], b["state_dict"]["w"])


def partial_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".partial-*"))


def test_a_save_killed_mid_write_leaves_the_old_checkpoint_and_the_next_save_cleans_up(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(1), last)
    before = last.read_bytes()
    # made before the fork: torch's thread pool, started by earlier tests, deadlocks in a child
    new = checkpoint(2)
    pid = os.fork()
    if pid == 0:  # the child: SIGKILLed after writing half of the new checkpoint
        written, write = 0, checkpoint_io._KeepsWriteErrors.write

        def dying_write(self, data):
            nonlocal written
            written += len(data)
            if written > 2_000_000:  # a kill in the middle of the tensor's bytes
                write(self, bytes(data)[: len(data) // 2])
                self.file.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return write(self, data)

        checkpoint_io._KeepsWriteErrors.write = dying_write
        AtomicCheckpointIO().save_checkpoint(new, last)
        os._exit(0)  # not reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    assert last.read_bytes() == before
    assert same(torch.load(last, weights_only=True), checkpoint(1))
    [left] = partial_files(last.parent)  # the killed save's half file, beside the real one
    assert 2_000_000 < left.stat().st_size < len(before)
    assert sorted(last.parent.glob("*.ckpt")) == [last]  # never taken for a checkpoint
    assert "ckpt_" not in left.name  # Lightning's hpc_ckpt_<n> search reads names with it

    AtomicCheckpointIO().save_checkpoint(checkpoint(3), last)
    assert partial_files(last.parent) == []
    assert same(torch.load(last, weights_only=True), checkpoint(3))


def test_a_save_syncs_the_file_renames_it_in_its_folder_and_syncs_the_folder(tmp_path, monkeypatch):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("reads which file a descriptor is from /proc")
    steps: list[tuple[str, Path, ...]] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd):
        steps.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        fsync(fd)

    def recorded_replace(source, target):
        steps.append(("replace", Path(source), Path(target)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(1, size=10), last)

    partial = steps[0][1]
    assert files.is_partial(partial) and partial.parent == last.parent
    assert steps == [("fsync", partial), ("replace", partial, last), ("fsync", last.parent)]


class FullDisk:
    """A file whose writes fail with `code` once `limit` bytes went to it, as the OS's do."""

    def __init__(self, file, limit: int, code: int) -> None:
        self.file, self.limit, self.code, self.count = file, limit, code, 0

    def write(self, data) -> int:
        self.count += len(data)
        if self.count > self.limit:
            raise OSError(self.code, os.strerror(self.code))
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def full_disk_after(monkeypatch, limit: int, code: int = errno.ENOSPC) -> None:
    """Checkpoint files take `limit` bytes each, then their writes fail with `code`."""
    monkeypatch.setattr(
        checkpoint_io, "open", lambda *a, **k: FullDisk(open(*a, **k), limit, code), raising=False
    )


def test_a_full_disk_mid_save_names_the_file_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch
):
    last = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(1), last)
    before = last.read_bytes()
    full_disk_after(monkeypatch, 1_000_000)
    with pytest.raises(ConfigError) as error:
        AtomicCheckpointIO().save_checkpoint(checkpoint(2), last)
    assert str(error.value) == (
        f"cannot write {last}: no space left on device; free space or set paths.log_dir=... "
        "to write elsewhere"
    )
    assert last.read_bytes() == before
    assert partial_files(tmp_path) == []


def test_a_read_only_folder_names_the_file_and_what_to_do(tmp_path, monkeypatch):
    def read_only(folder):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(files, "_new_partial", read_only)
    with pytest.raises(ConfigError, match="cannot write .*last.ckpt: read-only file system; make"):
        AtomicCheckpointIO().save_checkpoint(checkpoint(1, size=10), tmp_path / "last.ckpt")


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_folder_without_write_permission_keeps_its_checkpoint(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(1, size=10), last)
    last.parent.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="cannot write .*last.ckpt: permission denied"):
            AtomicCheckpointIO().save_checkpoint(checkpoint(2, size=10), last)
    finally:
        last.parent.chmod(0o755)
    assert same(torch.load(last, weights_only=True), checkpoint(1, size=10))


def test_a_training_run_on_a_full_disk_stops_with_one_line_and_keeps_its_checkpoints(
    tmp_path, monkeypatch
):
    saved: dict[Path, bytes] = {}
    save = AtomicCheckpointIO.save_checkpoint

    def save_until_full(self, content, path, storage_options=None):
        if content["epoch"] >= 1:  # the disk is full from the second epoch's saves on
            full_disk_after(monkeypatch, 10_000)
        save(self, content, path, storage_options)
        saved[Path(path)] = Path(path).read_bytes()

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save_until_full)
    result = run_in_process(
        "src/train.py", f"paths.log_dir={tmp_path}", *FEW_BATCHES, "trainer.max_epochs=3"
    )
    [run] = run_folders(tmp_path)
    folder = run / "checkpoints"
    [line] = error_lines(result)
    assert line.startswith(f"error: cannot write {folder}/")
    assert line.endswith(
        ": no space left on device; free space or set paths.log_dir=... to write elsewhere"
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert {p.name for p in saved} == {"best.ckpt", "last.ckpt"}  # both saved at epoch 0
    for path, content in saved.items():
        assert path.read_bytes() == content  # as the first epoch left them
        assert torch.load(path, weights_only=True)["epoch"] == 0
    assert partial_files(folder) == []
    assert run_status(run).startswith("failed")


def write_bad_checkpoints(folder: Path) -> dict[str, Path]:
    """Files that are not checkpoints of this project, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    whole = folder / "whole.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {}}, whole)
    kinds = {name: folder / f"{name}.ckpt" for name in ("empty", "cut", "random", "weights")}
    kinds["empty"].write_bytes(b"")
    kinds["cut"].write_bytes(whole.read_bytes()[:2500])
    kinds["random"].write_bytes(os.urandom(3000))
    torch.save({"conv.weight": torch.zeros(2, 2)}, kinds["weights"])
    kinds["other_project"] = folder / "other.ckpt"
    torch.save(
        {"state_dict": {"w": torch.zeros(2)}, "pytorch-lightning_version": "2.6.0"},
        kinds["other_project"],
    )
    kinds["pickled"] = folder / "pickled.ckpt"
    torch.save({"state_dict": {}, "args": OmegaConf.create({"a": 1})}, kinds["pickled"])
    return kinds


BAD = {
    "empty": "is empty (0 bytes): it was cut off while it was saved: pass another checkpoint",
    "cut": "is cut off (2500 bytes, its end is missing): it was cut off while it was saved: pass",
    "random": "is not a readable checkpoint (",
    "weights": "is a torch file but not a Lightning checkpoint: to start a new run from its "
    "weights use model.init_from=",
    "other_project": "is not a checkpoint written by src/train.py (missing ['hyper_parameters', "
    "'run_config']; another project's?): to start a new run from its weights use model.init_from=",
    "pickled": "holds pickled Python objects besides tensors, not loaded as they could run code:",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_eval_names_a_bad_checkpoint_and_what_to_do_in_one_line(tmp_path, kind):
    bad = write_bad_checkpoints(tmp_path / "files")[kind]
    result = run_in_process("src/eval.py", f"paths.log_dir={tmp_path}", f"ckpt_path={bad}")
    assert result.returncode == 2
    assert error_lines(result) == [result.stderr.strip()]  # one line, nothing else
    assert result.stderr.startswith(f"error: ckpt_path={bad} {BAD[kind]}")
    assert run_folders(tmp_path, "eval") == []


@pytest.mark.parametrize(
    ("script", "kind", "argument"),
    [
        ("src/train.py", "cut", "ckpt_path"),
        ("src/train.py", "other_project", "ckpt_path"),
        ("src/train.py", "weights", "ckpt_path"),
        ("src/predict.py", "empty", "ckpt_path"),
        ("src/predict.py", "pickled", "ckpt_path"),
        ("src/train.py", "cut", "model.init_from"),
        ("src/train.py", "random", "model.init_from"),
    ],
)
def test_every_command_names_a_bad_checkpoint_in_one_line(tmp_path, script, kind, argument):
    bad = write_bad_checkpoints(tmp_path / "files")[kind]
    args = (
        ["input=.", f"{argument}={bad}"]
        if script == "src/predict.py"
        else [*FEW_BATCHES, f"{argument}={bad}"]
    )
    result = run_in_process(script, f"paths.log_dir={tmp_path}", *args)
    [line] = error_lines(result)
    expected = BAD[kind].replace("readable checkpoint", "readable checkpoint or state_dict")
    assert line.startswith(
        f"error: {argument}={bad} {expected if 'init' in argument else BAD[kind]}"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert run_folders(tmp_path) == []


def test_a_weights_only_checkpoint_cannot_resume_and_says_what_to_use(tmp_path):
    whole = {
        "state_dict": {},
        "hyper_parameters": {},
        "run_config": {},
        "pytorch-lightning_version": "2.6.6",
    }
    torch.save(whole, tmp_path / "weights.ckpt")
    result = run_in_process(
        "src/train.py", f"paths.log_dir={tmp_path}", f"ckpt_path={tmp_path / 'weights.ckpt'}"
    )
    [line] = error_lines(result)
    assert "holds weights only (saved with save_weights_only=true)" in line
    assert line.endswith(f"use model.init_from={tmp_path / 'weights.ckpt'}")


def test_lightning_loading_a_cut_off_checkpoint_gives_one_line(tmp_path):
    cut = write_bad_checkpoints(tmp_path)["cut"]
    with pytest.raises(ConfigError, match=f"checkpoint {cut} is cut off .*: pass another"):
        AtomicCheckpointIO().load_checkpoint(cut)


def boring_trainer(tmp_path: Path, *plugins, **kwargs) -> L.Trainer:
    return L.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=2,
        limit_val_batches=1,
        plugins=list(plugins),
        **kwargs,
    )


def test_lightning_saves_and_removes_checkpoints_through_the_plugin(tmp_path, monkeypatch):
    removed: list[Path] = []
    remove = AtomicCheckpointIO.remove_checkpoint
    monkeypatch.setattr(
        AtomicCheckpointIO,
        "remove_checkpoint",
        lambda self, path: (removed.append(Path(path)), remove(self, path)),
    )
    keep_one = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_last=True)
    trainer = boring_trainer(tmp_path, AtomicCheckpointIO(), max_epochs=3, callbacks=[keep_one])
    trainer.fit(BoringModel())
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["epoch=2.ckpt", "last.ckpt"]
    assert [p.name for p in removed] == ["epoch=0.ckpt", "epoch=1.ckpt"]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["epoch"] == 2


def plugins_of(**trainer) -> list:
    return trainer_plugins(OmegaConf.create(trainer))


def test_the_atomic_plugin_joins_precision_and_configured_plugins():
    [plugin] = plugins_of(precision="bf16-mixed")
    trainer = boring_trainer(Path("."), plugin, precision="bf16-mixed")
    assert trainer.strategy.checkpoint_io is plugin
    assert isinstance(trainer.precision_plugin, MixedPrecision)

    precision = {"_target_": f"{MixedPrecision.__module__}.MixedPrecision"}
    configured = plugins_of(plugins=[{**precision, "precision": "bf16-mixed", "device": "cpu"}])
    assert [type(p) for p in configured] == [MixedPrecision, AtomicCheckpointIO]
    trainer = boring_trainer(Path("."), *configured)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert trainer.precision_plugin is configured[0]

    async_io = {"_target_": f"{AsyncCheckpointIO.__module__}.AsyncCheckpointIO"}
    [wrapper] = plugins_of(plugins=[async_io])
    assert isinstance(wrapper.checkpoint_io, AtomicCheckpointIO)  # saved in a thread, atomically
    own = {"_target_": f"{TorchCheckpointIO.__module__}.TorchCheckpointIO"}
    assert [type(p) for p in plugins_of(plugins=own)] == [TorchCheckpointIO]  # the user's choice


def test_under_ddp_the_strategy_saves_through_the_plugin(tmp_path):
    [plugin] = plugins_of(strategy="ddp")
    trainer = boring_trainer(tmp_path, plugin, strategy="ddp", devices=2)
    assert trainer.strategy.checkpoint_io is plugin  # which Lightning calls on rank 0 only


def test_run_files_are_synced_replaced_whole_and_keep_the_old_one_on_failure(tmp_path):
    report = tmp_path / "per_class.csv"
    write_atomically(report, lambda temporary: temporary.write_text("old\n"))
    assert oct(report.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())

    def broken(temporary: Path) -> None:
        temporary.write_text("half")
        raise ValueError("the writer failed")

    with pytest.raises(ValueError, match="the writer failed"):
        write_atomically(report, broken)
    assert report.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["per_class.csv"]


def test_cleaning_up_removes_killed_writes_but_not_ones_under_way(tmp_path):
    killed = tmp_path / ".partial-0123456789ab"
    killed.write_bytes(b"half a checkpoint")
    removed: list[Path] = []

    def write_while_a_checkpoint_is_saved(temporary: Path) -> None:
        temporary.write_text("whole\n")
        removed.extend(files.remove_partial_files(tmp_path))  # as a save in a thread would

    write_atomically(tmp_path / "status.txt", write_while_a_checkpoint_is_saved)
    assert removed == [killed]
    assert [p.name for p in tmp_path.iterdir()] == ["status.txt"]
    assert (tmp_path / "status.txt").read_text() == "whole\n"


# What Hydra prints (then exit 1) when logs/ is on a read-only file system: it makes the run
# folder before the task starts (copied from a run on a read-only tmpfs).
READ_ONLY_REPORT = """Traceback (most recent call last):
  File "/usr/lib/python3.11/pathlib.py", line 1116, in mkdir
    os.mkdir(self, mode)
FileNotFoundError: [Errno 2] No such file or directory: '/mnt/ro/logs/train/runs'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/usr/lib/python3.11/pathlib.py", line 1116, in mkdir
    os.mkdir(self, mode)
OSError: [Errno 30] Read-only file system: '/mnt/ro/logs/train'

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
"""


def test_hydras_report_of_a_read_only_or_full_logs_folder_becomes_one_line():
    assert files.cannot_write_line(READ_ONLY_REPORT) == (
        "cannot write /mnt/ro/logs/train: read-only file system; make it writable or set "
        "paths.log_dir=... to write elsewhere"
    )
    full = "Traceback (most recent call last):\n  ...\nOSError: [Errno 28] No space left on device"
    assert files.cannot_write_line(full) == (
        "cannot write the run's files: no space left on device; free space or set "
        "paths.log_dir=... to write elsewhere"
    )
    other = READ_ONLY_REPORT.replace("[Errno 30] Read-only file system", "[Errno 5] I/O error")
    assert files.cannot_write_line(other) is None  # not a full or read-only folder: as it was


def test_an_image_manifest_on_a_full_disk_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    from src.data.manifest import write_manifest

    def full(folder):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_new_partial", full)
    write_manifest(tmp_path / "manifest.json", tmp_path, {})  # no error: a cache, not a result
    assert "cannot write the image manifest" in caplog.text
    assert "no space left on device" in caplog.text


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_figure_is_saved_in_the_format_of_its_name(tmp_path):
    import matplotlib.pyplot as plt

    figure = plt.figure()
    save_figure(figure, tmp_path / "curves.png", dpi=50)
    save_figure(figure, tmp_path / "curves.pdf", dpi=50)
    plt.close(figure)
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "curves.pdf").read_bytes().startswith(b"%PDF")


# src/train.py with every checkpoint save recorded (rank, path); DDP's processes run it too
WRAPPER = """
import runpy
import src.tracking.checkpoint_io as io
from lightning.pytorch.utilities import rank_zero_only
save = io.AtomicCheckpointIO.save_checkpoint
def recorded(self, checkpoint, path, storage_options=None):
    save(self, checkpoint, path, storage_options)
    with open("{log}", "a") as log:
        log.write(f"{rank_zero_only.rank} {path}\\n")
io.AtomicCheckpointIO.save_checkpoint = recorded
runpy.run_path("src/train.py", run_name="__main__")
"""


@pytest.mark.slow
def test_a_ddp_run_writes_its_checkpoints_through_the_plugin_on_rank_zero(tmp_path):
    log = tmp_path / "saves.log"
    script = tmp_path / "train_recorded.py"
    script.write_text(WRAPPER.replace("{log}", str(log)))
    result = run_script(
        str(script),
        f"paths.log_dir={tmp_path}",
        *FEW_BATCHES,
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [run] = run_folders(tmp_path)
    saves = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert {rank for rank, _ in saves} == {"0"}
    assert {Path(path).name for _, path in saves} == {"best.ckpt", "last.ckpt"}
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.load(run / "checkpoints" / name, weights_only=True)["epoch"] in (0, 1)
    assert partial_files(run / "checkpoints") == []
