"""Images in class folders, or listed with their labels in a CSV/JSON file, as a DataModule.

Multi-class: `root/<class>/**/<image>` (split by seeded stratified fractions) or a pre-split
`root/{train,val,test}/<class>/`; binary (data.task=binary): the same with exactly two classes,
the second (by sorted name, or the classes file's order) the positive one. Multi-label: a labels
file with `path` and `labels` (and optional `split`) columns, its paths relative to its own
folder. Everything is listed, and by default
decoded, when the module is built, so the classes are known before the model is and bad input
stops the run before training starts; what decoding found is kept in a manifest, so a later build
decodes only new or changed files.

Every image is seen as a square of `image_size` (shorter side resized, centre cropped). Folders
whose decoded squares fit `in_memory_max_mb` are decoded once into uint8 tensors and trained on
the batched pipeline of src/data/in_memory.py; larger ones stream from the files, image by image.
"""

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from src.core.errors import ConfigError
from src.data.augmentation import per_sample_train_transform
from src.data.base import ClassificationDataModule, TransformedDataset
from src.data.image_sources import class_difference, drop_unreadable, make_targets, scan_source
from src.data.images import auto_channels, auto_image_size, read_image
from src.data.in_memory import InMemoryDataModule
from src.data.manifest import manifest_file
from src.data.splits import check_split_fractions, split_indices
from src.data.squares import load_squares, megabytes_in_memory, square_batches
from src.data.statistics import fill_in_auto, statistics_file, training_statistics
from src.data.transforms import fit_to_square_transform, image_eval_transform

log = logging.getLogger(__name__)
PIPELINES = ("auto", "batched", "per_sample")


class ImageFileDataset(Dataset):
    """Image files read as uint8 tensors (channels, H, W), each with its class index or
    multi-hot target."""

    def __init__(self, paths: Sequence[Path], targets: torch.Tensor, channels: int = 3) -> None:
        self.paths = [str(path) for path in paths]
        self.targets = targets
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[tv_tensors.Image, Any]:
        target = self.targets[i]
        return read_image(self.paths[i], self.channels), (
            int(target) if target.ndim == 0 else target
        )


def check_image_size(image_size: Any) -> None:
    """Refuse an image_size that is neither auto nor a positive whole number of pixels."""
    if image_size != "auto" and not (
        isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > 0
    ):
        raise ConfigError(
            f"data.image_size={image_size} is not valid: use auto (the images' median shorter "
            "side, at most 64) or a number of pixels such as 32 or 224"
        )


