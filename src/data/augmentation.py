"""The training augmentation of in-memory data sets, described once and built for either pipeline.

`data.augment` names each augmentation and its strength; `per_sample_train_transform` turns it into
torchvision.transforms.v2 applied image by image, and `src/data/batch_augment.py` applies the same
draws to whole batches on the training device. Both end with normalisation by `data.mean`/`std`.
The batch-level MixUp/CutMix it also describes is applied to whole training batches by
src/data/batch_mixing.py, in either pipeline.
"""

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torchvision.transforms import v2

from src.core.errors import ConfigError
from src.data.geometry import RandomAffineImage

# torchvision's RandomErasing defaults: the erased share of the image and its aspect ratio
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)
# the learned augmentation policies of torchvision, by their name in data.augment.policy
POLICIES = ("randaugment", "trivialaugment", "autoaugment")
# what the random affine map shows outside the image, and how it samples (grid_sample's names)
FILLS = ("zeros", "border", "reflection")
INTERPOLATIONS = ("nearest", "bilinear")
# magnitude bins of RandAugment and TrivialAugmentWide (torchvision's default): magnitudes 0..30
MAGNITUDE_BINS = 31


@dataclass(frozen=True)
class Augmentation:
    """What `data.augment` switches on, in the order it is applied; zeros switch a step off.

    resized_crop_scale, resized_crop_ratio: torchvision's RandomResizedCrop, first: a box of a
        share of the image's area drawn from resized_crop_scale = [low, high] and an aspect
        ratio (width / height) drawn log-uniformly from resized_crop_ratio, resized bilinearly
        back to the image's size; a scale of [1, 1] switches it off.
    crop_padding: pad each side by this many pixels (zeros), then crop the original size at random.
    hflip: probability of a horizontal flip.
    vflip: probability of a vertical flip (after the horizontal one).
    degrees, translate, scale: a random affine map: a rotation in [-degrees, degrees], a shift
        of up to translate = [x, y] of the width and height (whole pixels), a zoom in
        scale = [low, high].
    fill: what the affine map shows where it looks outside the image: zeros (black), border
        (the edge pixels repeated) or reflection (the image mirrored at its edges: no artificial
        corners, which matters for small, low-contrast images).
    interpolation: how the affine map samples: nearest (pixel) or bilinear.
    brightness, contrast, saturation: colour jitter, each factor drawn from [1 - s, 1 + s].
    hue: colour jitter's hue shift, drawn from [-hue, hue] (a share of the colour circle, at most
        0.5); one-channel images have no hue.
    erasing: probability of erasing a random rectangle (2-33% of the image) to zero after
        normalisation.
    policy: a learned policy of torchvision applied to each uint8 image after the crop and flip:
        randaugment (`policy_num_ops` ops of magnitude `policy_magnitude` in 0..30),
        trivialaugment (TrivialAugmentWide: one op, random magnitude) or autoaugment (the
        `autoaugment_policy` set of sub-policies: imagenet, cifar10 or svhn); None: no policy.
    mixup_alpha, cutmix_alpha: batch-level mixing (src/data/batch_mixing.py), the mixing weight
        drawn from Beta(alpha, alpha); 0 switches either off; with both on, each mixed batch is
        one or the other, evenly.
    mix_prob: probability that a training batch is mixed at all.
    mixup_off_epoch: from this epoch on (0-based) no batch is mixed; None: mixed to the end.
    """

    resized_crop_scale: tuple[float, float] = (1.0, 1.0)
    resized_crop_ratio: tuple[float, float] = (0.75, 1.3333)
    crop_padding: int = 0
    hflip: float = 0.0
    vflip: float = 0.0
    policy: str | None = None
    policy_magnitude: int = 9
    policy_num_ops: int = 2
    autoaugment_policy: str = "imagenet"
    degrees: float = 0.0
    translate: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    fill: str = "zeros"
    interpolation: str = "nearest"
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    erasing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    mixup_off_epoch: int | None = None

    @property
    def resized_crop(self) -> bool:
        return tuple(self.resized_crop_scale) != (1.0, 1.0)

    @property
    def affine(self) -> bool:
        return bool(self.degrees or any(self.translate) or tuple(self.scale) != (1.0, 1.0))

    @property
    def color_jitter(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation or self.hue)

    @property
    def mixing(self) -> bool:
        return bool(self.mix_prob and (self.mixup_alpha or self.cutmix_alpha))

    def mixes_in_epoch(self, epoch: int) -> bool:
        """Whether training batches of this (0-based) epoch are mixed."""
        return self.mixing and (self.mixup_off_epoch is None or epoch < self.mixup_off_epoch)


