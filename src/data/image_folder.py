"""Images in class folders, or listed with their labels in a CSV/JSON file, as a DataModule.

Multi-class: `root/<class>/**/<image>` (split by seeded stratified fractions) or a pre-split
`root/{train,val,test}/<class>/`. Multi-label: a labels file with `path` and `labels` (and optional
`split`) columns, its paths relative to its own folder. Everything is listed, and by default
decoded, when the module is built, so the classes are known before the model is and bad input
stops the run before training starts; what decoding found is kept in a manifest, so a later build
decodes only new or changed files.

Every image is seen as a square of `image_size` (shorter side resized, centre cropped). Folders
whose decoded squares fit `in_memory_max_mb` are decoded once into uint8 tensors and trained on
the batched pipeline of src/data/in_memory.py; larger ones stream from the files, image by image.
"""

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from src.core.errors import ConfigError
from src.data.augmentation import per_sample_train_transform
from src.data.base import (
    ClassificationDataModule,
    TransformedDataset,
    check_split_fractions,
    cpu_count,
)
from src.data.folds import fold_indices
from src.data.image_checks import find_problems
from src.data.images import (
    IMAGE_EXTENSIONS,
    auto_image_size,
    fit_to_square,
    is_hidden,
    list_images,
    read_rgb_image,
)
from src.data.in_memory import InMemoryDataModule
from src.data.labels_file import SPLITS, Sample, scan_labels_file
from src.data.manifest import manifest_file
from src.data.transforms import fit_to_square_transform, image_eval_transform

log = logging.getLogger(__name__)
PIPELINES = ("auto", "batched", "per_sample")
# folders of more images than this are decoded into memory by worker processes
PARALLEL_DECODING_FROM = 2000


def class_folders(folder: Path) -> list[Path]:
    """The visible subfolders of folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def scan_class_folders(root: Path) -> tuple[list[str], list[Sample]]:
    """Classes and images of `root/<class>/` or of a pre-split `root/{train,val,test}/<class>/`."""
    presplit = (root / "train").is_dir()
    layout = {split: root / split for split in SPLITS} if presplit else {None: root}
    first = root / "train" if presplit else root
    classes = [p.name for p in class_folders(first)]
    if not classes:
        raise ConfigError(
            f"data.root: {first} has no class folders: put each class's images in "
            f"{first}/<class>/, or pass data.labels_file for a labels file"
        )
    samples = []
    for split, folder in layout.items():
        if not folder.is_dir():
            continue  # an absent val or test split is taken from train
        for class_folder in class_folders(folder):
            if class_folder.name not in classes:
                raise ConfigError(
                    f"{class_folder} is not a class of {first}: add {first / class_folder.name} "
                    "with training images, or remove it"
                )
            images = list_images(class_folder)
            if not images:
                raise ConfigError(
                    f"class folder {class_folder} has no images ({' '.join(IMAGE_EXTENSIONS)}): "
                    "add images or remove the folder"
                )
            label = (classes.index(class_folder.name),)
            samples += [Sample(path, label, split) for path in images]
    return classes, samples


def find_file(value: str, root: Path, key: str) -> Path:
    """The file `value` names, as given or else relative to data.root."""
    for candidate in (Path(value), root / value):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"{key}={value} is not a file (looked as given and under data.root={root}): fix the path"
    )


def class_difference(
    found: list[str], num_classes: int | None, class_names: Sequence[str] | None
) -> str | None:
    """How the expected classes differ from the found ones, or None if they agree."""
    if num_classes is not None and num_classes != len(found):
        return f"{len(found)} classes here, {num_classes} expected"
    if class_names is None or list(class_names) == found:
        return None
    if len(class_names) != len(found):
        return f"{len(found)} classes here, {len(class_names)} expected"
    i = next(i for i, (a, b) in enumerate(zip(found, class_names, strict=True)) if a != b)
    return f"class {i} is {found[i]!r} here but {class_names[i]!r} expected"


def drop_unreadable(
    samples: list[Sample], skip: bool, source: Path, manifest: Path | None
) -> list[Sample]:
    """Decode every image not yet verified in the manifest; refuse a broken one, or skip it with
    a warning when `skip`."""
    problems = find_problems([sample.path for sample in samples], source, manifest)
    bad = [
        (sample.path, problem) for sample, problem in zip(samples, problems, strict=True) if problem
    ]
    if bad and not skip:
        path, problem = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ConfigError(
            f"{path} is not a readable image ({problem}){more}: fix or remove it, "
            "or set data.skip_bad_images=true"
        )
    for path, problem in bad:
        log.warning("skipping %s: not a readable image (%s)", path, problem)
    return [sample for sample, problem in zip(samples, problems, strict=True) if not problem]


def split_off(
    index: np.ndarray,
    strata: np.ndarray | None,
    fraction: float,
    seed: int,
    name: str,
    source: Path,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a seeded share of index off as the named split, stratified by class if possible."""
    # a count, so that 0.1 of 30 images is 3 and not sklearn's ceil(3.0000000000000004)
    size = max(1, round(fraction * len(index)))
    if strata is not None:
        try:
            rest, part = train_test_split(
                index, test_size=size, stratify=strata[index], random_state=seed
            )
            return rest, part
        except ValueError as exc:  # a class with too few images to appear in every split
            log.warning("%s: splitting off %s at random, not by class: %s", source, name, exc)
    try:
        rest, part = train_test_split(index, test_size=size, random_state=seed)
    except ValueError as exc:
        raise ConfigError(
            f"{source} has {len(index)} training images, too few to split off a {name} set: "
            f"add images, or provide the {name} images (a {name}/ folder or a split column)"
        ) from exc
    return rest, part


