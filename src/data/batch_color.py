"""Colour jitter of whole batches of [0, 1] images on the device, each image with its own factors
(brightness, contrast, saturation) and hue shift, drawn as torchvision's ColorJitter draws them
and applied as its functional ops compute them."""

import torch
from torch import Tensor

from src.data.geometry import uniform


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:  # already grey-scale (data.channels=1)
        return x
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _factor(n: int, strength: float, g: torch.Generator) -> Tensor:
    return uniform(n, max(0.0, 1 - strength), 1 + strength, g)[:, None, None, None]


def rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hue (a share of the colour circle, in [0, 1)), saturation and value of [0, 1] RGB images
    (N, 3, H, W), each (N, H, W): torchvision's conversion (which is private)."""
    r, g, b = x.unbind(1)
    value, low = x.amax(1), x.amin(1)
    spread = value - low
    gray = spread == 0  # hue and saturation 0, and no division by 0
    saturation = spread / torch.where(value == 0, 1.0, value)
    spread = torch.where(gray, 1.0, spread)
    rc, gc, bc = (value - r) / spread, (value - g) / spread, (value - b) / spread
    hue = torch.where(value == r, bc - gc, torch.where(value == g, 2 + rc - bc, 4 + gc - rc))
    hue = torch.where(gray, 0.0, hue)
    return (hue / 6).remainder(1.0), saturation, value


def hsv_to_rgb(hue: Tensor, saturation: Tensor, value: Tensor) -> Tensor:
    """RGB images (N, 3, H, W) from hue, saturation and value (N, H, W), all in [0, 1]."""
    # channel c = v - v * s * clamp(min(k, 4 - k), 0, 1), k = (n + 6 * hue) mod 6, n = 5, 3, 1:
    # the six sectors of the colour circle without a table lookup
    n = 5 - 2 * torch.arange(3, device=hue.device, dtype=hue.dtype)[None, :, None, None]
    k = (n + 6 * hue[:, None]).remainder_(6)
    ramp = torch.minimum(k, 4 - k).clamp_(0, 1)
    return (value[:, None] * (1 - saturation[:, None] * ramp)).clamp_(0, 1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Turn the hue of each [0, 1] RGB image by its own shift (a share of the colour circle, in
    [-0.5, 0.5]): torchvision's adjust_hue, image by image. One-channel images stay as they are."""
    if x.shape[1] == 1:  # as torchvision (and PIL): gray has no hue
        return x
    hue, saturation, value = rgb_to_hsv(x)
    return hsv_to_rgb((hue + shift[:, None, None]).remainder_(1.0), saturation, value)


def color_jitter(
    x: Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    g: torch.Generator,
    hue: float = 0.0,
) -> Tensor:
    """Scale brightness, contrast and saturation of [0, 1] images by a factor drawn per image, then
    turn their hue by a shift drawn from [-hue, hue]. Works in place on `x` (a batch of floats
    the caller made), which keeps large batches fast on the CPU."""
    n = len(x)
    if brightness:
        x.mul_(_factor(n, brightness, g)).clamp_(0, 1)
    if contrast:
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        f = _factor(n, contrast, g)
        x.mul_(f).add_((1 - f) * mean).clamp_(0, 1)
    if saturation:
        f = _factor(n, saturation, g)
        gray = _gray(x).mul_(1 - f)  # before x changes
        x.mul_(f).add_(gray).clamp_(0, 1)
    if hue:
        x = adjust_hue(x, uniform(n, -hue, hue, g))
    return x
