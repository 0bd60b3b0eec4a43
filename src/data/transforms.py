"""Build torchvision.transforms.v2 pipelines from config lists."""

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import instantiate
from torch import nn
from torchvision.transforms import v2

from src.data.augmentation import per_sample_eval_transform


def build_transforms(steps: Sequence[Any] | None) -> v2.Compose:
    """Compose transforms given as objects or as Hydra configs with a `_target_`."""
    built: list[nn.Module] = [instantiate(s) if isinstance(s, Mapping) else s for s in steps or []]
    return v2.Compose(built or [v2.Identity()])


def eval_transform_of(data: Mapping[str, Any]) -> v2.Compose:
    """The per-image evaluation transform of a data config (a run's, as its checkpoint keeps it):
    its `eval_transforms` list, or else conversion and normalisation by its `mean` and `std`."""
    if data.get("eval_transforms") is not None:
        return build_transforms(data["eval_transforms"])
    return per_sample_eval_transform(data["mean"], data["std"])
