"""MixUp and CutMix of whole training batches, with soft targets, drawn from a given generator.

Each image is mixed with its neighbour in the batch (the batch rolled by one), with a weight
`lam` drawn from Beta(alpha, alpha), as torchvision.transforms.v2.MixUp/CutMix do. Written here
rather than taken from torchvision because those take integer labels only (not multi-hot ones)
and draw from the global RNG, where these draws come from a NumPy generator of the batch (seeded
by seed, epoch, rank and batch: src/data/base.py), so that a resumed run mixes as an
uninterrupted one would. A batch's few numbers are drawn on the host: nothing waits for the device.

Targets become soft: multi-class indices (B,) turn into (B, C) class probabilities, the mixed
one-hot vectors; binary indices (B,) into the mixed probability of class 1 (B,); multi-label
multi-hot vectors (B, C) into mixed multi-hot floats in [0, 1].
"""

import math
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from src.data.augmentation import Augmentation


@dataclass(frozen=True)
class MixDraw:
    """One batch's mixing: `lam` is the share of each image's own target; CutMix pastes the
    neighbour's rows top:bottom and columns left:right."""

    lam: float
    box: tuple[int, int, int, int] | None = None  # top, bottom, left, right: CutMix only


def draw_mixing(
    aug: Augmentation, height: int, width: int, rng: np.random.Generator
) -> MixDraw | None:
    """What to do with one batch: None (not mixed, 1 - mix_prob of batches), MixUp or CutMix."""
    if not aug.mixing or rng.random() >= aug.mix_prob:
        return None
    cutmix = aug.cutmix_alpha > 0 and (aug.mixup_alpha == 0 or rng.random() < 0.5)
    alpha = aug.cutmix_alpha if cutmix else aug.mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if not cutmix:
        return MixDraw(lam)
    # torchvision's CutMix: a box of about (1 - lam) of the area around a uniform centre, clipped
    # to the image; lam then becomes the share of the image left uncovered
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    half = 0.5 * math.sqrt(1.0 - lam)
    half_h, half_w = int(half * height), int(half * width)
    top, bottom = max(centre_y - half_h, 0), min(centre_y + half_h, height)
    left, right = max(centre_x - half_w, 0), min(centre_x + half_w, width)
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return MixDraw(lam, (top, bottom, left, right))


def soft_targets(targets: Tensor, num_classes: int, binary: bool = False) -> Tensor:
    """Targets as floats (B, C): one-hot rows for class indices, multi-hot rows as they are;
    binary class indices as floats (B,), the probability of class 1."""
    if binary:
        return targets.float()
    if targets.ndim == 1:
        return F.one_hot(targets.long(), num_classes).float()
    return targets.float()


def mix_images(images: Tensor, draw: MixDraw) -> Tensor:
    """Each image mixed with the one before it in the batch (the first with the last)."""
    other = images.roll(1, dims=0)
    if draw.box is None:
        return other.mul_(1.0 - draw.lam).add_(images, alpha=draw.lam)
    top, bottom, left, right = draw.box
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = other[..., top:bottom, left:right]
    return mixed


def mix_batch(
    images: Tensor,
    targets: Tensor,
    aug: Augmentation,
    num_classes: int,
    rng: np.random.Generator,
    binary: bool = False,
) -> tuple[Tensor, Tensor]:
    """A training batch of float images (B, C, H, W) MixUp- or CutMix-ed as `aug` says (its
    numbers drawn from `rng`), with soft targets (`binary`: of class 1, (B,)); unchanged (hard
    targets) when the draw leaves the batch unmixed."""
    draw = draw_mixing(aug, images.shape[-2], images.shape[-1], rng)
    if draw is None:
        return images, targets
    soft = soft_targets(targets, num_classes, binary)
    mixed_targets = soft.roll(1, dims=0).mul_(1.0 - draw.lam).add_(soft, alpha=draw.lam)
    return mix_images(images, draw), mixed_targets
