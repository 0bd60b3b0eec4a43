"""Multi-label digits: 32x32 canvases of a 2x2 grid, each cell empty or holding a real digit."""

from typing import Any

import numpy as np
import torch

from src.core.errors import ConfigError
from src.data.digits import load_digit_images
from src.data.in_memory import InMemoryDataModule
from src.data.splits import stratified_split

CELL = 16  # each of the 2x2 cells holds one 16x16 digit


def make_canvases(
    digits: torch.Tensor, labels: torch.Tensor, count: int, fill: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` canvases (N, 3, 32, 32) uint8 and their multi-hot targets (N, 10): each cell holds a
    digit drawn from `digits` with probability `fill`, else stays empty."""
    occupied = torch.from_numpy(rng.random((count, 4)) < fill)
    drawn = torch.from_numpy(rng.integers(0, len(digits), (count, 4)))
    canvases = torch.zeros(count, 3, 2 * CELL, 2 * CELL, dtype=torch.uint8)
    targets = torch.zeros(count, 10)
    for cell in range(4):
        row, col = divmod(cell, 2)
        filled = occupied[:, cell].nonzero().squeeze(1)
        chosen = drawn[filled, cell]
        region = (slice(row * CELL, (row + 1) * CELL), slice(col * CELL, (col + 1) * CELL))
        canvases[filled, :, region[0], region[1]] = digits[chosen]
        targets[filled, labels[chosen]] = 1.0
    return canvases, targets


class DigitsMultilabelDataModule(InMemoryDataModule):
    """Canvases of scikit-learn's digits; the target is the set of digits present (10 labels).

    The digit images are first split (stratified, seeded) into train/val/test pools, and each
    split's canvases are drawn only from its own pool, so no digit image appears in two splits.
    Everything is seeded by `split_seed`: the same settings give the same canvases anywhere.
    With `num_folds`, the train and val digit images are fold `fold` of a stratified K-fold split
    of the usual train + val digit images; the test canvases stay the same.
    """

    supported_tasks = ("multilabel",)

    def __init__(
        self,
        train_size: int = 6000,
        val_size: int = 1000,
        test_size: int = 1000,
        fill_probability: float = 0.6,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < fill_probability <= 1:
            raise ConfigError(f"data.fill_probability must lie in (0, 1], got {fill_probability}")
        if min(train_size, val_size, test_size) < 1:
            raise ConfigError("data.train_size, data.val_size and data.test_size must be positive")
        self.sizes = (train_size, val_size, test_size)
        self.fill_probability = fill_probability
        self.fractions = (val_fraction, test_fraction)
        self._canvases: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def canvases(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(images, targets) of the train, val and test splits, made once."""
        if self._canvases is not None:
            return self._canvases
        digits, labels = load_digit_images(CELL)

        def draw(pools: tuple[np.ndarray, ...], rng: np.random.Generator) -> list[Any]:
            return [
                make_canvases(digits[pool], labels[pool], size, self.fill_probability, rng)
                for pool, size in zip(pools, self.sizes, strict=False)
            ]

        pools = stratified_split(labels.numpy(), self.fractions, self.split_seed)
        self._canvases = draw(pools, np.random.default_rng(self.split_seed))
        if self.num_folds is not None:
            # The test canvases stay those above. Train and val canvases are drawn from the
            # fold's digit images (folds stratified by digit), so no digit is in both.
            folds = (self.num_folds, self.fold)
            pools = stratified_split(labels.numpy(), self.fractions, self.split_seed, folds)
            rng = np.random.default_rng([self.split_seed, *folds])
            self._canvases[:2] = draw(pools[:2], rng)
        return self._canvases

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return dict(zip(("train", "val", "test"), self.canvases(), strict=True))

    def train_targets(self) -> torch.Tensor:
        return self.canvases()[0][1]
