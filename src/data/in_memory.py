"""Data sets that fit in memory: each split held once as a uint8 tensor, in one of two pipelines.

batched (the default): a batch is one index gather of uint8 images; they travel to the training
    device as they are, and `on_after_batch_transfer` augments and normalises the whole batch there
    (src/data/batch_augment.py), drawing every image's parameters from a generator seeded by
    (seed, epoch, rank), so a resumed run draws what an uninterrupted one would.
per_sample: torchvision transforms image by image in the DataLoader, built from the same
    `data.augment` (src/data/augmentation.py).
Either way, training batches are then mixed (MixUp/CutMix) on the device, their few numbers drawn
on the host (ClassificationDataModule.on_after_batch_transfer).
"""

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from src.core.errors import ConfigError
from src.data.augmentation import per_sample_eval_transform, per_sample_train_transform
from src.data.base import (  # noqa: F401  (augmentation_seed: imported from here, too)
    ClassificationDataModule,
    TransformedDataset,
    augmentation_seed,
)
from src.data.batch_augment import BatchAugmentation

PIPELINES = ("batched", "per_sample")


class TensorImageDataset(Dataset):
    """Images held in one uint8 tensor (N, 3, H, W) with their targets: an integer class for (N,)
    targets, a float multi-hot vector for (N, C) targets.

    `dataset[i]` is one (tv_tensors.Image, target) pair, for per-sample transforms;
    `dataset.__getitems__(indices)` is a whole batch in one gather, (uint8 images, targets).
    """

    def __init__(self, images: Tensor, targets: Tensor) -> None:
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        target = self.targets[i]
        return tv_tensors.Image(self.images[i]), int(target) if target.ndim == 0 else target

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices)
        return self.images[index], self.targets[index]


def whole_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The DataLoader's collate_fn for batches that `__getitems__` already made."""
    return batch


def is_uint8_pair(batch: Any) -> bool:
    """Whether `batch` is (uint8 images, targets), as the batched pipeline's loaders yield."""
    return (
        isinstance(batch, list | tuple)
        and len(batch) == 2
        and isinstance(batch[0], Tensor)
        and batch[0].dtype == torch.uint8
    )


class InMemoryDataModule(ClassificationDataModule):
    """Subclasses fill `splits` in `load_splits`: {"train"|"val"|"test": (uint8 images, targets)}.

    Args:
        pipeline: "batched" or "per_sample" (see the module's docstring).
        train_transforms, eval_transforms: torchvision transform lists instead (per_sample only);
            checkpoints written before `augment` existed carry these.
    """

    def __init__(
        self,
        pipeline: str | None = None,
        train_transforms: Sequence[Any] | None = None,
        eval_transforms: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        lists = train_transforms is not None or eval_transforms is not None
        pipeline = pipeline or ("per_sample" if lists else "batched")
        if pipeline not in PIPELINES:
            raise ConfigError(f"data.pipeline={pipeline} is not known: use batched or per_sample")
        if lists and pipeline == "batched":
            raise ConfigError(
                "data.train_transforms/eval_transforms are applied per image: set "
                "data.pipeline=per_sample, or describe the augmentation in data.augment"
            )
        super().__init__(
            train_transforms=train_transforms, eval_transforms=eval_transforms, **kwargs
        )
        self.pipeline = pipeline
        self._transform_lists = lists

    def use_statistics(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Normalise with these statistics, on the batched pipeline's device too."""
        super().use_statistics(mean, std)
        self.on_device = BatchAugmentation(self.augmentation, self.mean, self.std)

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """(uint8 images (N, 3, H, W), targets) of the train, val and test splits."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.train_set is not None:
            return
        splits = {name: TensorImageDataset(*split) for name, split in self.load_splits().items()}
        if self.pipeline == "batched":
            self.train_set, self.val_set, self.test_set = (
                splits["train"],
                splits["val"],
                splits["test"],
            )
            return
        if self._transform_lists:
            train, evaluate = self.train_transform, self.eval_transform
        else:
            size = tuple(splits["train"].images.shape[-2:])
            train = per_sample_train_transform(self.augmentation, self.mean, self.std, size)
            evaluate = per_sample_eval_transform(self.mean, self.std)
        self.train_set = TransformedDataset(splits["train"], train)
        self.val_set = TransformedDataset(splits["val"], evaluate)
        self.test_set = TransformedDataset(splits["test"], evaluate)

    def worker_count(self) -> int:
        """auto: no worker processes for the batched pipeline (a gather from memory)."""
        if self.num_workers == "auto" and self.pipeline == "batched":
            return 0
        return super().worker_count()

    def _loader_settings(self, dataset: Dataset, train: bool) -> dict[str, Any]:
        if self.pipeline != "batched":
            return super()._loader_settings(dataset, train)
        # a gather from memory needs no worker processes, so Lightning's advice to add some is
        # beside the point here
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        return {**super()._loader_settings(dataset, train), "collate_fn": whole_batch}

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """On the batched pipeline: augment (training) or only normalise the uint8 images; then,
        in either pipeline, mix training batches (the base class)."""
        if self.pipeline == "batched" and is_uint8_pair(batch):
            images, targets = batch
            if self.trainer is not None and self.trainer.training:
                images = self.on_device(images, self.augmentation_generator(images.device))
            else:
                images = self.on_device.normalize(images)
            batch = images, targets
        return super().on_after_batch_transfer(batch, dataloader_idx)
