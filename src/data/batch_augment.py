"""The augmentation of `data.augment` applied to whole batches on the device, drawn per image.

Each step draws its random parameters for every image of the batch at once, from the generator it
is given, and applies them with tensor operations, so a batch costs a few kernel launches instead
of one Python call per image, and nothing is read back to the host. The draws follow torchvision's
transforms (see src/data/augmentation.py): the same ranges, the same whole-pixel shifts and crop
boxes (src/data/geometry.py), the same colour ops (src/data/batch_color.py), the same erasing
rule; the learned policies (RandAugment, TrivialAugmentWide, AutoAugment) draw from
torchvision's own tables (src/data/batch_policy.py).
"""

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from src.data.augmentation import ERASE_RATIO, ERASE_SCALE, Augmentation, policy_transform
from src.data.batch_color import color_jitter
from src.data.batch_policy import BatchPolicy
from src.data.geometry import randint_below, random_affine, random_resized_crop

ERASE_ATTEMPTS = 10  # as torchvision: a rectangle that does not fit is drawn again, then skipped


def _chance(n: int, p: float, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g, device=g.device) < p


def crop_and_flip(
    x: Tensor, padding: int, p_flip: float, g: torch.Generator, p_vflip: float = 0.0
) -> Tensor:
    """Pad each side with `padding` zeros and cut each image back to its size at a random offset,
    then mirror it left-right with probability `p_flip` and upside down with `p_vflip`: one
    gather, in any dtype (uint8 here). Without padding only the flips: each image or its mirror
    image, no gather."""
    n, c, h, w = x.shape
    if not padding:
        if p_flip:
            x = torch.where(_chance(n, p_flip, g)[:, None, None, None], x.flip(-1), x)
        if p_vflip:
            x = torch.where(_chance(n, p_vflip, g)[:, None, None, None], x.flip(-2), x)
        return x
    x = F.pad(x, (padding, padding, padding, padding))
    width = w + 2 * padding
    top = randint_below(torch.full((n,), 2 * padding + 1, device=g.device), g)
    left = randint_below(torch.full((n,), 2 * padding + 1, device=g.device), g)
    flip = _chance(n, p_flip, g)
    vflip = _chance(n, p_vflip, g) if p_vflip else torch.zeros_like(flip)
    across, down = torch.arange(w, device=x.device), torch.arange(h, device=x.device)
    cols = left[:, None] + torch.where(flip[:, None], w - 1 - across, across)
    rows = top[:, None] + torch.where(vflip[:, None], h - 1 - down, down)
    index = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return x.flatten(2).gather(2, index).view(n, c, h, w)


@contextmanager
def one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """One intra-op thread while on the CPU: the policies' many small ops gain little from more,
    and waiting for them costs much (several times over on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def random_erasing(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Set a random rectangle of 2-33% of the image to zero, with probability p per image."""
    n, _, h, w = x.shape
    erase = torch.rand(n, generator=g, device=g.device) < p
    tries = (n, ERASE_ATTEMPTS)
    area = (
        h
        * w
        * (
            torch.rand(tries, generator=g, device=g.device) * (ERASE_SCALE[1] - ERASE_SCALE[0])
            + ERASE_SCALE[0]
        )
    )
    log_low, log_high = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    ratio = (torch.rand(tries, generator=g, device=g.device) * (log_high - log_low) + log_low).exp()
    heights = (area * ratio).sqrt().round().long()
    widths = (area / ratio).sqrt().round().long()
    fits = (heights < h) & (widths < w)
    first = fits.int().argmax(dim=1, keepdim=True)  # the first rectangle that fits
    erase &= fits.any(dim=1)
    eh, ew = heights.gather(1, first)[:, 0], widths.gather(1, first)[:, 0]
    top, left = randint_below(h - eh + 1, g), randint_below(w - ew + 1, g)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = inside_rows[:, :, None] & inside_cols[:, None, :] & erase[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


class BatchAugmentation:
    """`data.augment` and normalisation for uint8 batches (N, 3, H, W) on any device."""

    def __init__(self, aug: Augmentation, mean: Sequence[float], std: Sequence[float]) -> None:
        self.aug = aug
        policy = policy_transform(aug)
        self.policy = BatchPolicy(policy) if policy is not None else None
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def _statistics(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if self.mean.device != device:  # once; a copy the host need not wait for
            self.mean = self.mean.to(device, non_blocking=True)
            self.std = self.std.to(device, non_blocking=True)
        return self.mean, self.std

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 images to float, normalised (the evaluation transform), in two passes."""
        mean, std = self._statistics(images.device)
        return images.float().mul_(1 / (255 * std)).sub_(mean / std)

    def _normalize_unit(self, x: Tensor) -> Tensor:
        mean, std = self._statistics(x.device)
        return x.sub_(mean).div_(std)

    def __call__(self, images: Tensor, g: torch.Generator) -> Tensor:
        """uint8 images augmented (parameters drawn from `g`, on the images' device), normalised.

        The random resized crop resamples floats and rounds them back to uint8 (as torchvision
        resizes uint8 images); crops, flips and the policy move uint8 pixels (a quarter of the
        memory traffic of floats); the affine map and colour jitter (hue last) work on floats in
        [0, 1]; random erasing comes last.
        """
        aug = self.aug
        x = images
        if aug.resized_crop:
            x = random_resized_crop(x.float(), aug.resized_crop_scale, aug.resized_crop_ratio, g)
            x = x.round_().clamp_(0, 255).to(images.dtype)
        if aug.crop_padding or aug.hflip or aug.vflip:
            x = crop_and_flip(x, aug.crop_padding, aug.hflip, g, aug.vflip)
        if self.policy is not None:
            with one_thread_on_cpu(x.device):
                x = self.policy(x, g)
        if aug.affine or aug.color_jitter:
            x = x.float().div_(255)
            if aug.affine:
                x = random_affine(
                    x, aug.degrees, aug.translate, aug.scale, g, aug.fill, aug.interpolation
                )
            if aug.color_jitter:
                x = color_jitter(x, aug.brightness, aug.contrast, aug.saturation, g, aug.hue)
            x = self._normalize_unit(x)
        else:
            x = self.normalize(x)
        if aug.erasing:
            x = random_erasing(x, aug.erasing, g)
        return x
