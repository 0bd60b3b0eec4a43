"""The entry points as a user runs them: bad input gives one clear line, runs get own folders.

The tables of bad input run each command as __main__ in this process (the same code path and exit
code, without starting torch again); what needs processes of its own runs in them.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src import PROJECT_ROOT
from src.models.checkpoint import classifier_from_checkpoint, read_checkpoint
from tests.helpers import (
    error_lines,
    run_folders,
    run_in_process,
    run_script,
    tensorboard_scalars,
)

VAL_METRICS = "use one of val/loss, val/acc, val/acc_top5, val/f1, val/precision, val/recall"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["optimizer.lr=-0.1"], "error: optimizer.lr=-0.1 is refused by torch.optim.Adam"),
        (["data.batch_size=0"], "error: data.batch_size must be a positive integer, got 0"),
        (["model.label_smoothing=1.5"], "error: model.label_smoothing must lie in [0, 1)"),
        (["ckpt_path=/nonexistent/last.ckpt"], "error: ckpt_path=/nonexistent/last.ckpt does not"),
        (["data=image_folder"], "error: data.root is required"),
        (["data=digits_multilabel", "model.task=multiclass"], "the model is set up for multiclass"),
        (["data=image_folder", "data.root=/no/such/folder"], "data.root=/no/such/folder is not a"),
        (["data=cifar10", "data.download=false", "data.data_dir=/nonexistent"], "is missing"),
        (
            ["monitor=val/nope"],
            "error: monitor=val/nope is not a metric the model logs after validation: "
            + VAL_METRICS,
        ),
        (
            ["callbacks.early_stopping.monitor=val/map"],
            "error: callbacks.early_stopping.monitor=val/map is not a metric the model logs",
        ),
        (
            ["scheduler=plateau", "scheduler.monitor=train/loss"],
            "error: scheduler.monitor=train/loss is not a metric the model logs after validation",
        ),
        (
            ["optimized_metric=val/map_best"],
            "error: optimized_metric=val/map_best is not a metric this run logs: use one of",
        ),
        (["test=false", "optimized_metric=test/acc"], "optimized_metric=test/acc is not a metric"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_bad_values_give_one_line_exit_2_and_leave_no_run_folder(tmp_path, args, expected):
    result = run_in_process("src/train.py", f"paths.log_dir={tmp_path}", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = error_lines(result)
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert not tmp_path.joinpath("train").exists()  # nothing written


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["optimizer.lr=-1"],
            "error: optimizer.lr=-1 is refused by torch.optim.Adam: Invalid learning rate: -1: "
            "pass another optimizer.lr (Adam's default, 0.001, works)",
        ),
        (
            ["optimizer.weight_decay=-1"],
            "error: optimizer.weight_decay=-1 is refused by torch.optim.Adam: Invalid weight_decay "
            "value: -1: pass another optimizer.weight_decay (Adam's default, 0, works)",
        ),
        (  # SGD's default momentum (0) is refused too with nesterov: named all the same
            ["optimizer=sgd", "optimizer.momentum=-1"],
            "error: optimizer.momentum=-1 is refused by torch.optim.SGD: Invalid momentum value: "
            "-1: pass another optimizer.momentum",
        ),
        (
            ["scheduler=plateau", "scheduler.factor=2"],
            "error: scheduler.factor=2 is refused by torch.optim.lr_scheduler.ReduceLROnPlateau: "
            "Factor should be < 1.0: pass another scheduler.factor (ReduceLROnPlateau's default, "
            "0.1, works)",
        ),
    ],
    ids=lambda value: value[-1] if isinstance(value, list) else None,
)
def test_a_value_the_optimizer_or_scheduler_refuses_is_named_by_its_key(tmp_path, args, expected):
    result = run_in_process("src/train.py", f"paths.log_dir={tmp_path}", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert error_lines(result) == [expected]
    assert not tmp_path.joinpath("train").exists()  # refused before any work


def test_a_validation_metric_the_model_does_log_can_be_optimized(tmp_path):
    result = run_in_process(
        "src/train.py", f"paths.log_dir={tmp_path}", "optimized_metric=val/f1_best", "debug=fdr"
    )
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["foo=1"], "error: Could not override 'foo'. To append to your config use +foo=1"),
        (["model=foo"], "Available options in 'model': cnn, resnet50"),
        (["optimizer=adamm"], "Could not find 'optimizer/adamm'"),
        (
            ["-m", "hparams_search=optuna", "optimized_metric=val/nope_best"],
            "error: no direction is known for metric 'val/nope_best': name one whose last part is",
        ),
        (
            ["-m", "hparams_search=optuna", "hydra.sweeper.direction=up"],
            "error: hydra.sweeper.direction=up: use max or min",
        ),
    ],
    ids=lambda value: value[-1] if isinstance(value, list) else None,
)
def test_unknown_keys_options_and_metrics_give_one_line_and_exit_2(tmp_path, args, expected):
    result = run_in_process("src/train.py", *args, f"paths.log_dir={tmp_path}")
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
    result = run_in_process("src/eval.py", f"paths.log_dir={tmp_path}", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(expected)
    assert run_folders(tmp_path, "eval") == []


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    fake = tmp_path / "notes.ckpt"
    fake.write_text("not a checkpoint")
    result = run_in_process("src/eval.py", f"paths.log_dir={tmp_path}", f"ckpt_path={fake}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: ckpt_path={fake} is not a readable checkpoint")


def test_a_bad_value_from_a_new_process_gives_one_line_and_exit_2(tmp_path):
    """The same as the tables above, through a real interpreter start."""
    result = run_script("src/train.py", f"paths.log_dir={tmp_path}", "monitor=val/nope")
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: monitor=val/nope is not a metric the model logs after validation: {VAL_METRICS}"
    ]
    assert "Traceback" not in result.stderr and not tmp_path.joinpath("train").exists()


def test_two_runs_started_together_get_their_own_folders(tmp_path):
    command = [sys.executable, "src/train.py", f"paths.log_dir={tmp_path}", "debug=fdr"]
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
    result = run_script(
        "src/train.py",
        f"paths.log_dir={tmp_path}",
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        "logger=tensorboard_csv",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in result.stderr + result.stdout
    (folder,) = run_folders(tmp_path)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in folder.glob("*.log")) == ["config_tree.log", "train.log"]
    scalars = tensorboard_scalars(folder)
    assert len(scalars["val/acc"]) == 2 and scalars["test/acc"][0] > 0.5
    checkpoint = read_checkpoint(folder / "checkpoints" / "best.ckpt")
    assert checkpoint["run_config"]["trainer"]["strategy"] == "ddp"


@pytest.mark.slow
def test_a_compiled_model_checkpoint_loads_uncompiled(tmp_path):
    result = run_script(
        "src/train.py", f"paths.log_dir={tmp_path}", "model.compile=true", "trainer.max_epochs=1"
    )
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
    result = run_in_process(
        "src/train.py",
        f"paths.log_dir={logs}",
        "data=image_folder",
        f"data.root={tmp_path / 'images'}",
        f"data.manifest_dir={tmp_path / 'manifests'}",
    )
    assert result.returncode == 2
    errors = error_lines(result)
    assert len(errors) == 1 and str(broken) in errors[0] and "skip_bad_images" in errors[0]
    assert not (logs / "train").exists()


def test_plain_hydra_start_up_imports_neither_optuna_nor_tensorboard_nor_the_template():
    """Hydra imports every plugin module of the environment at start-up, ours too."""
    code = (
        "import sys; from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import "
        "Sweeper; names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]; "
        "print(names); print(sorted(m for m in ('optuna', 'tensorboard', 'src', 'torch', "
        "'lightning') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path("/"), capture_output=True, text=True, timeout=120
    )
    found, imported = result.stdout.strip().splitlines()
    assert "GridSweeper" in found and "OptunaSweeper" in found, result.stderr
    assert imported == "[]"
