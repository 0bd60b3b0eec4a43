"""The entry points as a user runs them: bad input gives one clear line, runs get own folders."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src import PROJECT_ROOT
from src.utils.checkpoint import classifier_from_checkpoint, read_checkpoint
from tests.helpers import tensorboard_scalars

QUIET: list[str] = []


def run(script: str, *args: str, log_dir: Path) -> subprocess.CompletedProcess:
    """Run `python src/<script>.py ARGS` from the repository root, logging under log_dir."""
    command = [sys.executable, f"src/{script}.py", f"paths.log_dir={log_dir}", *QUIET, *args]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


def run_folders(log_dir: Path, task: str = "train") -> list[Path]:
    return sorted((log_dir / task / "runs").glob("*")) if (log_dir / task).exists() else []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["optimizer.lr=-0.1"], "error: bad optimizer settings: Invalid learning rate: -0.1"),
        (["data.batch_size=0"], "error: data.batch_size must be a positive integer, got 0"),
        (["model.label_smoothing=1.5"], "error: model.label_smoothing must lie in [0, 1)"),
        (["ckpt_path=/nonexistent/last.ckpt"], "error: ckpt_path=/nonexistent/last.ckpt does not"),
        (["data=image_folder"], "error: data.root is required"),
        (["data=digits_multilabel", "model.task=multiclass"], "the model is set up for multiclass"),
        (["data=image_folder", "data.root=/no/such/folder"], "data.root=/no/such/folder is not a"),
        (["data=cifar10", "data.download=false", "data.data_dir=/nonexistent"], "is missing"),
    ],
)
def test_bad_values_give_one_line_exit_2_and_leave_no_run_folder(tmp_path, args, expected):
    result = run("train", *args, log_dir=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert not tmp_path.joinpath("train").exists()  # nothing written


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["foo=1"], "error: Could not override 'foo'. To append to your config use +foo=1"),
        (["model=foo"], "Available options in 'model': cnn, resnet50"),
        (["optimizer=adamm"], "Could not find 'optimizer/adamm'"),
    ],
)
def test_unknown_keys_and_options_give_one_line_and_exit_2(tmp_path, args, expected):
    result = run("train", *args, log_dir=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not tmp_path.joinpath("train").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "error: ckpt_path is not set: pass ckpt_path="),
        (
            ["ckpt_path=/nonexistent/best.ckpt"],
            "error: ckpt_path=/nonexistent/best.ckpt does not exist",
        ),
    ],
)
def test_eval_without_a_checkpoint_gives_one_line(tmp_path, args, expected):
    result = run("eval", *args, log_dir=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(expected)
    assert run_folders(tmp_path, "eval") == []


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    fake = tmp_path / "notes.ckpt"
    fake.write_text("not a checkpoint")
    result = run("eval", f"ckpt_path={fake}", log_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: ckpt_path={fake} is not a readable checkpoint")


def test_two_runs_started_together_get_their_own_folders(tmp_path):
    command = [sys.executable, "src/train.py", f"paths.log_dir={tmp_path}", *QUIET, "debug=fdr"]
    processes = [
        subprocess.Popen(
            command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    folders = run_folders(tmp_path, "debug")
    assert len(folders) == 2
    assert all((f / ".hydra" / "config.yaml").is_file() for f in folders)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_writes_one_set_of_outputs(tmp_path):
    result = run(
        "train",
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        "logger=tensorboard_csv",
        log_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stderr + result.stdout
    (folder,) = run_folders(tmp_path)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in folder.glob("*.log")) == [
        "config_tree.log",
        "train.log",
    ] or sorted(p.name for p in folder.glob("*.log")) == ["train.log"]
    scalars = tensorboard_scalars(folder)
    assert len(scalars["val/acc"]) == 2 and scalars["test/acc"][0] > 0.5
    checkpoint = read_checkpoint(folder / "checkpoints" / "best.ckpt")
    assert checkpoint["run_config"]["trainer"]["strategy"] == "ddp"


@pytest.mark.slow
def test_a_compiled_model_checkpoint_loads_uncompiled(tmp_path):
    result = run("train", "model.compile=true", "trainer.max_epochs=1", log_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = run_folders(tmp_path)
    checkpoint = read_checkpoint(folder / "checkpoints" / "best.ckpt")
    assert not any("_orig_mod" in key for key in checkpoint["state_dict"])
    model = classifier_from_checkpoint(checkpoint).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_a_truncated_image_stops_the_run_before_anything_is_written(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(tmp_path / "images" / name / f"{i}.jpg")
    broken = tmp_path / "images" / "b" / "5.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    logs = tmp_path / "logs"
    result = run("train", "data=image_folder", f"data.root={tmp_path / 'images'}", log_dir=logs)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0] and "skip_bad_images" in errors[0]
    assert not (logs / "train").exists()
