"""The shared base for classification DataModules: loaders, splits, batch size per process."""

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from src.core.errors import ConfigError
from src.data.augmentation import check_statistics, parse_augmentation
from src.data.batch_mixing import mix_batch
from src.data.sampling import BalancedSampler, check_sampler
from src.data.splits import check_folds
from src.data.transforms import build_transforms


def cpu_count() -> int:
    """The CPUs this job may use: SLURM's allocation when under SLURM, else this process's."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        return os.cpu_count() or 1


def augmentation_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for one epoch of one process, well apart from its neighbours'."""
    return int(np.random.SeedSequence([seed % 2**63, epoch, rank]).generate_state(1)[0])


def is_float_pair(batch: Any) -> bool:
    """Whether `batch` is (float images, targets), as the training loaders yield after transfer."""
    return (
        isinstance(batch, list | tuple)
        and len(batch) == 2
        and isinstance(batch[0], torch.Tensor)
        and batch[0].is_floating_point()
    )


class TransformedDataset(Dataset):
    """Apply a transform to the images of another data set, optionally restricted to indices."""

    def __init__(
        self,
        source: Dataset,
        transform: Callable | None,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.source = source
        self.transform = transform
        self.indices = list(indices) if indices is not None else None

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.source)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        image, target = self.source[self.indices[i] if self.indices is not None else i]
        return (self.transform(image) if self.transform else image), target