def _fail(key: str, value: Any, wanted: str) -> None:
    raise ConfigError(f"data.augment.{key}={value} is not valid: use {wanted}")


def parse_augmentation(settings: Mapping[str, Any] | None) -> Augmentation:
    """An Augmentation from the `data.augment` mapping, refusing unknown keys and bad strengths."""
    settings = dict(settings or {})
    known = [f.name for f in fields(Augmentation)]
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"data.augment.{key} is not an augmentation: {hint}use {', '.join(known)}"
            )
    for key in ("resized_crop_scale", "resized_crop_ratio", "translate", "scale"):
        if key in settings:
            value = settings[key]
            if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
                _fail(key, value, "a pair [a, b]")
            settings[key] = (float(value[0]), float(value[1]))
    aug = Augmentation(**settings)
    if not isinstance(aug.crop_padding, int) or aug.crop_padding < 0:
        _fail("crop_padding", aug.crop_padding, "a whole number of pixels, 0 or more")
    for key in ("hflip", "vflip", "erasing", "mix_prob"):
        if not 0 <= getattr(aug, key) <= 1:
            _fail(key, getattr(aug, key), "a probability in [0, 1]")
    if not 0 < aug.resized_crop_scale[0] <= aug.resized_crop_scale[1] <= 1:
        _fail(
            "resized_crop_scale",
            list(aug.resized_crop_scale),
            "shares of the area [low, high] with 0 < low <= high <= 1",
        )
    if not 0 < aug.resized_crop_ratio[0] <= aug.resized_crop_ratio[1]:
        _fail(
            "resized_crop_ratio",
            list(aug.resized_crop_ratio),
            "aspect ratios [low, high] with 0 < low <= high",
        )
    if not 0 <= aug.degrees <= 180:
        _fail("degrees", aug.degrees, "an angle in [0, 180]")
    if not all(0 <= t <= 1 for t in aug.translate):
        _fail("translate", list(aug.translate), "shares of the size in [0, 1]")
    if not 0 < aug.scale[0] <= aug.scale[1]:
        _fail("scale", list(aug.scale), "[low, high] with 0 < low <= high")
    if aug.fill not in FILLS:
        _fail("fill", aug.fill, " or ".join(FILLS))
    if aug.interpolation not in INTERPOLATIONS:
        _fail("interpolation", aug.interpolation, " or ".join(INTERPOLATIONS))
    for key in ("brightness", "contrast", "saturation"):
        if not 0 <= getattr(aug, key) <= 1:
            _fail(key, getattr(aug, key), "a strength in [0, 1]")
    if not 0 <= aug.hue <= 0.5:
        _fail("hue", aug.hue, "a hue shift in [0, 0.5] (a share of the colour circle)")
    _check_policy(aug)
    for key in ("mixup_alpha", "cutmix_alpha"):
        if not (isinstance(getattr(aug, key), int | float) and getattr(aug, key) >= 0):
            _fail(key, getattr(aug, key), "0 (off) or a positive Beta parameter such as 0.2 or 1.0")
    if aug.mixup_off_epoch is not None and not _whole(aug.mixup_off_epoch, 0):
        _fail("mixup_off_epoch", aug.mixup_off_epoch, "null (never off) or an epoch, 0 or more")
    return aug


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_policy(aug: Augmentation) -> None:
    if aug.policy is not None and aug.policy not in POLICIES:
        close = difflib.get_close_matches(str(aug.policy), POLICIES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(
            f"data.augment.policy={aug.policy} is not a policy: {hint}use null, randaugment, "
            "trivialaugment or autoaugment"
        )
    if not _whole(aug.policy_magnitude, 0) or aug.policy_magnitude >= MAGNITUDE_BINS:
        _fail(
            "policy_magnitude", aug.policy_magnitude, f"a whole number in 0..{MAGNITUDE_BINS - 1}"
        )
    if not _whole(aug.policy_num_ops, 1):
        _fail("policy_num_ops", aug.policy_num_ops, "a whole number of ops, 1 or more")
    names = [p.name.lower() for p in v2.AutoAugmentPolicy]
    if aug.autoaugment_policy not in names:
        _fail("autoaugment_policy", aug.autoaugment_policy, " or ".join(names))


def policy_transform(aug: Augmentation) -> v2.Transform | None:
    """torchvision's transform of `aug.policy` (for one uint8 image at a time), or None."""
    if aug.policy == "randaugment":
        return v2.RandAugment(aug.policy_num_ops, aug.policy_magnitude, MAGNITUDE_BINS)
    if aug.policy == "trivialaugment":
        return v2.TrivialAugmentWide(MAGNITUDE_BINS)
    if aug.policy == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy[aug.autoaugment_policy.upper()])
    return None


