"""scripts/compare_runs.py: a table, CSV and plot of the runs under a folder, ended or not."""

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from scripts.compare_runs import main
from src.tracking.report import compare
from src.tracking.run_status import TensorBoardSession
from tests.helpers import run_script

# Overrides every job of the sweep gets: none of them is a column of the comparison.
FIXED = [
    "paths.log_dir=/tmp/logs",
    "extras.print_config=False",
    "trainer.max_epochs=3",
    "~callbacks.rich_progress_bar=null",
]
# optimizer, learning rate and val/acc per epoch of each job; the best (job 1, by val/acc_best)
# ends below job 0, so sorting by the last val/acc would give another order.
SWEEP = [
    ("adam", 0.001, [0.5, 0.7, 0.8]),
    ("adam", 0.01, [0.6, 0.9, 0.75]),
    ("sgd", 0.001, [0.2, 0.3, 0.4]),
    ("sgd", 0.01, [0.4, 0.6, 0.7]),
]


def write_run(
    run: Path, overrides: list[str], val_acc: list[float] | None, end: tuple[str, str] | None
) -> Path:
    """A run folder as train.py leaves it: overrides, HPARAMS record, scalars, status."""
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    session = TensorBoardSession(run / "tensorboard", record_refusals=True, run_dir=run)
    if val_acc is not None:
        lr = next(float(o.split("=")[1]) for o in overrides if o.startswith("optimizer.lr="))
        hparams = {"optimized_metric": "val/acc_best", "monitor": "val/acc", "optimizer.lr": lr}
        session.start({**hparams, "trainer.max_epochs": 3, "data.batch_size": 64})
        session.record_hyperparameters()  # as training starts
        with SummaryWriter(str(run / "tensorboard")) as writer:
            for epoch, acc in enumerate(val_acc):
                scalars = {
                    "val/acc": acc,
                    "val/acc_best": max(val_acc[: epoch + 1]),
                    "val/loss": 1 - acc,
                    "epoch": epoch,
                    "train/epoch_time": 0.5,
                }
                for tag, value in scalars.items():
                    writer.add_scalar(tag, value, 10 * epoch + 9)
            writer.add_scalar("test/acc", val_acc[-1], 10 * len(val_acc))
    if end is not None:
        session.end(*end)
    return run


