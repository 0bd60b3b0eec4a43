"""The training augmentation of in-memory data sets, described once and built for either pipeline.

`data.augment` names each augmentation and its strength; `per_sample_train_transform` turns it into
torchvision.transforms.v2 applied image by image, and `src/data/batch_augment.py` applies the same
draws to whole batches on the training device. Both end with normalisation by `data.mean`/`std`.
"""

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torchvision.transforms import v2

from src.cli.errors import ConfigError

# torchvision's RandomErasing defaults: the erased share of the image and its aspect ratio
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)


@dataclass(frozen=True)
class Augmentation:
    """What `data.augment` switches on, in the order it is applied; zeros switch a step off.

    crop_padding: pad each side by this many pixels (zeros), then crop the original size at random.
    hflip: probability of a horizontal flip.
    degrees, translate, scale: a random affine map (nearest pixel, zero fill): a rotation in
        [-degrees, degrees], a shift of up to translate = [x, y] of the width and height (whole
        pixels), a zoom in scale = [low, high].
    brightness, contrast, saturation: colour jitter, each factor drawn from [1 - s, 1 + s].
    erasing: probability of erasing a random rectangle (2-33% of the image) to zero after
        normalisation.
    """

    crop_padding: int = 0
    hflip: float = 0.0
    degrees: float = 0.0
    translate: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    erasing: float = 0.0

    @property
    def affine(self) -> bool:
        return bool(self.degrees or any(self.translate) or tuple(self.scale) != (1.0, 1.0))

    @property
    def color_jitter(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation)


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
    for key in ("translate", "scale"):
        if key in settings:
            value = settings[key]
            if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
                _fail(key, value, "a pair [a, b]")
            settings[key] = (float(value[0]), float(value[1]))
    aug = Augmentation(**settings)
    if not isinstance(aug.crop_padding, int) or aug.crop_padding < 0:
        _fail("crop_padding", aug.crop_padding, "a whole number of pixels, 0 or more")
    for key in ("hflip", "erasing"):
        if not 0 <= getattr(aug, key) <= 1:
            _fail(key, getattr(aug, key), "a probability in [0, 1]")
    if not 0 <= aug.degrees <= 180:
        _fail("degrees", aug.degrees, "an angle in [0, 180]")
    if not all(0 <= t <= 1 for t in aug.translate):
        _fail("translate", list(aug.translate), "shares of the size in [0, 1]")
    if not 0 < aug.scale[0] <= aug.scale[1]:
        _fail("scale", list(aug.scale), "[low, high] with 0 < low <= high")
    for key in ("brightness", "contrast", "saturation"):
        if not 0 <= getattr(aug, key) <= 1:
            _fail(key, getattr(aug, key), "a strength in [0, 1]")
    return aug


def check_statistics(mean: Sequence[float], std: Sequence[float]) -> None:
    """Refuse normalisation statistics that are not three numbers each, with positive stds."""
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(
            f"data.mean={list(mean)} and data.std={list(std)} need three numbers each (one per "
            "colour channel), the stds positive"
        )


def _to_float() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


def per_sample_train_transform(
    aug: Augmentation, mean: Sequence[float], std: Sequence[float], size: tuple[int, int]
) -> v2.Compose:
    """The augmentation as torchvision.transforms.v2, applied to one (height, width) image at a
    time."""
    steps = _to_float()
    if aug.crop_padding:
        steps.append(v2.RandomCrop(size, padding=aug.crop_padding))
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip(p=aug.hflip))
    if aug.affine:
        steps.append(v2.RandomAffine(aug.degrees, translate=aug.translate, scale=aug.scale))
    if aug.color_jitter:
        steps.append(
            v2.ColorJitter(
                brightness=aug.brightness or None,
                contrast=aug.contrast or None,
                saturation=aug.saturation or None,
            )
        )
    steps.append(v2.Normalize(list(mean), list(std)))
    if aug.erasing:
        steps.append(v2.RandomErasing(p=aug.erasing, scale=ERASE_SCALE, ratio=ERASE_RATIO))
    return v2.Compose(steps)


def per_sample_eval_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Conversion to float and normalisation, one image at a time."""
    return v2.Compose([*_to_float(), v2.Normalize(list(mean), list(std))])
