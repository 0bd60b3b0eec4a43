"""Cross-validation folds: stratified K-fold splits of the training pool, and runs over them."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from sklearn.datasets import load_digits

from src.core.errors import ConfigError, user_error_in
from src.data.splits import fold_indices, iterative_folds
from src.tracking.report import compare
from tests.conftest import QUIET
from tests.helpers import error_lines, run_in_process, run_script
from tests.test_cifar10 import cifar_overrides, tiny_cifar10  # noqa: F401  (a fixture)

RNG = np.random.default_rng(0)
# a training pool: indices into a larger data set, in no particular order
POOL = RNG.permutation(np.arange(1000, 1600))
# multi-class targets with unequal classes, and multi-label targets with rare and common labels
CLASSES = RNG.choice(6, size=len(POOL), p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
LABELS = (RNG.random((len(POOL), 8)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.1]).astype(float)


def all_folds(targets: np.ndarray, k: int = 5, seed: int = 7) -> list[tuple[np.ndarray, ...]]:
    return [fold_indices(POOL, targets, k, fold, seed) for fold in range(k)]


@pytest.mark.parametrize("targets", [CLASSES, LABELS], ids=["multiclass", "multilabel"])
def test_folds_partition_the_pool(targets: np.ndarray) -> None:
    folds = all_folds(targets)
    for train, val in folds:
        assert not set(train) & set(val)
        assert sorted([*train, *val]) == sorted(POOL)
    every_val = np.concatenate([val for _, val in folds])
    assert sorted(every_val) == sorted(POOL)  # each index in exactly one fold's val
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1


def test_multiclass_folds_keep_the_class_proportions() -> None:
    target_of = dict(zip(POOL, CLASSES, strict=True))
    ideal = np.bincount(CLASSES) / 5
    for _, val in all_folds(CLASSES):
        counts = np.bincount([target_of[i] for i in val], minlength=6)
        assert np.all(np.abs(counts - ideal) < 1), (counts, ideal)


def label_imbalance(folds: np.ndarray, labels: np.ndarray, k: int) -> float:
    """How far the folds' positives of each label are from an equal share, summed."""
    ideal = labels.sum(0) / k
    return sum(np.abs(labels[folds == fold].sum(0) - ideal).sum() for fold in range(k))


def test_iterative_stratification_balances_labels_better_than_random_folds() -> None:
    stratified = label_imbalance(iterative_folds(LABELS, 5, seed=0), LABELS, 5)
    shuffled = [
        label_imbalance(np.random.default_rng(seed).permutation(len(LABELS)) % 5, LABELS, 5)
        for seed in range(10)
    ]
    assert stratified < 0.5 * min(shuffled), (stratified, shuffled)
    # every label's positives per fold within 1.5 of their share (the rare ones exactly)
    target_of = dict(zip(POOL, LABELS, strict=True))
    for _, val in all_folds(LABELS):
        positives = np.sum([target_of[i] for i in val], axis=0)
        assert np.all(np.abs(positives - LABELS.sum(0) / 5) <= 1.5), positives


