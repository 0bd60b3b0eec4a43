"""What a folder of images or a labels file holds: its source, task, classes and samples, which
of its images are readable, and their targets."""

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from src.core.errors import ConfigError
from src.data.image_checks import find_problems
from src.data.images import IMAGE_EXTENSIONS, is_hidden, list_images
from src.data.labels_file import SPLITS, Sample, scan_labels_file

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


def make_targets(samples: list[Sample], task: str, num_classes: int) -> torch.Tensor:
    """Class indices (N,) for multiclass and binary, float multi-hot vectors (N, C) for
    multilabel."""
    if task != "multilabel":
        return torch.tensor([sample.labels[0] for sample in samples], dtype=torch.long)
    targets = torch.zeros(len(samples), num_classes)
    for i, sample in enumerate(samples):
        targets[i, list(sample.labels)] = 1.0
    return targets
