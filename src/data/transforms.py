"""Build torchvision.transforms.v2 pipelines from config lists, and the evaluation transform of a
run's data config (what predict applies to image files)."""

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import instantiate
from torch import nn
from torchvision.transforms import v2

from src.core.errors import ConfigError
from src.data.augmentation import per_sample_eval_transform


def build_transforms(steps: Sequence[Any] | None) -> v2.Compose:
    """Compose transforms given as objects or as Hydra configs with a `_target_`."""
    built: list[nn.Module] = [instantiate(s) if isinstance(s, Mapping) else s for s in steps or []]
    return v2.Compose(built or [v2.Identity()])


def fit_to_square_transform(size: int) -> v2.Compose:
    """Resize (antialiased) so the shorter side is `size`, then cut a centred square: as
    src/data/images.py's fit_to_square, one image (tensor or PIL, made a tensor) at a time."""
    return v2.Compose([v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])


def image_eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """An image of any size as the network sees it in evaluation: fitted to a size x size square,
    converted to float and normalised."""
    return v2.Compose([fit_to_square_transform(size), per_sample_eval_transform(mean, std)])


def eval_transform_of(data: Mapping[str, Any]) -> v2.Compose:
    """The per-image evaluation transform of a data config (a run's, as its checkpoint keeps it,
    checked against the allow-list by src/models/checkpoint.py's read_checkpoint before this):
    its `eval_transforms` list (older image-folder runs); else, with an `image_size`, the image
    fitted to that square, converted and normalised by `mean` and `std`; else only the last two
    (data sets whose images all have the training size)."""
    if data.get("eval_transforms") is not None:
        return build_transforms(data["eval_transforms"])
    size = data.get("image_size")
    if size is None:
        return per_sample_eval_transform(data["mean"], data["std"])
    if size == "auto":  # runs record the size they found (src/train.py); older ones did not
        raise ConfigError(
            "the checkpoint's data.image_size is auto, not the size it trained at (its training "
            "log says `data.image_size=auto: <size>`): pass image_size=<that size>"
        )
    return image_eval_transform(int(size), data["mean"], data["std"])
