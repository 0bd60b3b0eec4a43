"""The training step never waits for the device: no value goes from a tensor to the host inside a
step (Tensor.item, bool, int, float, tolist, numpy, cpu: the calls that make a GPU wait, counted
here on the CPU, as ../shared/bench/host_syncs.py counts them; and torch.bincount and
torch.tensor(..., device=...), which wait on a GPU only) with the default settings and callbacks,
every augmentation preset and every batched op, MixUp with CutMix, multi-label and binary data and
EMA. The
run's first step may (one-time checks); every later one, in every epoch, may not."""

import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

from src.train import train
from tests.conftest import CONFIG_DIR, FAST, SMALL_MULTILABEL, binary_overrides, compose_config

COUNTED = ("item", "__bool__", "__int__", "__float__", "tolist", "numpy", "cpu")
# on a GPU these wait too: bincount reads the largest value back to size its output; a tensor
# made from Python data on the device is a copy the host waits for (torch.full is not)
GPU_WAITS = ("bincount", "tensor")
# tensors that live on the host on a GPU too: the optimizers' step counters, the samplers'
# indices. Not AveragedModel (torch/optim/swa_utils.py): its count lives on the device.
HOST_SIDE = ("torch/optim/", "torch/utils/data/")
PRESETS = sorted(p.stem for p in (CONFIG_DIR / "augment").glob("*.yaml"))
RUN = [
    *FAST,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "test=false",
    "logger=none",
    "model.net.channels=[8,8,16]",  # a small network: the same step, quicker
    "model.net.hidden_dim=32",
    "data.batch_size=32",
]
EVERY_OP = [  # every batched op and MixUp/CutMix at once
    "data.augment.resized_crop_scale=[0.35,1]",
    "data.augment.crop_padding=2",
    "data.augment.hflip=0.5",
    "data.augment.vflip=0.5",
    "data.augment.brightness=0.2",
    "data.augment.contrast=0.2",
    "data.augment.saturation=0.2",
    "data.augment.hue=0.05",
    "data.augment.erasing=0.5",
    "data.augment.mixup_alpha=0.2",
    "data.augment.cutmix_alpha=1.0",
]
# the random resized crop, vertical flip and hue alone: their own draws and tensor ops
CROP_FLIP_HUE = [
    "data.augment.resized_crop_scale=[0.35,1]",
    "data.augment.vflip=0.5",
    "data.augment.hue=0.05",
]


def host_side(frames: traceback.StackSummary) -> bool:
    files = [frame.filename for frame in frames]
    return any(p in f for f in files for p in HOST_SIDE) and not any(
        "swa_utils" in f for f in files
    )


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> list[Counter]:
    """What each training step (Lightning's training epoch loop's `advance`) handed to the host,
    by call: one Counter per step, in order."""
    steps: list[Counter] = []
    inside = [False]

    def counting(name: str, original):
        def wrapper(self, *args, **kwargs):
            if inside[0] and not host_side(traceback.extract_stack(limit=6)):
                steps[-1][name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name in COUNTED:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))

    def counting_gpu_wait(name: str, original):
        def wrapper(*args, **kwargs):
            if inside[0] and (name != "tensor" or kwargs.get("device") is not None):
                steps[-1][f"torch.{name}"] += 1
            return original(*args, **kwargs)

        return wrapper

    for name in GPU_WAITS:
        monkeypatch.setattr(torch, name, counting_gpu_wait(name, getattr(torch, name)))
    advance = _TrainingEpochLoop.advance

    def counted_advance(self, *args, **kwargs):
        steps.append(Counter())
        inside[0] = True
        try:
            return advance(self, *args, **kwargs)
        finally:
            inside[0] = False

    monkeypatch.setattr(_TrainingEpochLoop, "advance", counted_advance)
    return steps


SLOW = pytest.mark.slow  # what the quick cases already cover, but for its own setting


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param([], id="default"),
        pytest.param(EVERY_OP, id="every_op"),
        pytest.param(CROP_FLIP_HUE, id="resized_crop_vflip_hue"),
        pytest.param(
            [*SMALL_MULTILABEL, "data.augment.mixup_alpha=0.2", "data.augment.cutmix_alpha=1.0"],
            id="multilabel_mixing",
        ),
        pytest.param(["callbacks=[default,ema]"], id="ema"),
        pytest.param(["augment=randaugment"], id="randaugment"),
        pytest.param(SMALL_MULTILABEL, id="multilabel", marks=SLOW),
        *(pytest.param([f"augment={p}"], id=p, marks=SLOW) for p in PRESETS if p != "randaugment"),
    ],
)
def test_no_training_step_hands_a_value_to_the_host(overrides, host_reads, tmp_path: Path):
    train(compose_config("train.yaml", tmp_path, [*RUN, *overrides]))
    assert len(host_reads) == 8  # two epochs of four steps
    later = {step: dict(calls) for step, calls in enumerate(host_reads) if step and calls}
    assert later == {}, f"steps (from 0) that waited for the device: {later}"


def test_no_binary_training_step_hands_a_value_to_the_host(host_reads, binary_folder, tmp_path):
    """data.task=binary on a two-class folder, MixUp and CutMix on (soft targets of class 1) and
    pos_weight=auto: the binary training metrics take 0/1 predictions, never checked on the host."""
    binary = [
        *binary_overrides(binary_folder),
        "model=cnn",  # the network RUN sizes (the folder's recipe would pick the VGG net)
        "model.pos_weight=auto",
        "data.augment.mixup_alpha=0.2",
        "data.augment.cutmix_alpha=1.0",
    ]
    train(compose_config("train.yaml", tmp_path, [*RUN, *binary]))
    assert len(host_reads) == 8  # two epochs of four steps
    later = {step: dict(calls) for step, calls in enumerate(host_reads) if step and calls}
    assert later == {}, f"steps (from 0) that waited for the device: {later}"