def write_sweep(root: Path) -> Path:
    for job, (optimizer, lr, val_acc) in enumerate(SWEEP):
        overrides = [f"optimizer={optimizer}", f"optimizer.lr={lr}", *FIXED]
        write_run(root / str(job), overrides, val_acc, ("finished", ""))
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished multirun of 4 jobs."""
    return write_sweep(tmp_path_factory.mktemp("multirun"))


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def test_runs_sorted_best_first_by_optimized_metric(sweep: Path) -> None:
    _, rows = compare(sweep)
    assert [row["run"] for row in rows] == ["1", "0", "3", "2"]
    best = []
    for job in range(len(SWEEP)):
        accumulator = EventAccumulator(str(sweep / str(job) / "tensorboard"))
        accumulator.Reload()
        best.append(accumulator.Scalars("val/acc_best")[-1].value)
    assert rows[0]["val/acc_best"] == max(best)
    assert rows[0]["best val/acc"] == max(best)
    assert rows[0]["val/acc"] == pytest.approx(0.75)
    assert rows[0]["test/acc"] == pytest.approx(0.75)
    assert (rows[0]["epochs"], rows[0]["s/epoch"], rows[0]["status"]) == (3, 0.5, "finished")


def test_metric_and_mode_choose_the_order(sweep: Path) -> None:
    by_loss = compare(sweep, metric="val/loss")[1]
    assert [row["run"] for row in by_loss] == ["0", "1", "3", "2"]  # lowest loss first
    worst_first = compare(sweep, metric="val/acc", mode="min")[1]
    assert [row["run"] for row in worst_first] == ["2", "3", "1", "0"]


def test_csv_has_a_row_per_run_and_the_overridden_hyperparameters(
    sweep: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report" / "new"
    assert main([str(sweep), "--out", str(out)]) == 0
    columns, rows = read_csv(out / "comparison.csv")
    assert len(rows) == len(SWEEP)
    assert columns[:4] == ["run", "status", "optimizer", "optimizer.lr"]
    assert "trainer.max_epochs" not in columns  # the same in every run
    assert not [c for c in columns if c.startswith(("paths", "extras", "callbacks", "~"))]
    assert (rows[0]["run"], rows[0]["optimizer"], rows[0]["optimizer.lr"]) == ("1", "adam", "0.01")
    assert float(rows[0]["val/acc_best"]) == compare(sweep)[1][0]["val/acc_best"]  # full precision
    assert not (sweep / "comparison.csv").exists()


def test_png_is_a_plot(sweep: Path, tmp_path: Path) -> None:
    assert main([str(sweep), "--out", str(tmp_path)]) == 0
    png = tmp_path / "comparison.png"
    assert png.stat().st_size > 10_000
    image = imread(png)
    assert image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.csv", "comparison.png"]


def test_single_run_keeps_all_its_overrides(sweep: Path) -> None:
    columns, rows = compare(sweep / "1")
    assert [row["run"] for row in rows] == ["1"]
    assert {"optimizer", "optimizer.lr", "trainer.max_epochs"} <= set(columns)


def test_failed_run_is_a_row_after_the_finished_ones(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    reason = "bad optimizer settings: Invalid learning rate: -1: fix the optimizer.* values"
    write_run(tmp_path / "00", ["optimizer=adam", "optimizer.lr=-1"], None, ("failed", reason))
    _, rows = compare(tmp_path)
    assert len(rows) == len(SWEEP) + 1
    assert (rows[-1]["run"], rows[-1]["status"], rows[-1]["note"]) == ("00", "failed", reason)
    assert rows[-1]["val/acc_best"] is None and rows[-1]["optimizer.lr"] == "-1"


def test_unfinished_runs_show_as_running_crashed_or_not_started(tmp_path: Path) -> None:
    write_run(tmp_path / "alive", ["optimizer.lr=0.1"], [0.5], end=None)  # this process
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    for name, host in [("dead", socket.gethostname()), ("elsewhere", "another-host")]:
        write_run(tmp_path / name, ["optimizer.lr=0.2"], [0.6], end=None)
        (tmp_path / name / "status.txt").write_text(f"running: pid {ended.pid} on {host}\n")
    (tmp_path / "queued" / ".hydra").mkdir(parents=True)
    _, rows = compare(tmp_path)
    status = {row["run"]: row["status"] for row in rows}
    assert status == {
        "alive": "running",
        "dead": "crashed",
        "elsewhere": "unknown",
        "queued": "not started",
    }
    assert rows[-1]["run"] == "queued"


def test_a_metric_of_unknown_direction_needs_a_mode(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main([str(sweep), "--metric", "train/lr", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no direction is known for metric 'train/lr'" in error[0]
    assert error[0].endswith("or pass --mode max|min") and not out.exists()
    assert main([str(sweep), "--metric", "val/acc", "--mode", "min", "--out", str(out)]) == 0


def test_no_runs_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: no runs under {tmp_path}")
    assert main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert list(tmp_path.iterdir()) == []


def test_runs_from_the_command_line(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    result = run_script("scripts/compare_runs.py", str(sweep))
    assert result.returncode == 0, result.stderr
    assert f"4 runs under {sweep}, sorted by val/acc_best" in result.stdout
    assert f"wrote {sweep / 'comparison.csv'}" in result.stdout
    assert (sweep / "comparison.csv").is_file() and (sweep / "comparison.png").is_file()


# Seeds of two learning rates: val/acc per epoch of each run. The lr=0.01 runs stop at different
# epochs (early stopping), so their mean curve is over fewer runs at the end.
REPEATS = {
    0.001: {1: [0.5, 0.6, 0.7], 2: [0.4, 0.6, 0.8], 3: [0.5, 0.7, 0.75]},
    0.01: {1: [0.7, 0.9], 2: [0.6, 0.8, 0.85], 3: [0.8, 0.95, 0.9]},
}


def write_repeats(root: Path) -> Path:
    """Three seeds of each of two learning rates, and a failed fourth seed of lr=0.01."""
    for lr, seeds in REPEATS.items():
        for seed, val_acc in seeds.items():
            overrides = [f"optimizer.lr={lr}", f"seed={seed}", *FIXED]
            write_run(root / f"lr{lr}_seed{seed}", overrides, val_acc, ("finished", ""))
    reason = "RuntimeError: out of memory"
    write_run(
        root / "lr0.01_seed4", ["optimizer.lr=0.01", "seed=4", *FIXED], None, ("failed", reason)
    )
    return root


@pytest.fixture(scope="module")
def repeats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_repeats(tmp_path_factory.mktemp("repeats"))


def test_group_by_gives_a_row_per_group_with_mean_std_and_n(repeats: Path) -> None:
    columns, rows = compare(repeats, group_by=["seed"])
    assert columns[:5] == ["runs", "n", "status", "seed", "optimizer.lr"]
    assert [row["optimizer.lr"] for row in rows] == ["0.01", "0.001"]  # best mean first
    for row in rows:
        seeds = REPEATS[float(row["optimizer.lr"])]
        best = [max(val_acc) for val_acc in seeds.values()]
        last = [val_acc[-1] for val_acc in seeds.values()]
        assert row["val/acc_best mean"] == pytest.approx(np.mean(best))
        assert row["val/acc_best std"] == pytest.approx(np.std(best, ddof=1))
        assert row["val/acc_best n"] == 3
        assert row["test/acc mean"] == pytest.approx(np.mean(last))
        assert row["test/acc std"] == pytest.approx(np.std(last, ddof=1))
        assert row["epochs mean"] == pytest.approx(np.mean([len(v) for v in seeds.values()]))
    failed = rows[0]
    assert (failed["n"], failed["status"], failed["seed"]) == (4, "3 finished, 1 failed", "1,2,3,4")
    assert failed["note"] == "lr0.01_seed4: RuntimeError: out of memory"
    assert failed["runs"].split("; ") == [f"lr0.01_seed{seed}" for seed in (1, 2, 3, 4)]
    assert (rows[1]["n"], rows[1]["status"], rows[1]["seed"]) == (3, "finished", "1,2,3")


def test_columns_show_what_runs_recorded_per_run_and_per_group(repeats: Path) -> None:
    commits = {"lr0.001_seed1": "abc", "lr0.001_seed2": "def"}
    for name, commit in commits.items():
        (repeats / name / "provenance.json").write_text(json.dumps({"commit": commit}))
    columns, rows = compare(repeats, columns=["commit", "data.batch_size"])
    assert columns[2:4] == ["commit", "data.batch_size"]
    assert {row["run"]: row["commit"] for row in rows if row["commit"]} == commits
    assert {row["data.batch_size"] for row in rows if row["status"] == "finished"} == {"64"}
    columns, rows = compare(repeats, group_by=["seed"], columns=["commit"])
    assert columns[3:5] == ["seed", "commit"]
    assert rows[1]["commit"] == "abc,def"  # lr=0.001: seed 3 recorded none
    for name in commits:
        (repeats / name / "provenance.json").unlink()


def test_group_by_sorts_groups_by_metric_and_mode(repeats: Path) -> None:
    by_loss = compare(repeats, metric="val/loss", group_by=["seed"])[1]
    losses = [row["val/loss mean"] for row in by_loss]
    assert losses == sorted(losses) and by_loss[0]["optimizer.lr"] == "0.01"
    worst_first = compare(repeats, mode="min", group_by=["seed"])[1]
    assert [row["optimizer.lr"] for row in worst_first] == ["0.001", "0.01"]
    # grouped by both keys, every run is its own group of one: no std
    singles = compare(repeats, group_by=["seed", "optimizer.lr"])[1]
    assert len(singles) == 1 and singles[0]["n"] == 7 and singles[0]["val/acc_best n"] == 6


def band_pixels(png: Path) -> int:
    """Pixels of the first line's ±std band: matplotlib's first colour at alpha 0.25 on white."""
    image = imread(png)[..., :3]
    band = 0.25 * np.array([0x1F, 0x77, 0xB4]) / 255 + 0.75
    return int((np.abs(image - band).max(axis=-1) < 0.02).sum())


def test_group_by_writes_mean_std_n_csv_and_a_plot_with_bands(
    repeats: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(repeats), "--group-by", "seed", "--out", str(tmp_path / "grouped")]) == 0
    printed = capsys.readouterr().out
    assert "7 runs in 2 groups by seed under" in printed
    assert "sorted by val/acc_best mean (highest first)" in printed
    best = [max(val_acc) for val_acc in REPEATS[0.001].values()]
    assert f"{np.mean(best):.4g} ± {np.std(best, ddof=1):.2g}" in printed
    assert "(n=3)" in printed  # the lr=0.01 group has 4 runs, 3 of them logged metrics
    columns, rows = read_csv(tmp_path / "grouped" / "comparison.csv")
    assert {"val/acc_best mean", "val/acc_best std", "val/acc_best n", "n"} <= set(columns)
    grouped = compare(repeats, group_by=["seed"])[1]
    assert float(rows[1]["val/acc_best std"]) == grouped[1]["val/acc_best std"]  # full precision
    # the plot: each group's mean curve with its band; without spread (one run a group) none
    assert band_pixels(tmp_path / "grouped" / "comparison.png") > 20_000
    assert main([str(repeats), "--group-by", "seed,optimizer.lr", "--out", str(tmp_path)]) == 0
    assert band_pixels(tmp_path / "comparison.png") > 20_000  # one group of all runs
    single = tmp_path / "single"
    assert main([str(repeats / "lr0.001_seed1"), "--group-by", "seed", "--out", str(single)]) == 0
    assert band_pixels(single / "comparison.png") < 1_000


def test_group_by_an_unknown_key_is_a_one_line_error(
    repeats: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main([str(repeats), "--group-by", "sed", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["error: --group-by sed: no run has this hyperparameter: did you mean seed?"]
    assert main([str(repeats), "--group-by", "data.fold", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: --group-by data.fold: no run has")
    assert not out.exists()
