"""tests/fault_injection/harness.py: real runs killed by SIGTERM and SIGKILL during training,
validation and checkpoint saving, resumed with resume=auto, lose nothing (slow); and its checks
catch what they are there to catch (fast)."""

import json
import random
import signal
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from tests.fault_injection.harness import (
    PHASES,
    SIGNALS,
    Kill,
    Marker,
    RunResult,
    Setup,
    Target,
    check_files,
    failures,
    interval_steps,
    lost_steps,
    plan_kills,
    read_marker,
)
from tests.fault_injection.phase_marker import MARKER_ENV, PhaseMarker
from tests.helpers import run_script


@pytest.fixture(scope="module")
def lightning_checkpoint(tmp_path_factory) -> Path:
    """A real Lightning checkpoint, after one step of Lightning's demo model."""
    folder = tmp_path_factory.mktemp("boring")
    trainer = L.Trainer(
        max_steps=1,
        default_root_dir=folder,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )
    trainer.fit(BoringModel())
    trainer.save_checkpoint(folder / "whole.ckpt")
    return folder / "whole.ckpt"


def test_the_checker_finds_cut_off_and_foreign_files_and_lists_partial_leftovers(
    tmp_path, lightning_checkpoint
):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    whole = lightning_checkpoint.read_bytes()
    (run / "checkpoints" / "last.ckpt").write_bytes(whole)
    (run / "checkpoints" / "best.ckpt").write_bytes(whole[: len(whole) // 2])  # cut off
    (run / "checkpoints" / ".partial-0123456789ab").write_bytes(whole[:100])  # a killed save
    torch.save({"weights": torch.zeros(3)}, run / "checkpoints" / "foreign.ckpt")
    (run / "per_class.csv").write_text("class,f1\n0,0.5\n1,0.")
    (run / "torn.csv").write_text("class,f1\n0,0.5\n1")  # the last row cut off
    (run / "status.txt").write_text("interrupted: SIGTERM after epoch 3 at step 15\n")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- trainer.max_epochs=6\n")
    (run / ".hydra" / "config.yaml").write_text("trainer: {max_epochs: 6\n")  # cut off
    (run / "train.log").write_text("a log, not checked")

    checked, broken, partial = check_files(run)

    assert set(broken) == {
        str(run / "checkpoints" / "best.ckpt"),
        str(run / "checkpoints" / "foreign.ckpt"),
        str(run / "torn.csv"),
        str(run / ".hydra" / "config.yaml"),
    }
    assert "not a Lightning checkpoint" in broken[str(run / "checkpoints" / "foreign.ckpt")]
    assert partial == [str(run / "checkpoints" / ".partial-0123456789ab")]  # listed, not broken
    assert checked == 9  # every file but the partial one (train.log is of no checked kind)


def test_a_status_file_cut_off_or_of_another_kind_is_broken(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "status.txt").write_text("finish")  # cut off: no end of line
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "status.txt").write_text("finished\n")
    _, broken, _ = check_files(tmp_path)
    assert list(broken) == [str(tmp_path / "a" / "status.txt")]


def test_steps_lost_count_from_the_kill_back_to_the_checkpoint_resumed():
    assert lost_steps(19, 16) == 3  # SIGKILL in epoch 3 of 8 steps: back to epoch 2's end
    assert lost_steps(16, 8) == 8  # SIGKILL during validation: a whole epoch, the interval
    assert lost_steps(18, 19) == 0  # SIGTERM: the run saved the step it was in
    assert lost_steps(None, 8) is None and lost_steps(8, None) is None
    assert interval_steps(8, None) == 8
    assert interval_steps(8, 3) == 3
    assert interval_steps(8, 20) == 8  # each epoch's end still saves


def test_six_kills_cover_each_signal_and_phase_and_mid_epoch_resumes_run_apart():
    runs = plan_kills(6, seed=3, per_run=3, interval=False)
    kills = [k for run in runs for k in run]
    assert sorted((k.signal, k.phase) for k in kills) == sorted(
        (s, p) for s in SIGNALS for p in PHASES
    )
    assert all(len(run) <= 3 for run in runs)
    assert [k.run for k in kills] == [number for number, run in enumerate(runs, 1) for _ in run]
    [alone] = [
        run for run in runs if any(k.signal == "SIGTERM" and k.phase == "train" for k in run)
    ]
    assert all(k.signal == "SIGTERM" and k.phase == "train" for k in alone)
    again = plan_kills(6, seed=3, per_run=3, interval=False)
    assert [[(k.signal, k.phase) for k in run] for run in again] == [
        [(k.signal, k.phase) for k in run] for run in runs
    ]
    with_interval = plan_kills(6, seed=3, per_run=3, interval=True)
    for run in with_interval:  # with a step interval every kill in training resumes mid-epoch
        assert len({k.phase == "train" for k in run}) == 1


def _run(kills: list[Kill], **settings) -> RunResult:
    result = RunResult(1, kills, run_dir="run", exit_code=0, finished=True, final_step=32)
    result.val_points, result.exact, result.matched = 4, True, True
    for key, value in settings.items():
        setattr(result, key, value)
    return result


def _setup(every_n_train_steps=None) -> Setup:
    return Setup(Path("out"), 4, 8, 3, every_n_train_steps, random.Random(0))


def test_the_checks_fail_on_lost_work_a_late_stop_a_mismatch_or_a_broken_file():
    good = [
        Kill("SIGKILL", "val", 1, tried=True, step=16, resumed_from=8, exit_code=-9),
        Kill("SIGTERM", "train", 1, tried=True, step=18, stopped_at=19, resumed_from=19,
             exit_code=143),
    ]  # fmt: skip
    assert failures([_run(good)], {}, _setup()) == []

    too_much = Kill("SIGKILL", "train", 1, tried=True, step=17, resumed_from=8, exit_code=-9)
    [line] = failures([_run([too_much])], {}, _setup())
    assert "lost 9 steps, more than 8" in line
    [line] = failures([_run([good[0]])], {}, _setup(every_n_train_steps=3))
    assert "lost 8 steps, more than 3" in line

    late = Kill("SIGTERM", "save", 1, tried=True, step=16, stopped_at=24, resumed_from=24,
                exit_code=143)  # fmt: skip
    [line] = failures([_run([late])], {}, _setup())
    assert "stopped 8 steps after the signal" in line

    assert "differs" in failures([_run(good, matched=False)], {}, _setup())[0]
    crashed = _run(good, finished=False, exit_code=2, error="error: x was not logged")
    assert (
        "did not finish (exit code 2, error: x was not logged)"
        in failures([crashed], {}, _setup())[0]
    )
    missed = Kill("SIGTERM", "val", 1, note="missed: the run ended first")
    assert "not tried" in failures([_run([missed])], {}, _setup())[0]
    assert failures([_run(good)], {"run/last.ckpt": "does not load"}, _setup()) == [
        "broken file: run/last.ckpt does not load"
    ]


def test_the_phase_marker_writes_where_the_run_is_and_the_watcher_reads_it(tmp_path, monkeypatch):
    trainer = SimpleNamespace(
        current_epoch=2, global_step=19, default_root_dir=str(tmp_path / "a run"),
        sanity_checking=False,
    )  # fmt: skip
    monkeypatch.delenv(MARKER_ENV, raising=False)
    PhaseMarker().on_train_batch_start(trainer, None, None, 3)  # unset: writes nothing
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setenv(MARKER_ENV, str(tmp_path / "marker"))
    marker = PhaseMarker()
    marker.on_validation_batch_start(trainer, None, None, 1)
    marker.on_train_batch_start(trainer, None, None, 3)  # replaces the line in place
    read = read_marker(tmp_path / "marker")
    assert (read.phase, read.epoch, read.step, read.batch) == ("train", 3, 19, 3)
    assert read.run_dir == tmp_path / "a run"
    marker.on_save_checkpoint(trainer, None, {})
    assert (read_marker(tmp_path / "marker").phase, read_marker(tmp_path / "marker").saves) == (
        "save",
        1,
    )
    marker.teardown(trainer, None, "fit")
    assert read_marker(tmp_path / "nothing") is None


def test_a_moment_passed_while_the_watcher_looked_away_is_taken_at_once():
    def at(phase: str, epoch: int, step: int, batch: int = 0, saves: int = 0) -> Marker:
        return Marker(phase, epoch, step, batch, saves, Path("run"))

    setup = _setup()
    train = Target(Kill("SIGKILL", "train", 1), setup, start_step=8, kills_after=0)
    assert 8 <= train.step < 32
    assert not train.reached(at("train", 1, train.step - 1))
    assert train.reached(at("train", 4, train.step + 3))
    assert not train.reached(at("val", 4, train.step + 3))
    val = Target(Kill("SIGTERM", "val", 1), setup, start_step=0, kills_after=2)
    assert val.epoch in (1, 2)  # room left for the run's two later kills
    assert val.reached(at("val", val.epoch + 1, 0, batch=0))
    save = Target(Kill("SIGKILL", "save", 1), setup, start_step=0, kills_after=0)
    save.skip = True  # the epoch's second save
    assert not save.reached(at("save", save.epoch, 8, saves=1))
    assert save.reached(at("save", save.epoch, 8, saves=2))


@pytest.mark.slow
def test_killed_and_resumed_runs_lose_nothing(tmp_path):
    """The issue's table: 6 kills, each signal in each phase; 0 broken files, every run resumed
    from epoch ends equal to the uninterrupted one, at most an epoch of steps lost. Seed 3 also
    sends SIGTERM in an epoch's last step and in the run's last validation."""
    result = run_script(
        "tests/fault_injection/harness.py", "--kills", "6", "--seed", "3", "--out", str(tmp_path),
        timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failures"] == [], output[-4000:]
    assert result.returncode == 0, output[-4000:]
    assert "Fault injection: 6 kills (seed 3)" in output
    for row in report["table"]:  # every signal in every phase, each tried
        assert row["tried"] == row["planned"] >= 1, row
        assert row["completed"] == row["tried"], row
        if row["signal"] == "SIGTERM":
            assert row["steps_after_sigterm_max"] <= 1, row
    assert report["broken"] == {}
    assert report["files_checked"] > 50
    assert report["exact_runs"] >= 1 and report["matched"] == report["exact_runs"]
    assert report["steps_lost_max"] <= report["interval"] == 8
    for kill in report["each_kill"]:  # each landed: the process did not end on its own
        expected = -signal.SIGKILL if kill["signal"] == "SIGKILL" else 128 + signal.SIGTERM
        assert kill["exit_code"] == expected, kill
        assert kill["resumed_from"] is not None, kill