class ClassificationDataModule(L.LightningDataModule):
    """Loader settings, transforms and the task description shared by every data set.

    Subclasses set `train_set`, `val_set` and `test_set` in `setup` and describe the task with
    `task`, `num_classes` and `class_names`; the model reads those through the config. Multi-class
    and binary targets are class indices (binary: 1 the positive class); multi-label targets are
    float multi-hot vectors of num_classes.

    `augment` describes the training augmentation (`Augmentation`'s fields,
    src/data/augmentation.py) and `mean`/`std` the normalisation after it; subclasses apply them,
    and `on_after_batch_transfer` mixes the training batches (MixUp/CutMix) for every data set.
    """

    supported_tasks: tuple[str, ...] = ("multiclass",)
    # whether mean/std may be "auto": computed from the training split (use_statistics)
    computes_statistics = False
    # channels of the images (3: RGB); an image folder may be grey-scale (1)
    channels = 3

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str],
        batch_size: int = 64,
        num_workers: int | str = 0,
        pin_memory: bool | str = False,
        persistent_workers: bool = False,
        drop_last: bool = False,
        sampler: str | None = None,
        split_seed: int = 42,
        num_folds: int | None = None,
        fold: int = 0,
        train_transforms: Sequence[Any] | None = None,
        eval_transforms: Sequence[Any] | None = None,
        task: str = "multiclass",
        augment: Mapping[str, Any] | None = None,
        mean: Sequence[float] | str = (0.5, 0.5, 0.5),
        std: Sequence[float] | str = (0.5, 0.5, 0.5),
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size must be a positive integer, got {batch_size!r}")
        if num_workers != "auto" and not (isinstance(num_workers, int) and num_workers >= 0):
            raise ConfigError(f"data.num_workers must be auto or 0 or more, got {num_workers!r}")
        if pin_memory not in ("auto", True, False):
            raise ConfigError(f"data.pin_memory must be auto, true or false, got {pin_memory!r}")
        if len(class_names) != num_classes:
            raise ConfigError(
                f"data.class_names has {len(class_names)} names but data.num_classes is "
                f"{num_classes}: make them agree"
            )
        if task not in self.supported_tasks:
            choices = " or ".join(self.supported_tasks)
            raise ConfigError(f"data.task={task!r} does not fit this data set: use {choices}")
        if task == "binary" and num_classes != 2:
            raise ConfigError(
                f"data.task=binary needs exactly two classes (the second the positive one), the "
                f"data has {num_classes} ({', '.join(map(str, class_names))}): use "
                "data.task=multiclass"
            )
        self.task = task
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.drop_last = drop_last
        # balanced: training batches drawn class-balanced (src/data/sampling.py), not shuffled
        check_sampler(sampler)
        self.sampler = sampler
        self.split_seed = split_seed
        # cross-validation: fold `fold` of a stratified num_folds-fold split of train + val is
        # the val split (src/data/splits.py); None keeps the data set's usual val split
        check_folds(num_folds, fold)
        self.num_folds, self.fold = num_folds, fold
        check_statistics(mean, std, self.channels)
        if "auto" in (mean, std) and not self.computes_statistics:
            raise ConfigError(
                f"data.mean/std=auto is computed for image folders (data=image_folder) only: "
                f"{type(self).__name__} has fixed statistics, give three numbers each (as its "
                "config does)"
            )
        self.augmentation = parse_augmentation(augment)
        self.mean: list[float] | str = mean if mean == "auto" else list(mean)
        self.std: list[float] | str = std if std == "auto" else list(std)
        if "auto" not in (mean, std):
            self.use_statistics(mean, std)
        self.train_transform = build_transforms(train_transforms)
        self.eval_transform = build_transforms(eval_transforms)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self._generator: torch.Generator | None = None
        self._generator_key: tuple[int, str] | None = None
        self._seed = 0

    def use_statistics(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Normalise with these per-channel statistics (auto's, once a subclass found them)."""
        check_statistics(mean, std, self.channels)
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def setup(self, stage: str | None = None) -> None:
        """Divide the batch size across DDP processes so the global batch stays as configured."""
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} does not divide across {world_size} "
                f"processes: use a multiple of {world_size}"
            )
        # the run's seed (seed_everything sets it before the data is set up, on every process)
        self._seed = torch.initial_seed()

    @property
    def batch_size_per_device(self) -> int:
        """`batch_size` (the global batch) over the DDP processes; derived, so a new batch_size
        (Lightning's batch-size finder sets one) takes effect in the next loaders."""
        world_size = self.trainer.world_size if self.trainer is not None else 1
        return self.batch_size // world_size

    def train_targets(self) -> torch.Tensor:
        """Targets of the training split, (N,) indices or (N, C) multi-hot, for pos_weight=auto."""
        raise NotImplementedError(f"{type(self).__name__} does not list its training targets")

    def augmentation_generator(self, device: torch.device) -> torch.Generator:
        """The generator of this epoch and process, on `device`, seeded by (seed, epoch, rank)."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        rank = self.trainer.global_rank if self.trainer is not None else 0
        key = (epoch, str(device))
        if self._generator is None or self._generator_key != key:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(augmentation_seed(self._seed, epoch, rank))
            self._generator_key = key
        return self._generator

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches of float images: MixUp or CutMix as `augment` says, until its
        mixup_off_epoch (src/data/batch_mixing.py); other batches pass as they are."""
        trainer = self.trainer
        if trainer is None or not trainer.training or not is_float_pair(batch):
            return batch  # e.g. the model summary's example input, a tensor alone
        if not self.augmentation.mixes_in_epoch(trainer.current_epoch):
            return batch
        images, targets = batch
        binary = self.task == "binary"  # its mixed targets: the share of class 1 (B,)
        rng = self.batch_rng()
        return mix_batch(images, targets, self.augmentation, self.num_classes, rng, binary)

    def batch_rng(self) -> np.random.Generator:
        """A host generator for the few numbers a training batch draws as a whole (its mixing),
        seeded by (seed, epoch, rank, batch): nothing to read from the device, and the same
        draws when a resumed run reaches the batch again."""
        trainer = self.trainer
        epoch = trainer.current_epoch if trainer is not None else 0
        rank = trainer.global_rank if trainer is not None else 0
        loop = getattr(trainer, "fit_loop", None)  # the batch's index in its epoch
        batch = loop.epoch_loop.batch_progress.current.ready if loop is not None else 0
        return np.random.default_rng([self._seed % 2**63, epoch, rank, batch])

    def worker_count(self) -> int:
        """data.num_workers, with auto: this job's CPUs shared by the processes on this machine."""
        if self.num_workers != "auto":
            return self.num_workers
        processes = self.trainer.num_devices if self.trainer is not None else 1
        return max(1, cpu_count() // max(1, processes))

    def pins_memory(self) -> bool:
        """data.pin_memory, with auto: pinned when the batches go to a CUDA GPU."""
        if self.pin_memory != "auto":
            return self.pin_memory
        return self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"

    def training_sampler(self, dataset: Dataset) -> BalancedSampler | None:
        """data.sampler=balanced: a class-balanced draw of len(dataset) samples per epoch, seeded
        by the run's seed (the same on every DDP process); None: shuffle."""
        if self.sampler is None:
            return None
        targets = self.train_targets()
        if len(targets) != len(dataset):
            raise RuntimeError(f"{len(targets)} training targets for {len(dataset)} samples")
        return BalancedSampler(targets, len(dataset), seed=torch.initial_seed())

    def evaluation_sampler(self, dataset: Dataset) -> UnrepeatedDistributedSampler | None:
        """Under DDP, validation and test: each process its own share of the images, together
        each image once (Lightning's DistributedSampler would repeat a few to even out the
        shares, and the metrics, synced over the processes, would count those twice); None
        (Lightning's choice) for one process, or fewer images than processes."""
        trainer = self.trainer
        kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
        if not kwargs or kwargs["num_replicas"] < 2 or len(dataset) < kwargs["num_replicas"]:
            return None
        return UnrepeatedDistributedSampler(dataset, shuffle=False, **kwargs)

    def _loader_settings(self, dataset: Dataset, train: bool) -> dict[str, Any]:
        workers = self.worker_count()
        sampler = self.training_sampler(dataset) if train else self.evaluation_sampler(dataset)
        return {
            "batch_size": self.batch_size_per_device,
            "shuffle": train and sampler is None,
            "sampler": sampler,
            "drop_last": self.drop_last and train,
            "num_workers": workers,
            "pin_memory": self.pins_memory(),
            "persistent_workers": self.persistent_workers and workers > 0,
        }

    def _loader(self, dataset: Dataset | None, train: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        return DataLoader(dataset, **self._loader_settings(dataset, train))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)
