"""Class-balanced sampling: each training epoch draws samples with probability inversely
proportional to the frequency of their class, seeded by (seed, epoch).

Under DDP, Lightning wraps this sampler in its DistributedSamplerWrapper: every process draws the
same epoch's list (same seed, same epoch, forwarded by `set_epoch`) and takes its own share of
its positions, so the processes see different samples and every epoch a new draw.
"""

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import WeightedRandomSampler

from src.core.errors import ConfigError

SAMPLERS = ("balanced",)  # data.sampler: null (shuffle) or one of these


def check_sampler(sampler: str | None) -> None:
    """Refuse a data.sampler that is not null or balanced."""
    if sampler is not None and sampler not in SAMPLERS:
        raise ConfigError(f"data.sampler={sampler!r} is not known: use null or balanced")


def balanced_weights(targets: Tensor) -> Tensor:
    """The drawing weight of each sample: 1 / (number of samples of its class).

    Multi-class ((N,) class indices): every class is drawn equally often. Multi-label ((N, C)
    multi-hot): a sample counts as its rarest positive label (samples without a positive label
    form one group of their own), so rare labels are drawn far more often, though, as labels
    share samples, not exactly equally often.
    """
    if targets.ndim == 1:
        groups = targets.long()
    else:
        positive = targets > 0.5
        frequency = positive.sum(dim=0).float()
        # each sample's rarest positive label; len(labels) for a sample without any
        rarity = torch.where(positive, frequency, torch.inf)
        groups = torch.where(positive.any(dim=1), rarity.argmin(dim=1), targets.shape[1])
    counts = torch.bincount(groups)
    return 1.0 / counts[groups].double()


def epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed for one epoch, well apart from its neighbours'."""
    return int(np.random.SeedSequence([seed % 2**63, epoch]).generate_state(1)[0])


class BalancedSampler(WeightedRandomSampler):
    """Draw `num_samples` indices with replacement, each with probability proportional to its
    weight (see `balanced_weights`); the draw of an epoch depends only on (seed, epoch)."""

    def __init__(self, targets: Tensor, num_samples: int | None = None, seed: int = 0) -> None:
        weights = balanced_weights(targets)
        size = len(weights) if num_samples is None else num_samples
        super().__init__(weights, size, replacement=True, generator=torch.Generator())
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning (directly, or through its DDP wrapper) before each epoch."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(epoch_seed(self.seed, self.epoch))
        return super().__iter__()
