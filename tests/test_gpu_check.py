"""The GPU self-check: what it runs is composable here, and without CUDA it says so and passes."""

import sys
from pathlib import Path

import pytest
import torch

from scripts import gpu_check
from src.train import train
from tests.conftest import LEAN, compose_config
from tests.helpers import run_script


def test_without_cuda_it_says_so_and_exits_0():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: make gpu-check runs the checks")
    result = run_script("scripts/gpu_check.py")
    assert result.returncode == 0
    assert "no CUDA GPU here" in result.stdout


def test_every_check_names_configs_and_keys_that_exist(tmp_path):
    entries = {
        "src/train.py": "train.yaml",
        "src/eval.py": "eval.yaml",
        "src/predict.py": "predict.yaml",
    }  # noqa: E501
    composed = 0
    for check in gpu_check.checks(tmp_path):
        if check.command[0] != sys.executable or check.command[1] not in entries:
            continue
        overrides = [a for a in check.command[2:] if not a.startswith("ckpt_path=")]
        cfg = compose_config(entries[check.command[1]], Path(tmp_path), overrides)
        assert cfg is not None
        composed += 1
    assert composed == 10
    names = [check.name for check in gpu_check.checks(tmp_path)]
    for wanted in (
        "16-mixed",
        "bf16-mixed",
        "compile",
        "trainer=ddp",
        "frozen",
        "on the CPU",
        "predict on the GPU",
        "batched",
        "never wait for the GPU",
        "benchmark",
    ):  # noqa: E501
        assert any(wanted in name for name in names), wanted


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
