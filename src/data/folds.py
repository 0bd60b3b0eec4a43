"""Seeded stratified K-fold splits of a data set's training pool, for cross-validation.

Multi-class targets (class indices) are split by scikit-learn's StratifiedKFold; multi-label
targets (multi-hot rows) by iterative stratification (Sechidis, Tsoumakas and Vlahavas, "On the
stratification of multi-label data", ECML PKDD 2011), which keeps every label's share of positives
close to 1/K in each fold, rarest labels first.
"""

import numpy as np
from sklearn.model_selection import StratifiedKFold

from src.core.errors import ConfigError


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