@pytest.mark.parametrize("targets", [CLASSES, LABELS], ids=["multiclass", "multilabel"])
def test_folds_depend_only_on_their_seed(targets: np.ndarray) -> None:
    torch.manual_seed(1)
    np.random.seed(1)
    first = fold_indices(POOL, targets, 5, 2, seed=3)
    torch.manual_seed(2)
    np.random.seed(2)
    again = fold_indices(POOL, targets, 5, 2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = fold_indices(POOL, targets, 5, 2, seed=4)
    assert not np.array_equal(np.sort(first[1]), np.sort(other[1]))


@pytest.mark.parametrize(
    ("num_folds", "fold", "targets", "expected"),
    [
        (1, 0, CLASSES, "data.num_folds must be an integer of 2 or more"),
        (5, 5, CLASSES, "data.fold must lie in 0..4 for data.num_folds=5, got 5"),
        (5, -1, CLASSES, "data.fold must lie in 0..4"),
        (None, 2, CLASSES, "data.fold=2 needs data.num_folds"),
        (40, 0, CLASSES, "needs 40 or more samples of every class in the training pool, but "),
        (20, 0, LABELS, "needs 20 or more positives of every label in the training pool, but "),
    ],
)
def test_bad_folds_are_refused_in_one_line(
    num_folds: int | None, fold: int, targets: np.ndarray, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        fold_indices(POOL, targets, num_folds, fold, seed=0)
    assert expected in str(error.value) and "\n" not in str(error.value)


def digits_splits(train_cfg, *overrides: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return instantiate(train_cfg(*overrides).data).split_indices()


def test_digits_folds_split_train_and_val_and_keep_the_test_split(train_cfg) -> None:
    labels = load_digits().target
    usual_train, usual_val, usual_test = digits_splits(train_cfg)
    pool = np.concatenate([usual_train, usual_val])
    vals = []
    for fold in range(5):
        train, val, test = digits_splits(train_cfg, "data.num_folds=5", f"data.fold={fold}")
        assert np.array_equal(test, usual_test)
        assert sorted([*train, *val]) == sorted(pool) and not set(train) & set(val)
        ideal = np.bincount(labels[pool]) / 5
        assert np.all(np.abs(np.bincount(labels[val]) - ideal) < 1)
        vals.append(val)
    assert sorted(np.concatenate(vals)) == sorted(pool)
    datamodule = instantiate(train_cfg("data.num_folds=5", "data.fold=3").data)
    datamodule.setup("fit")
    assert torch.equal(datamodule.val_set.targets, torch.from_numpy(labels[vals[3]]))
    assert len(datamodule.train_set) == len(pool) - len(vals[3])
    assert len(datamodule.test_set) == len(usual_test)


def test_the_default_digits_split_is_unchanged(train_cfg) -> None:
    train, val, test = digits_splits(train_cfg)
    # the split of every earlier run and of data/examples/digits (its first indices and sums)
    assert [list(split[:3]) for split in (train, val, test)] == [
        [1405, 1561, 387],
        [737, 688, 908],
        [618, 1427, 158],
    ]
    assert [int(split.sum()) for split in (train, val, test)] == [1105992, 175776, 331938]


def test_multilabel_digits_folds_keep_the_test_canvases(train_cfg) -> None:
    small = ["data=digits_multilabel", "data.train_size=200", "data.val_size=50"]
    usual = instantiate(train_cfg(*small).data).canvases()
    folds = [
        instantiate(train_cfg(*small, "data.num_folds=3", f"data.fold={k}").data).canvases()
        for k in range(2)
    ]
    for canvases in folds:
        assert torch.equal(canvases[2][0], usual[2][0])  # the test canvases
        assert torch.equal(canvases[2][1], usual[2][1])
        assert [len(c[0]) for c in canvases] == [200, 50, 1000]
    assert not torch.equal(folds[0][1][0], folds[1][1][0])  # other val canvases per fold


def test_cifar10_folds_split_the_training_images(train_cfg, tiny_cifar10) -> None:  # noqa: F811
    splits = []
    for fold in range(2):
        cfg = train_cfg(*cifar_overrides(tiny_cifar10), "data.num_folds=2", f"data.fold={fold}")
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        splits.append(datamodule)
        assert (len(datamodule.train_set), len(datamodule.val_set)) == (20, 20)
        # the tiny archive has 3 to 5 images of each class: half of them in each fold
        counts = torch.bincount(datamodule.val_set.targets, minlength=10)
        whole = torch.bincount(
            torch.cat([datamodule.train_set.targets, datamodule.val_set.targets])
        )
        assert torch.all((counts - whole / 2).abs() < 1), (counts, whole)
        assert len(datamodule.test_set) == 20
    # with two folds, one fold's training images are the other's val images
    assert torch.equal(splits[0].train_set.images, splits[1].val_set.images)
    both = torch.cat([splits[0].val_set.images, splits[1].val_set.images])
    assert len(both.unique(dim=0)) == 40
    cfg = train_cfg(*cifar_overrides(tiny_cifar10), "data.num_folds=5")
    with pytest.raises(
        ConfigError, match="every class in the training pool, but class 0 has 3: lower"
    ):
        instantiate(cfg.data).setup("fit")


def test_a_fold_out_of_range_stops_train_before_any_work(tmp_path: Path) -> None:
    result = run_in_process(
        "src/train.py", f"paths.log_dir={tmp_path}", "data.num_folds=5", "data.fold=5"
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = error_lines(result)
    assert errors == ["error: data.fold must lie in 0..4 for data.num_folds=5, got 5"]
    assert not (tmp_path / "train").exists()


def test_fold_without_num_folds_is_refused(train_cfg) -> None:
    with pytest.raises(Exception) as error:
        instantiate(train_cfg("data.fold=1").data)
    assert "data.fold=1 needs data.num_folds" in str(user_error_in(error.value))


@pytest.mark.slow
def test_a_two_fold_multirun_reports_mean_and_std(tmp_path: Path) -> None:
    sweep = tmp_path / "cv"
    args = ["-m", f"paths.log_dir={tmp_path}", f"hydra.sweep.dir={sweep}", *QUIET]
    args += ["trainer.max_epochs=2", "data.num_folds=2", "data.fold=0,1"]
    result = run_script("src/train.py", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    report = run_script("scripts/compare_runs.py", str(sweep), "--group-by", "data.fold")
    assert report.returncode == 0, report.stderr
    assert "2 runs in 1 group by data.fold" in report.stdout
    with open(sweep / "comparison.csv") as file:
        (row,) = list(csv.DictReader(file))
    assert (row["n"], row["data.fold"], row["data.num_folds"]) == ("2", "0,1", "2")
    runs = compare(sweep)[1]
    best = [run["val/acc_best"] for run in runs]
    assert float(row["val/acc_best mean"]) == pytest.approx(np.mean(best))
    assert float(row["val/acc_best std"]) == pytest.approx(np.std(best, ddof=1))
    assert 0.5 < float(row["test/acc mean"]) <= 1
    assert (sweep / "comparison.png").stat().st_size > 10_000
