"""The GPU self-check: what it runs is composable here, and without CUDA it says so and passes."""

import sys
from pathlib import Path

import pytest
import torch

from scripts import gpu_check
from src.train import train
from tests.conftest import LEAN, compose_config
from tests.helpers import run_in_process


def test_without_cuda_it_says_so_and_exits_0():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: make gpu-check runs the checks")
    result = run_in_process("scripts/gpu_check.py")
    assert result.returncode == 0
    assert "no CUDA GPU here" in result.stdout


def test_the_checks_compose_and_cover_each_gpu_path(tmp_path):
    """Every check that runs an entry point composes (its configs and keys exist), and together
    they run each GPU path: both mixed precisions, compile, DDP, a frozen backbone, multi-label,
    and a GPU checkpoint evaluated and predicted on the CPU."""
    entries = {
        "src/train.py": "train.yaml",
        "src/eval.py": "eval.yaml",
        "src/predict.py": "predict.yaml",
    }
    runs: list[tuple[str, object]] = []
    for check in gpu_check.checks(tmp_path):
        if check.command[0] != sys.executable or check.command[1] not in entries:
            continue
        overrides = [a for a in check.command[2:] if not a.startswith("ckpt_path=")]
        entry = entries[check.command[1]]
        runs.append((entry, compose_config(entry, Path(tmp_path), overrides)))
    assert len(runs) == 10
    trained = [cfg for entry, cfg in runs if entry == "train.yaml"]
    on_gpu = [cfg for cfg in trained if cfg.trainer.accelerator == "gpu"]
    assert len(on_gpu) == len(trained)
    assert {"16-mixed", "bf16-mixed"} <= {cfg.trainer.precision for cfg in on_gpu}
    assert any(cfg.model.compile and cfg.model.channels_last for cfg in on_gpu)
    assert any(cfg.trainer.strategy == "ddp" for cfg in on_gpu)
    assert any(cfg.model.backbone_lr_scale == 0 for cfg in on_gpu)  # frozen
    assert any(cfg.data.task == "multilabel" for cfg in on_gpu)
    assert {entry for entry, cfg in runs if cfg.trainer.accelerator == "cpu"} == {
        "eval.yaml",
        "predict.yaml",
    }


def test_the_sync_check_covers_the_steps_of_each_epoch_after_its_first(monkeypatch, tmp_path):
    """SyncDebugMode (what the sync check adds to a run) on the CPU, the mode only recorded:
    "error" from the end of each epoch's first step to its last, "default" before validation."""
    modes: list[str] = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    overrides = [
        *LEAN,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
        "+callbacks.sync_debug._target_=scripts.gpu_check.SyncDebugMode",
    ]
    train(compose_config("train.yaml", tmp_path, overrides))
    epoch = ["error", "error", "default", "default", "default"]  # 3 steps, validation, its end
    assert modes == ["default", *epoch, *epoch]  # after the sanity check's validation
