"""The lean training step, the progress bar, loader settings from the machine, GPU settings."""

import logging
import os
from types import SimpleNamespace

import pytest
import torch
from torchmetrics.classification import MultilabelF1Score

from src.cli.resolvers import gpu_mixed_precision
from src.core.errors import ConfigError
from src.data.digits import DigitsDataModule
from src.models.tasks import task_metrics, training_predictions
from src.train import train


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
def test_multilabel_training_metrics_from_logits_equal_those_from_probabilities(threshold):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(256, 10, generator=generator) * 3
    targets = (torch.rand(256, 10, generator=generator) < 0.3).long()
    lean = task_metrics("multilabel", 10, threshold, training=True)
    lean.update(training_predictions("multilabel", logits, threshold), targets)
    full = task_metrics("multilabel", 10, threshold)
    full.update(logits.sigmoid(), targets)
    expected = full.compute()
    for name, value in lean.compute().items():
        assert torch.equal(value, expected[name]), name
    assert "map" not in lean and "map" in full  # mAP would keep every prediction of the epoch
    reference = MultilabelF1Score(10, threshold=threshold)(logits.sigmoid(), targets)
    assert torch.equal(expected["f1"], reference)


def test_multiclass_training_metrics_take_the_logits_as_they_are():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(256, 10, generator=generator)
    targets = torch.randint(0, 10, (256,), generator=generator)
    lean = task_metrics("multiclass", 10, training=True)
    lean.update(training_predictions("multiclass", logits, 0.5), targets)
    full = task_metrics("multiclass", 10)
    full.update(logits.softmax(-1), targets)
    assert {k: v.item() for k, v in lean.compute().items()} == {
        k: v.item() for k, v in full.compute().items()
    }


def test_channels_last_changes_the_memory_order_not_the_outputs(train_cfg):
    import hydra

    def model(*overrides: str):
        cfg = train_cfg(*overrides)
        torch.manual_seed(0)
        return hydra.utils.instantiate(
            cfg.model, optimizer=cfg.optimizer, scheduler=None, _recursive_=False
        ).eval()

    plain, fast = model(), model("model.channels_last=true")
    conv = fast.net.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    images = torch.randn(4, 3, 32, 32)
    assert torch.allclose(plain(images), fast(images), atol=1e-5)


def test_without_a_terminal_the_progress_bar_logs_one_line_per_epoch(train_cfg, caplog, capsys):
    caplog.set_level(logging.INFO, logger="src.callbacks.progress_bar")
    cfg = train_cfg("trainer.max_epochs=2", "trainer.limit_train_batches=3", "test=false")
    train(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "src.callbacks.progress_bar"]
    assert [line.split(":")[0] for line in lines] == ["epoch 0", "epoch 1"]
    assert all("val/acc " in line and "train/loss " in line for line in lines)
    assert "Epoch 0" not in capsys.readouterr().out  # no bar drawn into a pipe


def digits(**settings) -> DigitsDataModule:
    base = {"num_classes": 10, "class_names": [str(i) for i in range(10)]}
    return DigitsDataModule(**base, **settings)


def test_auto_workers_follow_slurm_or_the_cpus_and_none_for_batched(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert digits(pipeline="per_sample", num_workers="auto").worker_count() == 6
    assert digits(pipeline="batched", num_workers="auto").worker_count() == 0
    assert digits(pipeline="batched", num_workers=3).worker_count() == 3
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    # this process may use 3 CPUs, whatever the machine has (and where Python cannot tell)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert digits(pipeline="per_sample", num_workers="auto").worker_count() == 3
    for key, value in (("num_workers", "many"), ("num_workers", -1), ("pin_memory", "yes")):
        with pytest.raises(ConfigError, match=f"data.{key} must be auto"):
            digits(**{key: value})


@pytest.mark.parametrize(("device", "pinned"), [("cuda", True), ("cpu", False), (None, False)])
def test_auto_pin_memory_pins_only_batches_bound_for_a_cuda_device(device, pinned):
    data = digits(pin_memory="auto")
    if device is not None:  # a stand-in trainer: only its device matters here
        data.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
    assert data.pins_memory() is pinned
    assert digits(pin_memory=not pinned).pins_memory() is not pinned  # a set value is kept


def test_gpu_configs_pick_bf16_where_the_gpu_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert gpu_mixed_precision() == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert gpu_mixed_precision() == "16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_mixed_precision() == "16-mixed"
