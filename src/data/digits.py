"""scikit-learn's bundled 8x8 digits as 3x32x32 images: the default data set that runs anywhere."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from src.data.base import check_split_fractions
from src.data.folds import fold_indices
from src.data.in_memory import InMemoryDataModule


def load_digit_images(image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 RGB images (N, 3, size, size) and their labels (N,)."""
    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # values 0..16
    upscaled = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear")
    images = (upscaled.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    return images.contiguous(), torch.from_numpy(digits.target).long()


def stratified_split(
    labels: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    folds: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a seeded, stratified train/val/test split (val and test fractions given); with
    `folds` (num_folds, fold) val is that fold of the rest instead of its val fraction."""
    val_fraction, test_fraction = fractions
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=test_fraction, stratify=labels, random_state=seed
    )
    if folds is not None:
        return *fold_indices(rest, labels[rest], *folds, seed), test
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1 - test_fraction),
        stratify=labels[rest],
        random_state=seed,
    )
    return train, val, test


class DigitsDataModule(InMemoryDataModule):
    """The digits as a 10-class image data set with a seeded stratified train/val/test split;
    with `num_folds`, val is fold `fold` of the train + val images (the test split stays)."""

    def __init__(
        self,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        image_size: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_split_fractions(val_fraction, test_fraction)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.image_size = image_size

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        images, labels = load_digit_images(self.image_size)
        parts = zip(("train", "val", "test"), self.split_indices(), strict=True)
        return {name: (images[index], labels[index]) for name, index in parts}

    def split_indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices into the 1,797 digits of the train, val and test splits."""
        fractions = (self.val_fraction, self.test_fraction)
        folds = None if self.num_folds is None else (self.num_folds, self.fold)
        return stratified_split(load_digits().target, fractions, self.split_seed, folds)

    def train_targets(self) -> torch.Tensor:
        return torch.from_numpy(load_digits().target[self.split_indices()[0]]).long()
