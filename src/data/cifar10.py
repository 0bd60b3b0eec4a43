"""CIFAR-10 through torchvision: a seeded 45k/5k train/val split (or a fold of a stratified K-fold
split of the 50k) and the 10k test set."""

from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from src.core.errors import ConfigError
from src.data.in_memory import InMemoryDataModule
from src.data.splits import fold_indices, random_split

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def as_tensors(dataset: CIFAR10) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of a torchvision CIFAR10 (N, 32, 32, 3 uint8) as (N, 3, 32, 32) and its labels."""
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(dataset.targets, dtype=torch.long)


class CIFAR10DataModule(InMemoryDataModule):
    """CIFAR-10 from `data_dir/cifar-10-batches-py`, downloaded there first when allowed; held in
    memory as uint8 tensors (150 MB for the training set)."""

    def __init__(
        self, data_dir: str, download: bool = True, val_size: int = 5000, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < val_size < 50000:
            raise ConfigError(f"data.val_size must lie in (0, 50000), got {val_size}")
        self.data_dir = Path(data_dir)
        self.download = download
        self.val_size = val_size
        if not download and not (self.data_dir / CIFAR10.base_folder).is_dir():
            raise ConfigError(
                f"CIFAR-10 is missing: {self.data_dir / CIFAR10.base_folder} does not exist: set "
                f"data.download=true, or extract {ARCHIVE_URL} into {self.data_dir}"
            )

    def _load(self, train: bool, download: bool = False) -> CIFAR10:
        folder = self.data_dir / CIFAR10.base_folder
        try:
            return CIFAR10(str(self.data_dir), train=train, download=download)
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(
                f"CIFAR-10 is not in {folder} and could not be downloaded ({reason}): download "
                f"{ARCHIVE_URL} and extract it into {self.data_dir}, or set data.data_dir"
            ) from exc
        except RuntimeError as exc:
            hint = "" if self.download else "set data.download=true, or "
            raise ConfigError(
                f"CIFAR-10 is missing or corrupted in {folder}: {hint}extract {ARCHIVE_URL} "
                f"into {self.data_dir}"
            ) from exc

    def prepare_data(self) -> None:
        """Download once (on one process) if the files are not there yet."""
        if self.download:
            self._load(train=True, download=True)
            self._load(train=False, download=True)

    def load_splits(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        train_full = self._load(train=True)
        if train_full.classes != self.class_names:
            raise ConfigError(f"data.class_names must be CIFAR-10's {train_full.classes}")
        if self.val_size >= len(train_full):
            raise ConfigError(
                f"data.val_size={self.val_size} leaves no training images out of {len(train_full)}"
            )
        images, labels = as_tensors(train_full)
        if self.num_folds is not None:  # val: fold `fold` of the 50k training images
            pool = np.arange(len(train_full))
            folds = (self.num_folds, self.fold)
            train_idx, val_idx = fold_indices(pool, labels.numpy(), *folds, self.split_seed)
        else:
            train_idx, val_idx = random_split(len(train_full), self.val_size, self.split_seed)
        return {
            "train": (images[train_idx], labels[train_idx]),
            "val": (images[val_idx], labels[val_idx]),
            "test": as_tensors(self._load(train=False)),
        }

    def train_targets(self) -> torch.Tensor:
        """Labels of the training split: from memory once set up, else read from the files."""
        if self.train_set is None:
            return self.load_splits()["train"][1]
        # the batched pipeline's tensor data set, or the per_sample pipeline's wrapper of it
        return getattr(self.train_set, "source", self.train_set).targets
