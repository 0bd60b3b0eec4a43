"""Images in class folders, or listed with their labels in a CSV/JSON file, as a DataModule.

Multi-class: `root/<class>/**/<image>` (split by seeded stratified fractions) or a pre-split
`root/{train,val,test}/<class>/`. Multi-label: a labels file with `path` and `labels` (and optional
`split`) columns, its paths relative to its own folder. Everything is listed, and by default
decoded, when the module is built, so the classes are known before the model is and bad input
stops the run before training starts; what decoding found is kept in a manifest, so a later build
decodes only new or changed files.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from torchvision import tv_tensors

from src.cli.errors import ConfigError
from src.data.base import ClassificationDataModule, TransformedDataset, check_split_fractions
from src.data.image_checks import find_problems
from src.data.images import IMAGE_EXTENSIONS, is_hidden, list_images, read_rgb_image
from src.data.labels_file import SPLITS, Sample, scan_labels_file
from src.data.manifest import manifest_file

log = logging.getLogger(__name__)


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
    strata: np.ndarray | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    source: Path,
) -> dict[str, np.ndarray]:
    """Indices per split as the data gives them, an absent val or test split taken from train."""
    given = np.array([sample.split or "train" for sample in samples])
    parts = {name: np.flatnonzero(given == name) for name in SPLITS}
    train = parts["train"]
    take_test = len(parts["test"]) == 0
    if take_test:
        train, parts["test"] = split_off(train, strata, test_fraction, seed, "test", source)
    if len(parts["val"]) == 0:
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


class ImageFolderDataModule(ClassificationDataModule):
    """Your own images: class folders (multi-class) or a CSV/JSON labels file (either task)."""

    supported_tasks = ("multiclass", "multilabel")

    def __init__(
        self,
        root: str,
        labels_file: str | None = None,
        classes_file: str | None = None,
        task: str | None = None,
        image_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        skip_bad_images: bool = False,
        verify_images: bool = True,
        manifest_dir: str | None = None,
        hflip: float = 0.5,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        check_split_fractions(val_fraction, test_fraction)
        root_dir = Path(root)
        if not root_dir.is_dir():
            raise ConfigError(f"data.root={root} is not a folder: point it at your images")
        task = task or ("multilabel" if labels_file else "multiclass")
        if labels_file:
            source = find_file(labels_file, root_dir, "data.labels_file")
            classes_path = (
                find_file(classes_file, root_dir, "data.classes_file") if classes_file else None
            )
            classes, samples = scan_labels_file(source, classes_path, task)
        elif task == "multilabel":
            raise ConfigError(
                "data.task=multilabel needs a labels file: pass data.labels_file=<a CSV or JSON "
                "with path and labels columns>"
            )
        elif classes_file:
            raise ConfigError(
                "data.classes_file is read only with data.labels_file: remove it (class "
                f"folders in data.root={root} name the classes)"
            )
        else:
            source = root_dir
            classes, samples = scan_class_folders(root_dir)
        if difference := class_difference(classes, num_classes, class_names):
            raise ConfigError(
                f"the classes in {source} differ from the checkpoint's data.num_classes/"
                f"data.class_names ({difference}): use the data the model was trained on"
            )
        super().__init__(num_classes=len(classes), class_names=classes, task=task, **kwargs)
        self.root = root_dir
        self.labels_file = labels_file
        self.image_size = image_size
        self.hflip = hflip  # read only by the transforms config
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        if verify_images:
            manifest = manifest_file(Path(manifest_dir), source) if manifest_dir else None
            samples = drop_unreadable(samples, skip_bad_images, source, manifest)
        if not samples:
            raise ConfigError(f"no readable images left in {source}: add or fix images")
        self.paths = [sample.path for sample in samples]
        self.targets = make_targets(samples, task, len(classes))
        strata = self.targets.numpy() if task == "multiclass" else None
        self.splits = split_indices(
            samples, strata, val_fraction, test_fraction, self.split_seed, source
        )

    def train_targets(self) -> torch.Tensor:
        """Targets of the training split, (N,) indices or (N, C) multi-hot."""
        return self.targets[torch.as_tensor(self.splits["train"])]

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.train_set is not None:
            return
        source = ImageFileDataset(self.paths, self.targets)
        self.train_set = TransformedDataset(
            source, self.train_transform, self.splits["train"].tolist()
        )
        self.val_set = TransformedDataset(source, self.eval_transform, self.splits["val"].tolist())
        self.test_set = TransformedDataset(
            source, self.eval_transform, self.splits["test"].tolist()
        )
