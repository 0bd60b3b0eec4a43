"""MixUp and CutMix: soft targets, the mixing weights' distribution, the pasted area, the switch-off
epoch, reproducibility and what a run shows (the loss and training metrics on mixed targets:
tests/test_loss.py, tests/test_task_metrics.py)."""

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchvision.io import decode_png
from torchvision.transforms import v2
from torchvision.utils import make_grid

from src.data.augmentation import parse_augmentation
from src.data.batch_mixing import mix_batch
from src.train import train
from tests.conftest import FAST, QUIET, compose_config
from tests.helpers import tensorboard_events, tensorboard_scalars

DRAWS = 2000


def two_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of two images, ones (class 0) and zeros (class 1)."""
    return torch.stack([torch.ones(3, size, size), torch.zeros(3, size, size)]), torch.tensor(
        [0, 1]
    )


def mixed_pairs(spec: dict, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """DRAWS batches of two_images, each mixed: the first image of every batch and its target."""
    aug = parse_augmentation(spec)
    g = np.random.default_rng(0)
    images, targets = two_images(size)
    out = [mix_batch(images.clone(), targets, aug, 2, g) for _ in range(DRAWS)]
    return torch.stack([x[0] for x, _ in out]), torch.stack([y[0] for _, y in out])


def torchvision_shares(transform: v2.Transform, size: int) -> torch.Tensor:
    """The first image's own share of its target under torchvision's MixUp or CutMix."""
    torch.manual_seed(0)
    images, targets = two_images(size)
    return torch.stack([transform(images, targets)[1][0, 0] for _ in range(DRAWS)])


def test_mixed_multiclass_targets_are_probabilities_of_the_two_classes():
    aug = parse_augmentation({"mixup_alpha": 0.4, "cutmix_alpha": 1.0})
    g = np.random.default_rng(1)
    targets = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    for _ in range(20):
        _, soft = mix_batch(torch.rand(64, 3, 16, 16), targets, aug, 10, g)
        assert soft.shape == (64, 10) and soft.dtype == torch.float32
        assert torch.allclose(soft.sum(dim=1), torch.ones(64))
        own = F.one_hot(targets, 10).bool() | F.one_hot(targets.roll(1), 10).bool()
        assert (soft[~own] == 0).all()  # each image's share goes to its class and its neighbour's


def test_mixup_weights_follow_beta_alpha_alpha_and_blend_the_images():
    alpha = 0.2
    images, soft = mixed_pairs({"mixup_alpha": alpha})
    lam = soft[:, 0]  # the share of the image's own class
    assert abs(lam.mean() - 0.5) < 0.03
    assert abs(lam.var() - 1 / (4 * (2 * alpha + 1))) < 0.015  # Beta(a, a): 1 / (4 (2a + 1))
    assert (lam < 0.1).float().mean() > 0.3  # U-shaped: most batches mostly one image
    theirs = torchvision_shares(v2.MixUp(alpha=alpha, num_classes=2), 8)
    assert abs(lam.mean() - theirs.mean()) < 0.03 and abs(lam.std() - theirs.std()) < 0.02
    # the image is the same blend: ones weighted by lam, zeros by 1 - lam
    assert torch.allclose(images.mean(dim=(1, 2, 3)), lam, atol=1e-6)
    assert torch.allclose(images.amax(dim=(1, 2, 3)), images.amin(dim=(1, 2, 3)))


def test_cutmix_pastes_a_box_whose_area_is_the_neighbours_share():
    images, soft = mixed_pairs({"cutmix_alpha": 1.0}, size=32)
    kept = images[:, 0].mean(dim=(1, 2))  # the share of pixels still from the image itself
    assert torch.allclose(kept, soft[:, 0], atol=1e-6)
    assert ((images == 0) | (images == 1)).all()  # pasted, not blended
    pasted = images[:, 0] == 0
    rows, cols = pasted.any(dim=2), pasted.any(dim=1)
    assert torch.equal(pasted.sum(dim=(1, 2)), rows.sum(1) * cols.sum(1))  # a rectangle
    # Beta(1, 1) is uniform, the boxes clipped at the border: as torchvision's CutMix
    theirs = torchvision_shares(v2.CutMix(alpha=1.0, num_classes=2), 32)
    assert abs(soft[:, 0].mean() - theirs.mean()) < 0.02
    assert abs(soft[:, 0].std() - theirs.std()) < 0.02


def test_with_both_on_each_mixed_batch_is_mixup_or_cutmix_evenly():
    images, _ = mixed_pairs({"mixup_alpha": 0.2, "cutmix_alpha": 1.0})
    pasted = ((images == 0) | (images == 1)).flatten(1).all(dim=1)
    blended = images.flatten(1).std(dim=1) < 1e-6
    assert (pasted | blended).all()
    assert abs(pasted.float().mean() - 0.5) < 0.05


def test_mix_prob_leaves_other_batches_as_they_are():
    aug = parse_augmentation({"mixup_alpha": 1.0, "mix_prob": 0.3})
    g = np.random.default_rng(0)
    targets = torch.tensor([0, 1])
    mixed = [
        mix_batch(torch.rand(2, 3, 4, 4), targets, aug, 2, g)[1].ndim == 2 for _ in range(1000)
    ]
    assert abs(sum(mixed) / 1000 - 0.3) < 0.05


def test_multilabel_targets_become_mixed_multi_hot_vectors():
    aug = parse_augmentation({"mixup_alpha": 0.4})
    targets = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]]).float()
    _, mixed = mix_batch(torch.rand(3, 3, 8, 8), targets, aug, 4, np.random.default_rng(3))
    lam = mixed[0, 0]  # label 0 only in the first image
    assert 0 < lam < 1
    assert torch.allclose(mixed, lam * targets + (1 - lam) * targets.roll(1, dims=0))
    assert mixed[1, 1] == 1  # a label both images have stays whole


def test_the_same_generator_mixes_the_same_way():
    aug = parse_augmentation({"mixup_alpha": 0.2, "cutmix_alpha": 1.0})
    images, targets = torch.rand(16, 3, 8, 8), torch.arange(16) % 10

    def mix(seed: int) -> list[torch.Tensor]:
        g = np.random.default_rng(seed)
        return [t for _ in range(5) for t in mix_batch(images.clone(), targets, aug, 10, g)]

    assert all(torch.equal(a, b) for a, b in zip(mix(7), mix(7), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(mix(7), mix(8), strict=True))


@pytest.mark.parametrize("pipeline", ["batched", "per_sample"])
def test_both_pipelines_mix_training_batches_only_until_mixup_off_epoch(pipeline):
    cfg = compose_config("train.yaml", Path("unused"), ["data.augment.mixup_alpha=0.2"])
    data = instantiate(cfg.data, pipeline=pipeline, num_workers=0, augment={"mixup_off_epoch": 2})
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    seen = {}
    for stage, epoch in (("train", 0), ("train", 1), ("train", 2), ("validate", 0)):
        data.trainer = SimpleNamespace(
            training=stage == "train", current_epoch=epoch, global_rank=0
        )
        images, targets = data.on_after_batch_transfer([t.clone() for t in batch], 0)
        assert images.dtype == torch.float32
        seen[stage, epoch] = targets
    assert seen["train", 0].shape == seen["train", 1].shape == (64, 10)
    assert seen["train", 2].shape == seen["validate", 0].shape == (64,)


class InputSpy(L.Callback):
    """Records what the network received in its first training step (a forward pre-hook) and
    the targets of every training and validation batch."""

    last: "InputSpy"

    def __init__(self) -> None:
        self.first_input: torch.Tensor | None = None
        self.train_targets: dict[int, list[torch.Tensor]] = {}
        self.train_logits: dict[int, list[torch.Tensor]] = {}
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self.val_targets: list[torch.Tensor] = []
        InputSpy.last = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train_targets.setdefault(trainer.current_epoch, []).append(batch[1])
        if trainer.global_step == 0:

            def record(module: torch.nn.Module, args: tuple) -> None:
                self.first_input = args[0].detach().clone()
                handle.remove()

            handle = pl_module.net.register_forward_pre_hook(record)

        def keep(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            self.train_logits.setdefault(trainer.current_epoch, []).append(output.detach())

        self._hook = pl_module.net.register_forward_hook(keep)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._hook.remove()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val_targets.append(batch[1])


def test_a_randaugment_and_mixing_run_trains_shows_its_batch_and_stops_mixing(tmp_path: Path):
    overrides = [
        *FAST,
        *QUIET,
        "augment=randaugment",
        "data.augment.mixup_alpha=0.2",
        "data.augment.cutmix_alpha=1.0",
        "data.augment.mixup_off_epoch=1",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "test=false",
        "+callbacks.spy._target_=tests.test_mixing.InputSpy",
    ]
    cfg = compose_config("train.yaml", tmp_path, overrides)
    train(cfg)
    run = InputSpy.last
    # epoch 0 mixed (soft (B, C) targets), epoch 1 (mixup_off_epoch) and validation never
    assert all(t.shape == (64, 10) and t.is_floating_point() for t in run.train_targets[0])
    assert all(t.ndim == 1 for t in run.train_targets[1])
    assert run.val_targets and all(t.ndim == 1 for t in run.val_targets)
    scalars = tensorboard_scalars(tmp_path)
    # mixed epoch 0's accuracy scores each image against its dominant label
    logits, targets = torch.cat(run.train_logits[0]), torch.cat(run.train_targets[0])
    dominant = (logits.argmax(dim=1) == targets.argmax(dim=1)).float().mean().item()
    assert scalars["train/acc"][0] == pytest.approx(dominant, abs=1e-6)
    # the TensorBoard grid is the first batch the network saw, normalisation undone
    (grid,) = tensorboard_events(tmp_path).Images("train/augmented_images")
    shown = decode_png(torch.frombuffer(bytearray(grid.encoded_image_string), dtype=torch.uint8))
    data = cfg.data
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    seen = (run.first_input[:32] * std + mean).clamp(0, 1)
    expected = (make_grid(seen, nrow=8) * 255).round().to(torch.uint8)
    assert shown.shape == expected.shape
    assert (shown.int() - expected.int()).abs().max() <= 1


@pytest.mark.slow
def test_multilabel_digits_with_mixup_reach_095_val_map(tmp_path: Path):
    overrides = [
        *FAST,
        "data=digits_multilabel",
        "data.augment.mixup_alpha=0.2",
        "test=false",
    ]
    metrics = train(compose_config("train.yaml", tmp_path, overrides))
    print(f"multi-label digits with mixup: val/map_best {float(metrics['val/map_best']):.4f}")
    assert metrics["val/map_best"] >= 0.95
