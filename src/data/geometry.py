"""A random affine map (rotation, whole-pixel shift, zoom) of whole batches, with the fills
torchvision's RandomAffine lacks: shared by the batched pipeline (src/data/batch_augment.py) and
the per-sample one (src/data/augmentation.py)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def uniform(n: int, low: float, high: float, g: torch.Generator) -> Tensor:
    """n draws from U(low, high) with generator g, on its device."""
    return torch.rand(n, generator=g, device=g.device) * (high - low) + low


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
