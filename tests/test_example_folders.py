"""Training from the example image folders: with the in-memory data sets' settings it matches them
(only where the pixels come from differs), and the default recipe of data=image_folder does at
least as well as the in-memory digits' default run."""

import pytest

from scripts.make_example_data import write_digits, write_digits_multilabel
from src.train import train
from tests.conftest import QUIET


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("examples")
    write_digits(out / "digits")
    write_digits_multilabel(out / "digits_multilabel")
    return out


FOLDER = ["data=image_folder", "data.manifest_dir=null", *QUIET]
# what data=digits trains with (configs/data/digits.yaml and the template's defaults) instead of
# the image-folder recipe
AS_DIGITS = [
    "model=cnn",
    "optimizer=adam",
    "scheduler=none",
    "model.label_smoothing=0",
    "trainer.max_epochs=30",
    "callbacks.early_stopping.patience=10",
    "data.augment.hflip=0",
    "data.augment.degrees=10",
    "data.augment.translate=[0.1,0.1]",
    "data.augment.scale=[0.9,1.1]",
    "data.mean=[0.305,0.305,0.305]",
    "data.std=[0.324,0.324,0.324]",
]
# what data=digits_multilabel trains with, for 8 epochs
AS_DIGITS_MULTILABEL = [
    *AS_DIGITS[:3],
    "trainer.max_epochs=8",
    "callbacks.early_stopping.patience=10",
    "data.augment.hflip=0",
    "data.augment.degrees=5",
    "data.augment.translate=[0.04,0.04]",
    "data.augment.scale=[1.0,1.0]",
    "data.mean=[0.183,0.183,0.183]",
    "data.std=[0.289,0.289,0.289]",
]


@pytest.mark.slow
def test_the_multiclass_folder_comes_within_2_points_of_in_memory_digits(train_cfg, examples):
    in_memory = train(train_cfg(*QUIET))["test/acc"]
    folder = train(train_cfg(*FOLDER, *AS_DIGITS, f"data.root={examples / 'digits'}"))
    assert folder["test/acc"] >= in_memory - 0.02


@pytest.mark.slow
def test_the_multilabel_folder_comes_within_002_map_of_in_memory(train_cfg, examples):
    in_memory = train(train_cfg("data=digits_multilabel", "trainer.max_epochs=8", *QUIET))
    root = examples / "digits_multilabel"
    folder = train(
        train_cfg(
            *FOLDER,
            *AS_DIGITS_MULTILABEL,
            f"data.root={root}",
            f"data.labels_file={root / 'labels.csv'}",
        )
    )
    assert folder["test/map"] >= in_memory["test/map"] - 0.02


@pytest.mark.slow
def test_the_default_recipe_on_the_digits_folder_beats_the_in_memory_default(train_cfg, examples):
    """Nothing but data.root: the recipe of data=image_folder (with its flips) against the small
    CNN of data=digits."""
    in_memory = train(train_cfg(*QUIET))["test/acc"]
    folder = train(train_cfg(*FOLDER, f"data.root={examples / 'digits'}"))
    assert folder["test/acc"] >= in_memory
