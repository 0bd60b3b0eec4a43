"""Every split of a data set, seeded by data.split_seed (never the run's seed).

- `stratified_split`: train/val/test of an in-memory data set (the digits, multi-label digits);
- `split_indices`: an image folder's splits, as its files give them, absent ones split off;
- `random_split`: CIFAR-10's validation images, drawn from its training images;
- `fold_indices`: with data.num_folds, val is one fold of a stratified K-fold split of the
  training pool instead (cross-validation).

Multi-class targets (class indices) are split by scikit-learn's StratifiedKFold; multi-label
targets (multi-hot rows) by iterative stratification (Sechidis, Tsoumakas and Vlahavas, "On the
stratification of multi-label data", ECML PKDD 2011), which keeps every label's share of positives
close to 1/K in each fold, rarest labels first.
"""

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

from src.core.errors import ConfigError
from src.data.labels_file import SPLITS, Sample

log = logging.getLogger(__name__)


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Refuse val/test shares that are not each in (0, 1) with a sum below 1."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            "data.val_fraction and data.test_fraction must each lie in (0, 1) with a sum "
            f"below 1, got {val_fraction} and {test_fraction}"
        )


def split_off(
    index: np.ndarray,
    size: int,
    seed: int,
    strata: np.ndarray | None = None,
    name: str = "val",
    source: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, part): `size` items of `index` split off at random, stratified by `strata[index]`
    (the class of each item of the data set) when given and every class allows it, else at
    random with a warning; too few items is a ConfigError naming `source`."""
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


def stratified_split(
    labels: np.ndarray,
    fractions: Sequence[float],
    seed: int,
    folds: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of a seeded train/val/test split stratified by `labels` (val and test fractions
    given, each count rounded up as scikit-learn's train_test_split rounds a fraction); with
    `folds` (num_folds, fold) val is that fold of the rest instead of its val fraction."""
    val_fraction, test_fraction = fractions
    index = np.arange(len(labels))
    rest, test = split_off(index, math.ceil(test_fraction * len(index)), seed, labels, "test")
    if folds is not None:
        return *fold_indices(rest, labels[rest], *folds, seed), test
    share = val_fraction / (1 - test_fraction)
    train, val = split_off(rest, math.ceil(share * len(rest)), seed, labels)
    return train, val, test


def split_indices(
    samples: list[Sample],
    targets: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    source: Path,
    folds: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """An image folder's indices per split as the data gives them, an absent val or test split
    split off from train (stratified by class when multi-class; its count the nearest whole
    number, so 0.1 of 30 images is 3); with `folds` (num_folds, fold), val is that fold of the
    train and val images instead."""
    strata = targets if targets.ndim == 1 else None

    def count(fraction: float, index: np.ndarray) -> int:
        return max(1, round(fraction * len(index)))

    given = np.array([sample.split or "train" for sample in samples])
    parts = {name: np.flatnonzero(given == name) for name in SPLITS}
    train = parts["train"]
    take_test = len(parts["test"]) == 0
    if take_test:
        size = count(test_fraction, train)
        train, parts["test"] = split_off(train, size, seed, strata, "test", source)
    if folds is not None:
        pool = np.sort(np.concatenate([train, parts["val"]]))
        train, parts["val"] = fold_indices(pool, targets[pool], *folds, seed)
    elif len(parts["val"]) == 0:
        share = val_fraction / (1 - test_fraction) if take_test else val_fraction
        train, parts["val"] = split_off(train, count(share, train), seed, strata, "val", source)
    if len(train) == 0:
        raise ConfigError(f"{source} has no training images: add some to its train split")
    parts["train"] = train
    return parts


def random_split(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): `size` of n indices drawn at random as val, seeded."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[size:], order[:size]


def check_folds(num_folds: int | None, fold: int) -> None:
    """Refuse a num_folds that is not null or 2 or more, and a fold outside 0..num_folds-1."""
    if num_folds is None:
        if fold != 0:
            raise ConfigError(f"data.fold={fold} needs data.num_folds: pass e.g. data.num_folds=5")
        return
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
        raise ConfigError(
            f"data.num_folds must be an integer of 2 or more (or null for the data.val_fraction "
            f"split), got {num_folds!r}"
        )
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < num_folds:
        raise ConfigError(
            f"data.fold must lie in 0..{num_folds - 1} for data.num_folds={num_folds}, got {fold!r}"
        )


def _check_counts(
    classes: np.ndarray, counts: np.ndarray, num_folds: int, multilabel: bool
) -> None:
    """Refuse a pool with a class that has fewer samples (a label fewer positives) than folds."""
    if len(counts) and (least := int(counts.min())) < num_folds:
        what, kind = ("positives", "label") if multilabel else ("samples", "class")
        raise ConfigError(
            f"data.num_folds={num_folds} needs {num_folds} or more {what} of every {kind} in the "
            f"training pool, but {kind} {classes[counts.argmin()]} has {least}: lower "
            "data.num_folds"
        )


def iterative_folds(targets: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """The fold (0..num_folds-1) of each multi-hot row, by iterative stratification."""
    labels = np.asarray(targets).astype(bool)
    rng = np.random.default_rng(seed)
    fold_of = np.full(len(labels), -1)
    wanted = np.full(num_folds, len(labels) / num_folds)  # samples each fold still wants
    wanted_label = np.tile(labels.sum(0) / num_folds, (num_folds, 1))  # positives, per label

    def assign(row: int, scores: np.ndarray) -> None:
        # the fold that wants this label most; ties go to the fold that wants most samples, then
        # to a seeded draw
        best = np.flatnonzero(scores == scores.max())
        best = best[wanted[best] == wanted[best].max()]
        fold = int(best[0] if len(best) == 1 else rng.choice(best))
        fold_of[row] = fold
        wanted[fold] -= 1
        wanted_label[fold] -= labels[row]

    left = labels.copy()  # the positives of rows not yet assigned
    while (counts := left.sum(0)).any():
        # the label with fewest positives left: rare labels are placed while the folds have room
        label = int(np.flatnonzero(counts == counts[counts > 0].min())[0])
        for row in rng.permutation(np.flatnonzero(left[:, label])):
            assign(int(row), wanted_label[:, label])
            left[row] = False
    for row in rng.permutation(np.flatnonzero(fold_of < 0)):  # rows without any label
        assign(int(row), wanted)
    return fold_of


def fold_indices(
    pool: np.ndarray, targets: np.ndarray, num_folds: int, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (train, val) indices taken from `pool`, fold `fold` of a seeded stratified K-fold split
    being val; `targets[i]` (a class index, or a multi-hot row for multi-label data) is `pool[i]`'s.
    """
    check_folds(num_folds, fold)
    pool, targets = np.asarray(pool), np.asarray(targets)
    if len(pool) != len(targets):
        raise ValueError(f"{len(pool)} pool indices but {len(targets)} targets")
    if targets.ndim == 2:  # multi-label
        if len(pool) < num_folds:
            raise ConfigError(
                f"data.num_folds={num_folds} needs {num_folds} or more training samples, the "
                f"pool has {len(pool)}: lower data.num_folds"
            )
        positives = targets.astype(bool).sum(0)
        _check_counts(np.arange(len(positives)), positives, num_folds, multilabel=True)
        in_val = iterative_folds(targets, num_folds, seed) == fold
        return pool[~in_val], pool[in_val]
    _check_counts(*np.unique(targets, return_counts=True), num_folds, multilabel=False)
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    train, val = list(splitter.split(np.zeros(len(targets)), targets))[fold]
    return pool[train], pool[val]
