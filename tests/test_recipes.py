"""data=image_folder brings its recipe for small folders from scratch, the command line still wins
over it, and (slow) the recipe learns a small, hard folder."""

import math
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from scripts.make_hard_shapes import SHAPES, write_hard_shapes
from src.train import train
from tests.helpers import QUIET

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


def test_experiment_image_folder_scratch_is_the_default_recipe(train_cfg, shapes):
    default = train_cfg(*FOLDER, f"data.root={shapes}")
    named = train_cfg("experiment=image_folder_scratch", *FOLDER[1:], f"data.root={shapes}")
    for group in ("data", "model", "optimizer", "scheduler", "trainer", "callbacks"):
        assert OmegaConf.to_container(named[group]) == OmegaConf.to_container(default[group])
    assert "scratch" in named.tags


def test_the_recipe_trains_and_tests_on_a_folder(train_cfg, shapes):
    cfg = train_cfg(*FOLDER, f"data.root={shapes}", "debug=fdr", *QUIET[1:])
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and 0 <= metrics["test/acc"] <= 1
    data = instantiate(cfg.data)
    assert (data.image_size, data.pipeline, data.class_names) == (32, "batched", sorted(SHAPES))


@pytest.mark.slow
def test_the_default_recipe_learns_a_small_hard_folder(train_cfg, tmp_path):
    """80 images of each shape, a quarter held out for test: 90% or more (measured 9x%)."""
    write_hard_shapes(tmp_path / "shapes", per_class=80, size=32, seed=1)
    cfg = train_cfg(*FOLDER, f"data.root={tmp_path / 'shapes'}", "data.test_fraction=0.25", *QUIET)
    assert train(cfg)["test/acc"] >= 0.9
