"""The geometry of whole batches, each image with its own draw: torchvision's random resized crop,
and a random affine map (rotation, whole-pixel shift, zoom) with the fills torchvision's
RandomAffine lacks, which the per-sample pipeline (src/data/augmentation.py) shares with the
batched one (src/data/batch_augment.py)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def uniform(n: int, low: float, high: float, g: torch.Generator) -> Tensor:
    """n draws from U(low, high) with generator g, on its device."""
    return torch.rand(n, generator=g, device=g.device) * (high - low) + low


def randint_below(high: Tensor, g: torch.Generator) -> Tensor:
    """An integer in [0, high) per entry of `high`."""
    return (torch.rand(high.shape, generator=g, device=g.device) * high).floor().long()


CROP_ATTEMPTS = 10  # as torchvision's RandomResizedCrop: then the centre crop


def resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    g: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(top, left, height, width) of a crop box per image, drawn as torchvision's
    RandomResizedCrop draws one: the first of 10 tries (area share in `scale`, aspect ratio
    log-uniform in `ratio`) that fits, else the centre crop of the nearest allowed ratio."""
    tries = (n, CROP_ATTEMPTS)
    area = (
        height
        * width
        * (torch.rand(tries, generator=g, device=g.device) * (scale[1] - scale[0]) + scale[0])
    )
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = (
        torch.rand(tries, generator=g, device=g.device) * (log_high - log_low) + log_low
    ).exp()
    # torch.round rounds halves to even, Python's round too
    widths = (area * aspect).sqrt().round().long()
    heights = (area / aspect).sqrt().round().long()
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first = fits.int().argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    fallback_h, fallback_w = height, width  # the centre crop: the whole image, or the ratio's limit
    if width / height < min(ratio):
        fallback_h = int(round(width / min(ratio)))
    elif width / height > max(ratio):
        fallback_w = int(round(height * max(ratio)))
    crop_h = torch.where(found, heights.gather(1, first)[:, 0], fallback_h)
    crop_w = torch.where(found, widths.gather(1, first)[:, 0], fallback_w)
    top = torch.where(found, randint_below(height - crop_h + 1, g), (height - fallback_h) // 2)
    left = torch.where(found, randint_below(width - crop_w + 1, g), (width - fallback_w) // 2)
    return top, left, crop_h, crop_w


def resized_crop(x: Tensor, top: Tensor, left: Tensor, height: Tensor, width: Tensor) -> Tensor:
    """Cut each float image's box (top, left, height, width) and resize it bilinearly back to the
    image's size: torchvision's resized_crop (a box is never larger than the image, so its
    antialiasing has nothing to do), all images in one grid_sample."""
    n, _, h, w = x.shape

    def source(out: int, start: Tensor, length: Tensor) -> Tensor:
        # F.interpolate's source of each output pixel in the box (align_corners=False, clamped
        # to the box), moved to the image and into grid_sample's [-1, 1]
        length = length.to(x.dtype)[:, None]
        inside = (torch.arange(out, device=x.device) + 0.5) * (length / out) - 0.5
        inside = torch.minimum(inside.clamp_(min=0), length - 1)
        return (2 * (inside + start[:, None]) + 1) / out - 1

    grid_x = source(w, left, width)[:, None, :].expand(n, h, w)
    grid_y = source(h, top, height)[:, :, None].expand(n, h, w)
    grid = torch.stack([grid_x, grid_y], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(
    x: Tensor, scale: Sequence[float], ratio: Sequence[float], g: torch.Generator
) -> Tensor:
    """torchvision's RandomResizedCrop of each float image, drawn per image, output its size."""
    n, _, h, w = x.shape
    return resized_crop(x, *resized_crop_boxes(n, h, w, scale, ratio, g))


def random_affine(
    x: Tensor,
    degrees: float,
    translate: Sequence[float],
    scale: Sequence[float],
    g: torch.Generator,
    fill: str = "zeros",
    interpolation: str = "nearest",
) -> Tensor:
    """Rotate, shift (whole pixels) and zoom each image about its centre, sampling the nearest
    pixel or bilinearly, filling what falls outside with zeros, the border or a reflection."""
    n, _, h, w = x.shape
    angle = uniform(n, -degrees, degrees, g) * (math.pi / 180)
    shift_x = uniform(n, -translate[0] * w, translate[0] * w, g).round()
    shift_y = uniform(n, -translate[1] * h, translate[1] * h, g).round()
    zoom = uniform(n, scale[0], scale[1], g)
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    # output -> input in grid_sample's coordinates ([-1, 1] across each side, pixel centres):
    # undo the shift, the rotation and the zoom, measured in pixels so that non-square images
    # rotate undistorted. Written out elementwise: F.affine_grid's batched matrix product is
    # 20x slower on the CPU for such small matrices.
    u = ((torch.arange(w, device=x.device) * 2 + 1) / w - 1)[None, None, :]
    v = ((torch.arange(h, device=x.device) * 2 + 1) / h - 1)[None, :, None]
    cos, sin = cos[:, None, None], sin[:, None, None]
    dx, dy = (shift_x * 2 / w)[:, None, None], (shift_y * 2 / h)[:, None, None]
    grid_x = cos * (u - dx) + sin * (v - dy) * (h / w)
    grid_y = -sin * (u - dx) * (w / h) + cos * (v - dy)
    grid = torch.stack([grid_x, grid_y], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode=fill, align_corners=False)


class RandomAffineImage(torch.nn.Module):
    """`random_affine` for one (C, H, W) float image, drawn from the global RNG: the per-sample
    pipeline's affine map where torchvision's RandomAffine has no such fill (border, reflection).
    The arguments are random_affine's."""

    def __init__(
        self,
        degrees: float,
        translate: Sequence[float],
        scale: Sequence[float],
        fill: str = "zeros",
        interpolation: str = "nearest",
    ) -> None:
        super().__init__()
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.fill, self.interpolation = fill, interpolation

    def forward(self, image: Tensor) -> Tensor:
        x = torch.as_tensor(image)[None]
        g = torch.default_generator
        return random_affine(
            x, self.degrees, self.translate, self.scale, g, self.fill, self.interpolation
        )[0]