def split_indices(
    samples: list[Sample],
    targets: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    source: Path,
    folds: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Indices per split as the data gives them, an absent val or test split taken from train;
    with `folds` (num_folds, fold), val is that fold of the train and val images instead."""
    strata = targets if targets.ndim == 1 else None  # stratified by class when multi-class
    given = np.array([sample.split or "train" for sample in samples])
    parts = {name: np.flatnonzero(given == name) for name in SPLITS}
    train = parts["train"]
    take_test = len(parts["test"]) == 0
    if take_test:
        train, parts["test"] = split_off(train, strata, test_fraction, seed, "test", source)
    if folds is not None:
        pool = np.sort(np.concatenate([train, parts["val"]]))
        train, parts["val"] = fold_indices(pool, targets[pool], *folds, seed)
    elif len(parts["val"]) == 0:
        share = val_fraction / (1 - test_fraction) if take_test else val_fraction
        train, parts["val"] = split_off(train, strata, share, seed, "val", source)
    if len(train) == 0:
        raise ConfigError(f"{source} has no training images: add some to its train split")
    parts["train"] = train
    return parts


def make_targets(samples: list[Sample], task: str, num_classes: int) -> torch.Tensor:
    """Class indices (N,) for multiclass, float multi-hot vectors (N, C) for multilabel."""
    if task == "multiclass":
        return torch.tensor([sample.labels[0] for sample in samples], dtype=torch.long)
    targets = torch.zeros(len(samples), num_classes)
    for i, sample in enumerate(samples):
        targets[i, list(sample.labels)] = 1.0
    return targets


class ImageFileDataset(Dataset):
    """Image files read as RGB uint8 tensors (3, H, W), each with its class index or multi-hot
    target."""

    def __init__(self, paths: Sequence[Path], targets: torch.Tensor) -> None:
        self.paths = [str(path) for path in paths]
        self.targets = targets

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[tv_tensors.Image, Any]:
        target = self.targets[i]
        return read_rgb_image(self.paths[i]), (int(target) if target.ndim == 0 else target)


class SquareImageDataset(Dataset):
    """Image files as uint8 squares (3, size, size), as `fit_to_square` cuts them."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths = [str(path) for path in paths]
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tensor:
        return fit_to_square(read_rgb_image(self.paths[i]), self.size).as_subclass(Tensor)


def load_squares(paths: Sequence[Path], size: int) -> Tensor:
    """Every image as a uint8 square, in one tensor (N, 3, size, size); decoded by worker
    processes when there are many."""
    workers = min(8, cpu_count()) if len(paths) >= PARALLEL_DECODING_FROM else 0
    loader = DataLoader(
        SquareImageDataset(paths, size), batch_size=256, num_workers=workers, collate_fn=torch.stack
    )
    images = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    done = 0
    for batch in loader:
        images[done : done + len(batch)] = batch
        done += len(batch)
    return images


def megabytes_in_memory(count: int, size: int) -> float:
    """MiB that `count` RGB uint8 images of size x size take."""
    return count * 3 * size * size / 2**20


def scan_source(
    root: Path, labels_file: str | None, classes_file: str | None, task: str | None
) -> tuple[Path, str, list[str], list[Sample]]:
    """What the data names: its source (folder or labels file), task, classes and samples."""
    if not root.is_dir():
        raise ConfigError(f"data.root={root} is not a folder: point it at your images")
    task = task or ("multilabel" if labels_file else "multiclass")
    if labels_file:
        source = find_file(labels_file, root, "data.labels_file")
        classes_path = find_file(classes_file, root, "data.classes_file") if classes_file else None
        classes, samples = scan_labels_file(source, classes_path, task)
        return source, task, classes, samples
    if task == "multilabel":
        raise ConfigError(
            "data.task=multilabel needs a labels file: pass data.labels_file=<a CSV or JSON "
            "with path and labels columns>"
        )
    if classes_file:
        raise ConfigError(
            "data.classes_file is read only with data.labels_file: remove it (class "
            f"folders in data.root={root} name the classes)"
        )
    classes, samples = scan_class_folders(root)
    return root, task, classes, samples


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
    """Your own images: class folders (multi-class) or a CSV/JSON labels file (either task).

    Args:
        image_size: the side of the square each image is resized (shorter side) and centre
            cropped to; "auto": the images' median shorter side, at most 64.
        pipeline: "batched" (decoded once into memory, augmented in whole batches on the device),
            "per_sample" (read from the files and transformed image by image in the DataLoader),
            or "auto": batched when the decoded images fit `in_memory_max_mb`.
        in_memory_max_mb: the most memory (MiB) the decoded images may take for pipeline=auto to
            hold them.
        train_transforms, eval_transforms: torchvision transform lists instead of `augment`
            (per_sample only).
    """

    supported_tasks = ("multiclass", "multilabel")

    def __init__(
        self,
        root: str,
        labels_file: str | None = None,
        classes_file: str | None = None,
        task: str | None = None,
        image_size: int | str = "auto",
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
        lists = train_transforms is not None or eval_transforms is not None
        if pipeline == "auto":
            fits = megabytes_in_memory(len(self.paths), image_size) <= in_memory_max_mb
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

    def train_targets(self) -> torch.Tensor:
        """Targets of the training split, (N,) indices or (N, C) multi-hot."""
        return self.targets[torch.as_tensor(self.splits["train"])]

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Every image decoded once into uint8 squares, divided into the splits."""
        start = time.perf_counter()
        images = load_squares(self.paths, self.image_size)
        log.info(
            "decoded %d images into memory as %dx%d squares (%.0f MiB) in %.1f s",
            len(images),
            self.image_size,
            self.image_size,
            megabytes_in_memory(len(images), self.image_size),
            time.perf_counter() - start,
        )
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
        source = ImageFileDataset(self.paths, self.targets)
        train_set = TransformedDataset(source, train, self.splits["train"].tolist())
        val_set = TransformedDataset(source, evaluate, self.splits["val"].tolist())
        return (
            train_set,
            val_set,
            TransformedDataset(source, evaluate, self.splits["test"].tolist()),
        )
