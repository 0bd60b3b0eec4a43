"""scikit-learn's bundled 8x8 digits as 3x32x32 images: the default data set that runs anywhere."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from torchvision import tv_tensors

from src.data.base import ClassificationDataModule, TransformedDataset, check_split_fractions


def load_digit_images(image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 RGB images (N, 3, size, size) and their labels (N,)."""
    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # values 0..16
    upscaled = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear")
    images = (upscaled.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    return images.contiguous(), torch.from_numpy(digits.target).long()


class TensorImageDataset(Dataset):
    """Images held in one uint8 tensor, returned as tv_tensors.Image with their target: an integer
    class for (N,) targets, a float multi-hot vector for (N, C) targets."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        target = self.targets[i]
        return tv_tensors.Image(self.images[i]), int(target) if target.ndim == 0 else target


def stratified_split(
    labels: np.ndarray, fractions: Sequence[float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a seeded, stratified train/val/test split (val and test fractions given)."""
    val_fraction, test_fraction = fractions
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=test_fraction, stratify=labels, random_state=seed
    )
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1 - test_fraction),
        stratify=labels[rest],
        random_state=seed,
    )
    return train, val, test


class DigitsDataModule(ClassificationDataModule):
    """The digits as a 10-class image data set with a seeded stratified train/val/test split."""

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

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.train_set is not None:
            return
        images, labels = load_digit_images(self.image_size)
        source = TensorImageDataset(images, labels)
        train, val, test = self.split_indices()
        self.train_set = TransformedDataset(source, self.train_transform, train)
        self.val_set = TransformedDataset(source, self.eval_transform, val)
        self.test_set = TransformedDataset(source, self.eval_transform, test)

    def split_indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices into the 1,797 digits of the train, val and test splits."""
        fractions = (self.val_fraction, self.test_fraction)
        return stratified_split(load_digits().target, fractions, self.split_seed)

    def train_targets(self) -> torch.Tensor:
        return torch.from_numpy(load_digits().target[self.split_indices()[0]]).long()
