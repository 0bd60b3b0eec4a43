"""scikit-learn's bundled 8x8 digits as 3x32x32 images: the default data set that runs anywhere."""

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from src.data.in_memory import InMemoryDataModule
from src.data.splits import check_split_fractions, stratified_split


def load_digit_images(image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 RGB images (N, 3, size, size) and their labels (N,)."""
    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # values 0..16
    upscaled = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear")
    images = (upscaled.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    return images.contiguous(), torch.from_numpy(digits.target).long()


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
