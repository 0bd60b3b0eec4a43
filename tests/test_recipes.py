"""data=image_folder brings its recipe for small folders from scratch, the command line still wins
over it, and (slow) the recipe learns a small, hard folder."""

import csv
import math
from pathlib import Path

import pytest
from hydra.utils import instantiate

from scripts.make_hard_shapes import SHAPES, write_hard_shapes
from src.train import train
from tests.conftest import QUIET
from tests.helpers import run_in_process

FOLDER = ["data=image_folder", "data.manifest_dir=null"]
# every group and key the recipe sets, as composed
RECIPE = {
    "model.net._target_": "src.models.nets.vgg.VGG",
    "model.label_smoothing": 0.1,
    "optimizer._target_": "torch.optim.AdamW",
    "scheduler._target_": "torch.optim.lr_scheduler.OneCycleLR",
    "trainer.max_epochs": 60,
    "data.image_size": "auto",
    "data.pipeline": "auto",
}


def value(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A small hard folder: 12 images of each of the eight shapes, 32x32."""
    root = tmp_path_factory.mktemp("shapes")
    write_hard_shapes(root, per_class=12, size=32, seed=3)
    return root


def test_data_image_folder_brings_its_recipe(train_cfg, shapes):
    cfg = train_cfg(*FOLDER, f"data.root={shapes}")
    for key, wanted in RECIPE.items():
        assert value(cfg, key) == wanted, key
    assert cfg.scheduler.max_lr == cfg.optimizer.lr
    assert cfg.callbacks.early_stopping.patience >= cfg.trainer.max_epochs  # the cycle finishes


def test_other_data_keep_the_template_defaults(train_cfg):
    cfg = train_cfg()
    assert cfg.model.net._target_ == "src.models.nets.cnn.SmallCNN"
    assert cfg.optimizer._target_ == "torch.optim.Adam"
    assert cfg.model.label_smoothing == 0.0


@pytest.mark.parametrize("first", [True, False])
def test_the_command_line_wins_over_the_recipe_wherever_it_stands(train_cfg, shapes, first):
    mine = ["model=cnn", "optimizer=sgd", "scheduler=cosine", "trainer.max_epochs=3"]
    data = [*FOLDER, f"data.root={shapes}", "model.label_smoothing=0.2"]
    cfg = train_cfg(*(mine + data if first else data + mine))
    assert cfg.model.net._target_ == "src.models.nets.cnn.SmallCNN"
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR"
    assert (cfg.trainer.max_epochs, cfg.model.label_smoothing) == (3, 0.2)


def test_the_recipe_trains_and_tests_on_a_folder(train_cfg, shapes):
    cfg = train_cfg(*FOLDER, f"data.root={shapes}", "debug=fdr", *QUIET)
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and "test/acc" in metrics  # trained and tested
    data = instantiate(cfg.data)
    assert (data.image_size, data.pipeline, data.class_names) == (32, "batched", sorted(SHAPES))


@pytest.mark.slow
def test_the_default_recipe_learns_a_small_hard_folder(train_cfg, tmp_path):
    """80 images of each shape, a quarter held out for test: 90% or more (the README's
    recipe_check table: 0.94 on average over three seeds of another such folder)."""
    write_hard_shapes(tmp_path / "shapes", per_class=80, size=32, seed=1)
    cfg = train_cfg(*FOLDER, f"data.root={tmp_path / 'shapes'}", "data.test_fraction=0.25", *QUIET)
    assert train(cfg)["test/acc"] >= 0.9


def test_recipe_check_compares_both_recipes_per_seed_on_the_same_split(shapes, tmp_path):
    """The comparison script: one row per seed with the template's and the hand-written score on
    the same test images, and the mean row; the template's score is its own run's test/acc."""
    args = [
        str(shapes),
        "trainer.max_epochs=1",
        "data.test_fraction=0.25",
        "data.manifest_dir=null",
    ]
    result = run_in_process(
        "scripts/recipe_check.py", *args, "--seeds", "0", "1", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│")}
    assert {"0", "1", "mean"} <= set(rows)
    assert "on the same 24 images" in result.stdout  # a quarter of 96
    for seed in (0, 1):
        cells = rows[str(seed)].split("│")
        ours, theirs, svm = float(cells[2]), float(cells[4]), float(cells[6])
        difference = float(cells[8])
        tested = list(csv.DictReader(open(tmp_path / f"seed{seed}" / "per_class.csv")))
        support = [int(row["support"]) for row in tested]
        right = sum(float(row["recall"]) * n for row, n in zip(tested, support, strict=True))
        assert sum(support) == 24
        assert ours == pytest.approx(right / 24, abs=1e-4)  # its own run's test accuracy
        for other in (theirs, svm):  # of the same 24 images
            assert other * 24 == pytest.approx(round(other * 24), abs=2e-3)
        assert difference == pytest.approx(100 * (ours - theirs), abs=0.06)
        assert (tmp_path / f"seed{seed}" / "checkpoints" / "best.ckpt").is_file()
