"""Training from the example image folders matches training on the same data in memory."""

import pytest

from scripts.make_example_data import write_digits, write_digits_multilabel
from src.train import train


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("examples")
    write_digits(out / "digits")
    write_digits_multilabel(out / "digits_multilabel")
    return out


FOLDER = [
    "data=image_folder",
    "data.image_size=32",
    "data.hflip=0",
    "data.num_workers=0",
    "data.manifest_dir=null",  # nothing written into the project's data/
]


@pytest.mark.slow
def test_the_multiclass_folder_comes_within_2_points_of_in_memory_digits(train_cfg, examples):
    in_memory = train(train_cfg())["test/acc"]
    folder = train(train_cfg(*FOLDER, f"data.root={examples / 'digits'}", "data.batch_size=64"))
    assert folder["test/acc"] >= in_memory - 0.02


@pytest.mark.slow
def test_the_multilabel_folder_comes_within_002_map_of_in_memory(train_cfg, examples):
    epochs = "trainer.max_epochs=8"
    in_memory = train(train_cfg("data=digits_multilabel", epochs))["test/map"]
    root = examples / "digits_multilabel"
    folder = train(
        train_cfg(
            *FOLDER,
            f"data.root={root}",
            f"data.labels_file={root / 'labels.csv'}",
            "data.batch_size=64",
            epochs,
        )
    )
    assert folder["test/map"] >= in_memory - 0.02