def check_statistics(
    mean: Sequence[float] | str, std: Sequence[float] | str, channels: int = 3
) -> None:
    """Refuse normalisation statistics that are not one number a channel each (or auto, for data
    that computes them), with positive stds."""
    given = [value for value in (mean, std) if value != "auto"]
    if any(isinstance(value, str) or len(value) != channels for value in given) or (
        std != "auto" and min(std) <= 0
    ):
        shown = [value if isinstance(value, str) else list(value) for value in (mean, std)]
        count, read_as = ("one number", "grey-scale") if channels == 1 else ("three numbers", "RGB")
        raise ConfigError(
            f"data.mean={shown[0]} and data.std={shown[1]} need {count} each (one a channel: "
            f"the images are read as {read_as}) or auto, the stds positive"
        )


def _to_float() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


def per_sample_train_transform(
    aug: Augmentation, mean: Sequence[float], std: Sequence[float], size: tuple[int, int]
) -> v2.Compose:
    """The augmentation as torchvision.transforms.v2, applied to one (height, width) image at a
    time. Crops, flips and policy see the image as it was read (uint8 for in-memory data), the
    rest floats in [0, 1]; batch mixing comes later, on whole batches."""
    steps: list[v2.Transform] = [v2.ToImage()]
    if aug.resized_crop:
        steps.append(
            v2.RandomResizedCrop(
                size, aug.resized_crop_scale, aug.resized_crop_ratio, antialias=True
            )
        )
    if aug.crop_padding:
        steps.append(v2.RandomCrop(size, padding=aug.crop_padding))
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip(p=aug.hflip))
    if aug.vflip:
        steps.append(v2.RandomVerticalFlip(p=aug.vflip))
    if (policy := policy_transform(aug)) is not None:
        steps.append(policy)
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if aug.affine and aug.fill == "zeros":
        interpolation = v2.InterpolationMode[aug.interpolation.upper()]
        steps.append(
            v2.RandomAffine(
                aug.degrees, translate=aug.translate, scale=aug.scale, interpolation=interpolation
            )
        )
    elif aug.affine:  # torchvision fills with a constant only: the batched pipeline's map
        steps.append(
            RandomAffineImage(aug.degrees, aug.translate, aug.scale, aug.fill, aug.interpolation)
        )
    if aug.color_jitter:
        steps.append(
            v2.ColorJitter(
                brightness=aug.brightness or None,
                contrast=aug.contrast or None,
                saturation=aug.saturation or None,
                hue=aug.hue or None,
            )
        )
    steps.append(v2.Normalize(list(mean), list(std)))
    if aug.erasing:
        steps.append(v2.RandomErasing(p=aug.erasing, scale=ERASE_SCALE, ratio=ERASE_RATIO))
    return v2.Compose(steps)


def per_sample_eval_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Conversion to float and normalisation, one image at a time."""
    return v2.Compose([*_to_float(), v2.Normalize(list(mean), list(std))])
