"""Labels files: CSV or JSON lists of images with their labels, and the classes file."""

import csv
import json
import re
from pathlib import Path
from typing import NamedTuple

from src.core.errors import ConfigError

SPLITS = ("train", "val", "test")
LABEL_SEPARATORS = re.compile(r"[;\s]+")


class Sample(NamedTuple):
    """One image: its file, its class indices and the split the data puts it in (None: any)."""

    path: Path
    labels: tuple[int, ...]
    split: str | None = None


class Row(NamedTuple):
    """One entry of a labels file, as written there."""

    where: str  # "row 3", for messages
    path: str
    labels: list[str]
    split: str | None


def parse_labels(cell: str) -> list[str]:
    """Labels in a cell separated by spaces or semicolons; an empty cell has none."""
    return [label for label in LABEL_SEPARATORS.split(cell.strip()) if label]


def read_csv_rows(file: Path) -> list[Row]:
    """The rows of a CSV labels file with `path`, `labels` and optional `split` columns."""
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            if "path" not in columns or "labels" not in columns:
                raise ConfigError(
                    f"{file} has columns {columns}: it needs a header row with 'path' and "
                    "'labels' columns (and optionally 'split')"
                )
            reader.fieldnames = columns
            split_column = "split" in columns
            return [
                Row(
                    f"row {n}",
                    (record["path"] or "").strip(),
                    parse_labels(record["labels"] or ""),
                    (record["split"] or "").strip().lower() if split_column else None,
                )
                for n, record in enumerate(reader, start=1)
            ]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file} is not a readable UTF-8 CSV file ({exc}): fix it") from exc


def read_json_rows(file: Path) -> list[Row]:
    """The entries of a JSON labels file: a list of {"path", "labels", optional "split"}."""
    try:
        items = json.loads(file.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file} is not valid JSON ({exc}): fix it") from exc
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ConfigError(
            f'{file} must hold a list of objects like {{"path": "a.jpg", "labels": ["cat"]}}'
        )
    rows = []
    for n, item in enumerate(items, start=1):
        labels = item.get("labels")
        if isinstance(labels, str):
            labels = parse_labels(labels)
        elif isinstance(labels, list):
            labels = [str(label).strip() for label in labels if str(label).strip()]
        else:
            raise ConfigError(
                f"{file} row {n} has labels {labels!r}: give a list or a string of labels "
                "(an empty list means no label)"
            )
        split = item.get("split")
        split = str(split).strip().lower() if split is not None else None
        rows.append(Row(f"row {n}", str(item.get("path") or "").strip(), labels, split))
    return rows


def read_classes_file(file: Path) -> list[str]:
    """Class names, one a line; blank lines are ignored."""
    classes = [line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines()]
    classes = [name for name in classes if name]
    if not classes:
        raise ConfigError(f"{file} lists no classes: write one class name a line")
    if len(set(classes)) < len(classes):
        twice = next(name for name in classes if classes.count(name) > 1)
        raise ConfigError(f"{file} lists the class {twice!r} twice: keep one")
    return classes


def scan_labels_file(
    file: Path, classes_file: Path | None, task: str
) -> tuple[list[str], list[Sample]]:
    """Classes and images of a CSV/JSON labels file, checked row by row."""
    rows = read_json_rows(file) if file.suffix.lower() == ".json" else read_csv_rows(file)
    if not rows:
        raise ConfigError(f"{file} lists no images: add rows with a path and labels")
    if any(row.split is not None for row in rows):
        for row in rows:
            if row.split not in SPLITS:
                raise ConfigError(
                    f"{file} {row.where} has split {row.split!r}: use train, val or test"
                )
    if classes_file is not None:
        classes = read_classes_file(classes_file)
    else:
        classes = sorted({label for row in rows for label in row.labels})
        if not classes:
            raise ConfigError(f"{file} has no labels at all: fill in its labels column")
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for row in rows:
        if not row.path:
            raise ConfigError(
                f"{file} {row.where} has an empty path: fill it in (relative to {file.parent}) "
                "or remove the row"
            )
        path = file.parent / row.path
        if not path.is_file():
            raise ConfigError(
                f"{file} {row.where}: image {path} does not exist: fix the path (relative to "
                f"{file.parent}) or remove the row"
            )
        labels = list(dict.fromkeys(row.labels))
        if unknown := [label for label in labels if label not in index]:
            raise ConfigError(
                f"{file} {row.where} has label {unknown[0]!r}, which is not in {classes_file}: "
                "add it there or fix the row"
            )
        if task != "multilabel" and not labels:
            raise ConfigError(
                f"{file} {row.where} has no label: give it one, or use data.task=multilabel"
            )
        if task != "multilabel" and len(labels) > 1:
            raise ConfigError(
                f"{file} is multi-label ({row.where} has {len(labels)} labels): "
                "use data.task=multilabel"
            )
        samples.append(Sample(path, tuple(index[label] for label in labels), row.split))
    return classes, samples