class ImageFolderDataModule(InMemoryDataModule):
    """Your own images: class folders (multi-class, binary) or a CSV/JSON labels file (any task).

    Args:
        image_size: the side of the square each image is resized (shorter side) and centre
            cropped to; "auto": the images' median shorter side, at most 64.
        channels: 1 (grey-scale) or 3 (RGB), how the images are decoded and trained; "auto": 1
            when every image file is grey-scale, else 3.
        pipeline: "batched" (decoded once into memory, augmented in whole batches on the device),
            "per_sample" (read from the files and transformed image by image in the DataLoader),
            or "auto": batched when the decoded images fit `in_memory_max_mb`.
        in_memory_max_mb: the most memory (MiB) the decoded images may take for pipeline=auto to
            hold them.
        train_transforms, eval_transforms: torchvision transform lists instead of `augment`
            (per_sample only).
        mean, std (of the base class): either may be "auto": the training split's.
    """

    supported_tasks = ("multiclass", "binary", "multilabel")
    computes_statistics = True  # mean/std=auto: the training split's (src/data/statistics.py)

    def __init__(
        self,
        root: str,
        labels_file: str | None = None,
        classes_file: str | None = None,
        task: str | None = None,
        image_size: int | str = "auto",
        channels: int | str = "auto",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        skip_bad_images: bool = False,
        verify_images: bool = True,
        manifest_dir: str | None = None,
        pipeline: str = "auto",
        in_memory_max_mb: float = 2048,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        train_transforms: Sequence[Any] | None = None,
        eval_transforms: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_split_fractions(val_fraction, test_fraction)
        check_image_size(image_size)
        if channels not in ("auto", 1, 3):
            raise ConfigError(f"data.channels={channels} is not valid: use auto, 1 or 3")
        if pipeline not in PIPELINES:
            raise ConfigError(
                f"data.pipeline={pipeline} is not known: use auto, batched or per_sample"
            )
        root_dir = Path(root)
        source, task, classes, samples = scan_source(root_dir, labels_file, classes_file, task)
        if difference := class_difference(classes, num_classes, class_names):
            raise ConfigError(
                f"the classes in {source} differ from the checkpoint's data.num_classes/"
                f"data.class_names ({difference}): use the data the model was trained on"
            )
        if verify_images:
            manifest = manifest_file(Path(manifest_dir), source) if manifest_dir else None
            samples = drop_unreadable(samples, skip_bad_images, source, manifest)
        if not samples:
            raise ConfigError(f"no readable images left in {source}: add or fix images")
        self.paths = [sample.path for sample in samples]
        if image_size == "auto":
            image_size = auto_image_size(self.paths)
            log.info("data.image_size=auto: %d, the images' median shorter side", image_size)
        self.image_size = image_size
        self.channels = auto_channels(self.paths) if channels == "auto" else channels
        lists = train_transforms is not None or eval_transforms is not None
        if pipeline == "auto":
            need = megabytes_in_memory(len(self.paths), image_size, self.channels)
            fits = need <= in_memory_max_mb
            pipeline = "batched" if fits and not lists else "per_sample"
        super().__init__(
            num_classes=len(classes),
            class_names=classes,
            task=task,
            pipeline=pipeline,
            train_transforms=train_transforms,
            eval_transforms=eval_transforms,
            **kwargs,
        )
        self.root = root_dir
        self.labels_file = labels_file
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.targets = make_targets(samples, task, len(classes))
        folds = None if self.num_folds is None else (self.num_folds, self.fold)
        self.splits = split_indices(
            samples,
            self.targets.numpy(),
            val_fraction,
            test_fraction,
            self.split_seed,
            source,
            folds,
        )
        self._squares: Tensor | None = None  # every image, when decoded early for statistics
        if "auto" in (self.mean, self.std):
            self._find_statistics(source, Path(manifest_dir) if manifest_dir else None)

    def _find_statistics(self, source: Path, manifest_dir: Path | None) -> None:
        """data.mean/std=auto: the training split's per-channel statistics, as the network sees
        the images (fitted to the square), remembered beside the manifest."""
        train = torch.as_tensor(self.splits["train"])
        paths = [self.paths[i] for i in train.tolist()]

        def batches() -> Iterator[Tensor]:
            if self.pipeline != "batched":
                return square_batches(paths, self.image_size, self.channels)
            self._squares = self.decode_all()  # decoded once: load_splits takes them
            return (self._squares[chunk] for chunk in train.split(256))

        settings = ("val_fraction", "test_fraction", "split_seed", "num_folds", "fold", "channels")
        remembered = statistics_file(manifest_dir, source) if manifest_dir else None
        found, how = training_statistics(
            paths,
            self.image_size,
            {name: getattr(self, name) for name in settings},
            remembered,
            source,
            batches,
        )
        mean, std = fill_in_auto(self.mean, self.std, found, source)
        size = self.image_size
        log.info(
            f"data.mean/std=auto: mean {mean}, std {std}, of the {found.images} training images "
            f"at {size}x{size} ({how})"
        )
        self.use_statistics(mean, std)

    def train_targets(self) -> torch.Tensor:
        """Targets of the training split, (N,) indices or (N, C) multi-hot."""
        return self.targets[torch.as_tensor(self.splits["train"])]

    def decode_all(self) -> Tensor:
        """Every image decoded into a uint8 square (N, channels, size, size)."""
        start = time.perf_counter()
        images = load_squares(self.paths, self.image_size, self.channels)
        log.info(
            "decoded %d images into memory as %dx%d squares (%.0f MiB) in %.1f s",
            len(images),
            self.image_size,
            self.image_size,
            megabytes_in_memory(len(images), self.image_size, self.channels),
            time.perf_counter() - start,
        )
        return images

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Every image decoded once into uint8 squares, divided into the splits."""
        images = self._squares if self._squares is not None else self.decode_all()
        self._squares = None
        return {
            name: (images[torch.as_tensor(index)], self.targets[torch.as_tensor(index)])
            for name, index in self.splits.items()
        }

    def setup(self, stage: str | None = None) -> None:
        if self.pipeline == "batched":
            super().setup(stage)  # the splits held in memory, from load_splits
            return
        ClassificationDataModule.setup(self, stage)
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = self.file_sets()

    def file_sets(self) -> tuple[Dataset, Dataset, Dataset]:
        """The splits read from the files and transformed image by image: fitted to the square
        and augmented as `augment` says, or by the configured transform lists."""
        if self._transform_lists:
            train, evaluate = self.train_transform, self.eval_transform
        else:
            size = self.image_size
            augment = per_sample_train_transform(
                self.augmentation, self.mean, self.std, (size, size)
            )
            train = v2.Compose([fit_to_square_transform(size), augment])
            evaluate = image_eval_transform(size, self.mean, self.std)
        source = ImageFileDataset(self.paths, self.targets, self.channels)
        train_set = TransformedDataset(source, train, self.splits["train"].tolist())
        val_set = TransformedDataset(source, evaluate, self.splits["val"].tolist())
        return (
            train_set,
            val_set,
            TransformedDataset(source, evaluate, self.splits["test"].tolist()),
        )
