"""Build torchvision.transforms.v2 pipelines from config lists."""

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import instantiate
from torch import nn
from torchvision.transforms import v2


def build_transforms(steps: Sequence[Any] | None) -> v2.Compose:
    """Compose transforms given as objects or as Hydra configs with a `_target_`."""
    built: list[nn.Module] = [instantiate(s) if isinstance(s, Mapping) else s for s in steps or []]
    return v2.Compose(built or [v2.Identity()])
