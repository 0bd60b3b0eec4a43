"""torchvision's learned augmentation policies for whole uint8 batches, on the batches' device.

RandAugment, TrivialAugmentWide and AutoAugment pick ops and magnitudes for each image from tables
that are read here from torchvision's own classes, so both pipelines draw from the same ones. Every
image draws at once from the given generator; each op then runs on the whole batch and each image
keeps the result of the op it drew (torch.where). So a batch costs a few dozen kernel launches,
with no Python loop over images and nothing read back to the host. The ops follow torchvision's
tensor kernels: nearest sampling, zeros outside the image, results truncated to uint8.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import equalize_image

from src.compat import autoaugment_subpolicies, policy_ops

OPS = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
OP = {name: i for i, name in enumerate(OPS)}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
BLENDS = ("Brightness", "Color", "Contrast", "Sharpness")  # each a blend with another image
AUTOAUGMENT_BINS = 10  # torchvision's AutoAugment indexes magnitudes of 10 bins


@dataclass
class Tables:
    """A policy's choices as tensors on one device.

    RandAugment and TrivialAugmentWide: `ops` (K,) the op of each choice, `magnitudes` (K, bins).
    AutoAugment: `ops`, `magnitudes` and `probabilities` (S, 2): the two steps of each sub-policy.
    `signed` (len(OPS),): whether an op's magnitude takes a random sign.
    """

    ops: Tensor
    magnitudes: Tensor
    signed: Tensor
    probabilities: Tensor | None = None


class BatchPolicy:
    """A torchvision policy (v2.RandAugment, v2.TrivialAugmentWide or v2.AutoAugment with their
    default nearest interpolation and zero fill) for uint8 batches (N, C, H, W) on any device."""

    def __init__(self, policy: v2.Transform) -> None:
        if not isinstance(policy, v2.RandAugment | v2.TrivialAugmentWide | v2.AutoAugment):
            raise TypeError(f"no batched version of {type(policy).__name__}")
        self.policy = policy
        self.present = set(policy_ops(policy))
        self._tables: dict[tuple[str, int, int], Tables] = {}

    def _build(self, height: int, width: int) -> Tables:
        policy, space = self.policy, policy_ops(self.policy)
        signed = torch.tensor([name in space and space[name][1] for name in OPS])

        def magnitudes(name: str, bins: int) -> Tensor:
            values = space[name][0](bins, height, width)
            return torch.zeros(bins) if values is None else values.float()

        if isinstance(policy, v2.AutoAugment):
            steps = autoaugment_subpolicies(policy)
            return Tables(
                ops=torch.tensor([[OP[name] for name, _, _ in s] for s in steps]),
                magnitudes=torch.tensor(
                    [
                        [float(magnitudes(n, AUTOAUGMENT_BINS)[i or 0]) for n, _, i in s]
                        for s in steps
                    ]
                ),
                signed=signed,
                probabilities=torch.tensor([[p for _, p, _ in s] for s in steps]),
            )
        bins = policy.num_magnitude_bins
        return Tables(
            ops=torch.tensor([OP[name] for name in space]),
            magnitudes=torch.stack([magnitudes(name, bins) for name in space]),
            signed=signed,
        )

    def tables(self, height: int, width: int, device: torch.device) -> Tables:
        """The tables for images of this size, made once per device (copied without a wait)."""
        key = (str(device), height, width)
        if key not in self._tables:
            built = self._build(height, width)
            self._tables[key] = Tables(
                *(
                    None if t is None else t.to(device, non_blocking=True)
                    for t in (built.ops, built.magnitudes, built.signed, built.probabilities)
                )
            )
        return self._tables[key]

    def draw(
        self, n: int, height: int, width: int, g: torch.Generator
    ) -> list[tuple[Tensor, Tensor]]:
        """For each of the policy's steps: the op (an index into OPS) and the signed magnitude of
        each of n images, drawn as torchvision draws them for one image."""
        t, device = self.tables(height, width, g.device), g.device
        policy = self.policy
        steps = []
        if isinstance(policy, v2.AutoAugment):
            chosen = torch.randint(len(t.ops), (n,), generator=g, device=device)
            for step in range(2):
                applied = torch.rand(n, generator=g, device=device) <= t.probabilities[chosen, step]
                ops = torch.where(applied, t.ops[chosen, step], OP["Identity"])
                steps.append((ops, t.magnitudes[chosen, step]))
        else:
            count = policy.num_ops if isinstance(policy, v2.RandAugment) else 1
            for _ in range(count):
                chosen = torch.randint(len(t.ops), (n,), generator=g, device=device)
                if isinstance(policy, v2.RandAugment):
                    magnitude = t.magnitudes[chosen, policy.magnitude]
                else:
                    bins = torch.randint(t.magnitudes.shape[1], (n,), generator=g, device=device)
                    magnitude = t.magnitudes[chosen, bins]
                steps.append((t.ops[chosen], magnitude))
        signed = []
        for ops, magnitude in steps:
            negative = t.signed[ops] & (torch.rand(n, generator=g, device=device) <= 0.5)
            signed.append((ops, torch.where(negative, -magnitude, magnitude)))
        return signed

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        """The uint8 images `x`, each augmented by its own draw from `g` (on x's device)."""
        for ops, magnitude in self.draw(len(x), x.shape[-2], x.shape[-1], g):
            x = apply_ops(x, ops, magnitude, self.present)
        return x


def _per_image(values: Tensor) -> Tensor:
    return values[:, None, None, None]


def apply_ops(x: Tensor, ops: Tensor, magnitude: Tensor, present: set[str]) -> Tensor:
    """Each uint8 image of `x` transformed by its op (index into OPS) with its magnitude; only
    the ops in `present` are computed."""
    out = x
    for group, apply in ((GEOMETRIC, geometric_ops), (BLENDS, blend_ops)):
        if present.intersection(group):  # each group is a run of consecutive OPS
            chosen = (ops >= OP[group[0]]) & (ops <= OP[group[-1]])
            out = torch.where(_per_image(chosen), apply(x, ops, magnitude), out)
    single = {
        "Posterize": lambda: posterize(x, magnitude),
        "Solarize": lambda: solarize(x, magnitude),
        "AutoContrast": lambda: autocontrast(x),
        "Equalize": lambda: equalize_image(x),
        "Invert": lambda: x.bitwise_not(),
    }
    for name, op in single.items():
        if name in present:
            out = torch.where(_per_image(ops == OP[name]), op(), out)
    return out


def _where(ops: Tensor, name: str, value: Tensor, otherwise: float | Tensor) -> Tensor:
    return torch.where(ops == OP[name], value, otherwise)


def geometric_ops(x: Tensor, ops: Tensor, magnitude: Tensor) -> Tensor:
    """Shears (about the top-left corner), whole-pixel shifts and rotations (about the centre),
    each image by its own op, in one resampling: torchvision's inverse affine matrices, applied
    to pixel centres measured from the image's centre."""
    _, _, h, w = x.shape
    m = magnitude
    shift = m.trunc()  # torchvision shifts by int(magnitude)
    angle = -m * (math.pi / 180)
    cos = _where(ops, "Rotate", angle.cos(), 1.0)
    sin = _where(ops, "Rotate", angle.sin(), 0.0)
    # input = matrix @ (output x, output y, 1), per image
    m00, m11 = cos, cos
    m01 = sin + _where(ops, "ShearX", m, 0.0)
    m10 = -sin + _where(ops, "ShearY", m, 0.0)
    m02 = _where(ops, "ShearX", m * (h / 2), 0.0) - _where(ops, "TranslateX", shift, 0.0)
    m12 = _where(ops, "ShearY", m * (w / 2), 0.0) - _where(ops, "TranslateY", shift, 0.0)
    u = (torch.arange(w, device=x.device) + 0.5 - w / 2)[None, None, :]
    v = (torch.arange(h, device=x.device) + 0.5 - h / 2)[None, :, None]

    def row(a: Tensor, b: Tensor, c: Tensor, half: float) -> Tensor:
        return (a[:, None, None] * u + b[:, None, None] * v + c[:, None, None]) / half

    grid = torch.stack([row(m00, m01, m02, w / 2), row(m10, m11, m12, h / 2)], dim=-1)
    warped = F.grid_sample(
        x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return warped.round_().to(x.dtype)


def _gray(x: Tensor) -> Tensor:
    """torchvision's grayscale of uint8 images, floored, as floats (N, 1, H, W)."""
    if x.shape[1] == 1:  # already grey-scale (data.channels=1)
        return x.float()
    r, g, b = x.float().unbind(dim=1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def _blurred(x: Tensor) -> Tensor:
    """torchvision's sharpness reference: a 3x3 smoothing inside, the image's own border."""
    c = x.shape[1]
    kernel = torch.full((c, 1, 3, 3), 1 / 13, device=x.device)
    kernel[:, :, 1, 1] = 5 / 13
    out = x.float()
    out[..., 1:-1, 1:-1] = F.conv2d(out, kernel, groups=c).round_()
    return out


def blend_ops(x: Tensor, ops: Tensor, magnitude: Tensor) -> Tensor:
    """Brightness, colour (saturation), contrast and sharpness by factor 1 + magnitude: a blend
    of the image with black, its grayscale, its mean gray or a smoothed copy, in torchvision's
    arithmetic (image * factor - magnitude * reference; sharpness image - magnitude * (smoothed
    - image)), so that the results truncate to the same uint8 values."""
    f = x.float()
    gray = _gray(x)
    sharpness = _per_image(ops == OP["Sharpness"])
    reference = torch.where(_per_image(ops == OP["Color"]), gray, 0.0)  # Brightness: none
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    reference = torch.where(_per_image(ops == OP["Contrast"]), mean, reference)
    reference = torch.where(sharpness, _blurred(x).sub_(f), reference)
    scale = torch.where(sharpness, 1.0, _per_image(1 + magnitude))
    out = f.mul_(scale).addcmul_(reference, _per_image(-magnitude))
    return out.clamp_(0, 255).to(x.dtype)


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the `bits` highest bits of each uint8 pixel (bits per image, 0..8)."""
    bits = bits.long()
    mask = (bits.new_full(bits.shape, 255) << (8 - bits)) & 255
    return x & _per_image(mask).to(x.dtype)


def solarize(x: Tensor, magnitude: Tensor) -> Tensor:
    """Invert the pixels at or above 255 * magnitude (per image)."""
    return torch.where(x >= _per_image(magnitude * 255), x.bitwise_not(), x)


def autocontrast(x: Tensor) -> Tensor:
    """Stretch each channel of each image to the full range 0..255 (flat channels stay)."""
    f = x.float()
    low, high = f.amin(dim=(-2, -1), keepdim=True), f.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    scale = torch.where(flat, 1.0, (high - low).mul_(1 / 255))
    return ((f - torch.where(flat, 0.0, low)) / scale).clamp_(0, 255).to(x.dtype)
