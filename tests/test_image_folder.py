"""ImageFolderDataModule on tiny real image folders and labels files written with PIL."""

import csv
import json
import logging
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torchvision import tv_tensors

from src.core.errors import ConfigError
from src.data.image_folder import ImageFolderDataModule
from src.data.images import load_image, read_image
from src.data.in_memory import TensorImageDataset
from src.data.squares import megabytes_in_memory
from src.data.transforms import eval_transform_of
from src.models.checkpoint import classifier_from_checkpoint, read_checkpoint
from src.predict import predict
from src.train import train
from tests.conftest import QUIET, compose_config
from tests.helpers import error_lines, run_folders, run_in_process


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (16, 16), seed: int = 0):
    """A small noise image in the given mode, saved in the format of the path's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = len(Image.new(mode, (1, 1)).getbands())
    noise = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), np.uint8)
    image = Image.fromarray(noise.squeeze(-1) if bands == 1 else noise, "L" if bands == 1 else None)
    if image.mode != mode:
        image = image.convert(mode)
    image.save(path)


def write_classes(root: Path, counts: dict[str, int], ext: str = "png") -> None:
    """root/<class>/<i>.<ext>, one nested one level deeper, with distinct noise."""
    for c, (name, count) in enumerate(counts.items()):
        for i in range(count):
            sub = "nested/" if i == 0 else ""
            write_image(root / name / f"{sub}{i}.{ext}", size=(20, 16), seed=100 * c + i)


def write_truncated_jpeg(path: Path) -> None:
    write_image(path.with_suffix(".tmp.jpg"), size=(64, 64))
    data = path.with_suffix(".tmp.jpg").read_bytes()
    path.with_suffix(".tmp.jpg").unlink()
    path.write_bytes(data[: len(data) // 2])


def write_listed_images(folder: Path, count: int) -> None:
    for i in range(count):
        write_image(folder / "img" / f"{i}.png", seed=i)


def folder_overrides(root: Path) -> list[str]:
    """The image_folder config on root, its manifests beside root rather than in the repository."""
    manifests = root.parent / f"{root.name}-manifests"
    return [
        "data=image_folder",
        f"data.root={root}",
        f"data.manifest_dir={manifests}",
        "data.num_workers=0",
        "data.image_size=16",
    ]


def sizes(dm: ImageFolderDataModule) -> tuple[int, int, int]:
    dm.setup("fit")
    return len(dm.train_set), len(dm.val_set), len(dm.test_set)


def split_names(dm: ImageFolderDataModule, split: str) -> set[Path]:
    """The paths of the images in a split."""
    return {Path(dm.paths[i]) for i in dm.splits[split]}


def targets_by_name(dm: ImageFolderDataModule) -> dict[str, object]:
    """Each image's file name with the target the data module holds for it."""
    return {
        Path(path).name: int(target) if target.ndim == 0 else target
        for path, target in zip(dm.paths, dm.targets, strict=True)
    }


def test_class_folders_split_batch_and_seed(train_cfg, tmp_path):
    root = tmp_path / "images"
    write_classes(root, {"cat": 10, "ant": 10, "bee": 10})
    cfg = train_cfg(*folder_overrides(root), "data.batch_size=4")
    dm = instantiate(cfg.data)
    assert (dm.task, dm.num_classes, dm.class_names) == ("multiclass", 3, ["ant", "bee", "cat"])
    assert sizes(dm) == (24, 3, 3)
    images, labels = next(iter(dm.train_dataloader()))  # uint8 squares, normalised on the device
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    images, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    targets = dm.train_targets()
    assert targets.shape == (24,) and targets.dtype == torch.long
    assert Counter(targets.tolist()) == {0: 8, 1: 8, 2: 8}  # stratified
    assert split_names(instantiate(cfg.data), "val") == split_names(dm, "val")
    other = instantiate(train_cfg(*folder_overrides(root), "data.split_seed=7").data)
    assert split_names(other, "val") != split_names(dm, "val")


def test_presplit_folders_take_the_missing_test_split_from_train(tmp_path):
    write_classes(tmp_path / "train", {"a": 4, "b": 4})
    write_classes(tmp_path / "val", {"a": 1, "b": 1}, ext="jpg")
    dm = ImageFolderDataModule(str(tmp_path), test_fraction=0.25)
    assert dm.class_names == ["a", "b"]
    assert sizes(dm) == (6, 2, 2)
    assert split_names(dm, "val") == {
        tmp_path / "val" / "a" / "nested" / "0.jpg",
        tmp_path / "val/b/nested/0.jpg",
    }
    write_classes(tmp_path / "test", {"b": 2})
    assert sizes(ImageFolderDataModule(str(tmp_path))) == (8, 2, 2)


def test_modes_load_as_rgb_pixels_without_warnings(tmp_path):
    folder = tmp_path / "x"
    write_image(folder / "gray.png", "L")
    write_image(folder / "rgba.png", "RGBA")
    write_image(folder / "cmyk.jpg", "CMYK")
    write_image(folder / "gray.pgm", "L")
    palette = Image.new("P", (8, 8))
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    palette.save(folder / "palette.png", transparency=bytes([0, 128] + [255] * 254))
    write_image(folder / "palette.gif", "P")
    write_classes(tmp_path, {"y": 6})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ["gray.png", "rgba.png", "cmyk.jpg", "gray.pgm", "palette.png", "palette.gif"]:
            assert load_image(folder / name).mode == "RGB", name
            pixels = read_image(folder / name)
            assert pixels.shape[0] == 3 and pixels.dtype == torch.uint8, name
        dm = ImageFolderDataModule(str(tmp_path), test_fraction=0.2, val_fraction=0.2)
        dm.setup("fit")
        assert dm.train_set.images.shape == (len(dm.train_set), 3, 16, 16)
        dm = ImageFolderDataModule(
            str(tmp_path), test_fraction=0.2, val_fraction=0.2, pipeline="per_sample"
        )
        dm.setup("fit")
        source = dm.train_set.source
        for i in range(len(source)):
            image = source[i][0]
            assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
            assert image.ndim == 3 and image.shape[0] == 3


def test_multilabel_csv_with_spaces_semicolons_and_empty_labels(train_cfg, tmp_path):
    write_listed_images(tmp_path, 10)
    rows = ["cat dog", "dog;bird", "", "bird ; cat", "cat"] * 2
    lines = ["path,labels"] + [f"img/{i}.png,{labels}" for i, labels in enumerate(rows)]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    cfg = train_cfg(*folder_overrides(tmp_path), "data.labels_file=labels.csv", "data.batch_size=4")
    dm = instantiate(cfg.data)
    assert (dm.task, dm.class_names) == ("multilabel", ["bird", "cat", "dog"])
    assert sizes(dm) == (8, 1, 1)
    targets = targets_by_name(dm)
    assert targets["0.png"].tolist() == [0, 1, 1] and targets["1.png"].tolist() == [1, 0, 1]
    assert targets["2.png"].tolist() == [0, 0, 0] and targets["3.png"].tolist() == [1, 1, 0]
    assert targets["0.png"].dtype == torch.float32
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and labels.shape == (4, 3)
    assert labels.dtype == torch.float32
    assert dm.train_targets().shape == (8, 3) and dm.train_targets().dtype == torch.float32


def test_json_with_classes_file_and_split(tmp_path):
    data = tmp_path / "data"
    write_listed_images(data, 6)
    splits = ["train", "train", "train", "val", "test", "test"]
    labels = [["zebra"], "ant;cat", ["cat", "ant"], [], "zebra cat", ["ant"]]
    items = [{"path": f"img/{i}.png", "labels": labels[i], "split": splits[i]} for i in range(6)]
    (data / "labels.json").write_text(json.dumps(items))
    (data / "classes.txt").write_text("zebra\n\nant\ncat\nunused\n\n")
    dm = ImageFolderDataModule(
        str(data), labels_file="labels.json", classes_file=str(data / "classes.txt")
    )
    assert dm.class_names == ["zebra", "ant", "cat", "unused"] and dm.num_classes == 4
    assert sizes(dm) == (3, 1, 2)
    targets = targets_by_name(dm)
    assert targets["0.png"].tolist() == [1, 0, 0, 0] and targets["1.png"].tolist() == [0, 1, 1, 0]
    assert targets["3.png"].tolist() == [0, 0, 0, 0] and targets["4.png"].tolist() == [1, 0, 1, 0]
    assert {path.name for path in split_names(dm, "test")} == {"4.png", "5.png"}


def test_single_label_csv_as_multiclass_gives_indices(tmp_path):
    write_listed_images(tmp_path, 6)
    rows = [("a", "train"), ("b", "train"), ("a", "train"), ("b", "val"), ("a", "test"), ("b", "")]
    rows[-1] = ("b", "Train")  # split values are case-insensitive
    text = "path,labels,split\n" + "".join(
        f"img/{i}.png,{c},{s}\n" for i, (c, s) in enumerate(rows)
    )
    (tmp_path / "labels.csv").write_text(text)
    dm = ImageFolderDataModule(str(tmp_path), labels_file="labels.csv", task="multiclass")
    assert (dm.task, dm.class_names) == ("multiclass", ["a", "b"])
    assert sizes(dm) == (4, 1, 1)
    assert targets_by_name(dm)["1.png"] == 1
    assert dm.train_targets().tolist() == [0, 1, 0, 1]


def bad_inputs(tmp: Path) -> dict[str, tuple[dict, list[str]]]:
    """Each bad input as the module's arguments and what its message must name."""
    write_classes(tmp / "ok", {"a": 3, "b": 3})
    (tmp / "file.txt").write_text("not a folder")
    write_image(tmp / "flat" / "x.png")
    write_classes(tmp / "empty", {"a": 3})
    (tmp / "empty" / "b").mkdir()
    (tmp / "empty" / "b" / "notes.txt").write_text("no images")
    write_classes(tmp / "tiny", {"a": 1})
    write_classes(tmp / "notimage", {"a": 3})
    (tmp / "notimage" / "a" / "fake.png").write_text("this is text")
    write_classes(tmp / "truncated", {"a": 3})
    write_truncated_jpeg(tmp / "truncated" / "a" / "cut.jpg")
    write_classes(tmp / "split" / "train", {"a": 3})
    write_classes(tmp / "split" / "val", {"z": 1})
    csv = tmp / "csv"
    write_listed_images(csv, 3)
    (csv / "empty_path.csv").write_text("path,labels\nimg/0.png,a\n ,b\n")
    (csv / "missing.csv").write_text("path,labels\nimg/0.png,a\nimg/9.png,b\n")
    (csv / "multi.csv").write_text("path,labels\nimg/0.png,a\nimg/1.png,a b\n")
    (csv / "header.csv").write_text("file,tags\nimg/0.png,a\n")
    (csv / "split.csv").write_text("path,labels,split\nimg/0.png,a,train\nimg/1.png,b,valid\n")
    (csv / "unlabelled.csv").write_text("path,labels\nimg/0.png,a\nimg/1.png,\n")
    (csv / "ok.csv").write_text("path,labels\nimg/0.png,a\nimg/1.png,b c\n")
    (csv / "classes.txt").write_text("a\nb\n")
    (csv / "broken.json").write_text('[{"path": "img/0.png", "labels": ["a"]},')
    (csv / "nopath.json").write_text('[{"path": "img/0.png", "labels": "a"}, {"labels": "a"}]')
    ok, c = str(tmp / "ok"), str(csv)
    return {
        "root missing": ({"root": str(tmp / "nowhere")}, ["data.root", "nowhere"]),
        "root a file": ({"root": str(tmp / "file.txt")}, ["data.root", "file.txt"]),
        "no class folders": ({"root": str(tmp / "flat")}, ["data.root", "flat"]),
        "empty class": ({"root": str(tmp / "empty")}, [str(tmp / "empty" / "b")]),
        "too few to split": ({"root": str(tmp / "tiny")}, [str(tmp / "tiny"), "too few"]),
        "unknown val class": ({"root": str(tmp / "split")}, [str(tmp / "split" / "val" / "z")]),
        "not an image": (
            {"root": str(tmp / "notimage")},
            ["fake.png", "data.skip_bad_images=true"],
        ),
        "truncated": ({"root": str(tmp / "truncated")}, ["cut.jpg", "data.skip_bad_images=true"]),
        "labels file missing": (
            {"root": c, "labels_file": "nope.csv"},
            ["data.labels_file", "nope.csv"],
        ),
        "classes file missing": (
            {"root": c, "labels_file": "ok.csv", "classes_file": "nope.txt"},
            ["data.classes_file", "nope.txt"],
        ),
        "empty path": ({"root": c, "labels_file": "empty_path.csv"}, ["empty_path.csv", "row 2"]),
        "missing image": (
            {"root": c, "labels_file": "missing.csv"},
            ["missing.csv", "row 2", "img/9.png"],
        ),
        "json without path": ({"root": c, "labels_file": "nopath.json"}, ["nopath.json", "row 2"]),
        "broken json": ({"root": c, "labels_file": "broken.json"}, ["broken.json"]),
        "label not in classes file": (
            {"root": c, "labels_file": "ok.csv", "classes_file": "classes.txt"},
            ["'c'", "row 2", "ok.csv", "classes.txt"],
        ),
        "multi-label as multiclass": (
            {"root": c, "labels_file": "multi.csv", "task": "multiclass"},
            ["multi.csv is multi-label (row 2 has 2 labels)", "data.task=multilabel"],
        ),
        "unlabelled row as multiclass": (
            {"root": c, "labels_file": "unlabelled.csv", "task": "multiclass"},
            ["unlabelled.csv row 2 has no label", "data.task=multilabel"],
        ),
        "classes file without labels file": (
            {"root": ok, "classes_file": str(csv / "classes.txt")},
            ["data.classes_file", "data.labels_file"],
        ),
        "multilabel without labels file": (
            {"root": ok, "task": "multilabel"},
            ["data.labels_file"],
        ),
        "no header": ({"root": c, "labels_file": "header.csv"}, ["header.csv", "'path'"]),
        "bad split": ({"root": c, "labels_file": "split.csv"}, ["split.csv", "row 2", "'valid'"]),
        "fractions": ({"root": ok, "val_fraction": 0.6, "test_fraction": 0.5}, ["val_fraction"]),
        "fewer classes than checkpoint": ({"root": ok, "num_classes": 3}, ["checkpoint", ok]),
        "other class names than checkpoint": (
            {"root": ok, "num_classes": 2, "class_names": ["b", "a"]},
            ["checkpoint", "'a' here but 'b'"],
        ),
    }


BAD_INPUTS = [
    "root missing",
    "root a file",
    "no class folders",
    "empty class",
    "too few to split",
    "unknown val class",
    "not an image",
    "truncated",
    "labels file missing",
    "classes file missing",
    "empty path",
    "missing image",
    "json without path",
    "broken json",
    "label not in classes file",
    "multi-label as multiclass",
    "unlabelled row as multiclass",
    "classes file without labels file",
    "multilabel without labels file",
    "no header",
    "bad split",
    "fractions",
    "fewer classes than checkpoint",
    "other class names than checkpoint",
]


@pytest.fixture(scope="module")
def bad_input_cases(tmp_path_factory) -> dict[str, tuple[dict, list[str]]]:
    """Every bad input written once; the names above are its cases."""
    cases = bad_inputs(tmp_path_factory.mktemp("bad_inputs"))
    assert sorted(cases) == sorted(BAD_INPUTS)
    return cases


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_refused_in_one_line_naming_the_culprit(bad_input_cases, case):
    kwargs, names = bad_input_cases[case]
    with pytest.raises(ConfigError) as error:
        ImageFolderDataModule(**kwargs)
    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"


def test_matching_checkpoint_classes_are_accepted(tmp_path):
    write_classes(tmp_path, {"a": 5, "b": 5})
    dm = ImageFolderDataModule(str(tmp_path), num_classes=2, class_names=["a", "b"])
    assert dm.class_names == ["a", "b"]


def test_skip_bad_images_warns_and_goes_on(tmp_path, caplog):
    write_classes(tmp_path, {"a": 5, "b": 5})
    (tmp_path / "a" / "fake.png").write_bytes(b"\x89PNG but not really")
    write_truncated_jpeg(tmp_path / "b" / "cut.jpg")
    with caplog.at_level(logging.WARNING, logger="src.data.image_folder"):
        dm = ImageFolderDataModule(str(tmp_path), skip_bad_images=True)
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "fake.png" in warned and "cut.jpg" in warned
    assert len(dm.paths) == 10 and sum(sizes(dm)) == 10

    only_bad = tmp_path / "only_bad"
    (only_bad / "a").mkdir(parents=True)
    (only_bad / "a" / "x.jpg").write_text("text")
    with pytest.raises(ConfigError, match="no readable images"):
        ImageFolderDataModule(str(only_bad), skip_bad_images=True)


def test_verify_images_false_skips_decoding(tmp_path):
    write_classes(tmp_path, {"a": 5, "b": 5})
    (tmp_path / "a" / "fake.png").write_text("text")
    assert len(ImageFolderDataModule(str(tmp_path), verify_images=False).paths) == 11


def write_sizes(root: Path, sizes: list[tuple[int, int]], classes: str = "ab") -> None:
    """root/<class>/<i>.png for each class, one image of each (width, height), distinct noise."""
    for c, name in enumerate(classes):
        for i, size in enumerate(sizes):
            write_image(root / name / f"{i}.png", size=size, seed=100 * c + i)


def test_image_size_auto_is_the_median_shorter_side_at_most_64(tmp_path):
    write_sizes(tmp_path / "small", [(20, 16), (24, 30), (30, 40), (15, 50), (24, 24)])
    dm = ImageFolderDataModule(str(tmp_path / "small"), val_fraction=0.2, test_fraction=0.2)
    assert dm.image_size == 24  # shorter sides 16, 24, 30, 15, 24 in each class
    dm.setup("fit")
    assert dm.train_set.images.shape[1:] == (3, 24, 24)
    write_sizes(tmp_path / "large", [(200, 100), (120, 90), (300, 300)])
    assert ImageFolderDataModule(str(tmp_path / "large")).image_size == 64
    assert ImageFolderDataModule(str(tmp_path / "large"), image_size=96).image_size == 96


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"image_size": "big"}, "data.image_size=big"),
        ({"image_size": 0}, "data.image_size=0"),
        ({"image_size": 2.5}, "data.image_size=2.5"),
        ({"pipeline": "fast"}, "data.pipeline=fast"),
        ({"pipeline": "batched", "eval_transforms": []}, "data.pipeline=per_sample"),
    ],
)
def test_a_bad_image_size_or_pipeline_is_refused_in_one_line(tmp_path, setting, named):
    write_classes(tmp_path, {"a": 3, "b": 3})
    with pytest.raises(ConfigError) as error:
        ImageFolderDataModule(str(tmp_path), **setting)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_pipeline_auto_holds_a_folder_that_fits_the_budget_and_streams_one_that_does_not(
    train_cfg, tmp_path
):
    write_classes(tmp_path / "images", {"a": 5, "b": 5})
    overrides = folder_overrides(tmp_path / "images")
    need = megabytes_in_memory(10, 16)
    held = instantiate(train_cfg(*overrides, f"data.in_memory_max_mb={need * 1.01}").data)
    assert held.pipeline == "batched" and held.worker_count() == 0
    held.setup("fit")
    assert isinstance(held.train_set, TensorImageDataset)
    assert next(iter(held.train_dataloader()))[0].dtype == torch.uint8  # augmented on the device
    streamed = instantiate(train_cfg(*overrides, f"data.in_memory_max_mb={need * 0.99}").data)
    assert streamed.pipeline == "per_sample"
    streamed.setup("fit")
    assert not isinstance(streamed.train_set, TensorImageDataset)
    images, _ = next(iter(streamed.train_dataloader()))
    assert images.dtype == torch.float32 and images.shape[1:] == (3, 16, 16)


def test_both_pipelines_and_predict_see_the_same_evaluation_pixels(train_cfg, tmp_path):
    root = tmp_path / "images"
    write_sizes(root, [(40, 24), (24, 36), (30, 30), (50, 20), (28, 44)])
    overrides = [
        *folder_overrides(root)[:-1],  # image_size=auto: the median shorter side, 24
        "data.batch_size=32",
        "data.val_fraction=0.2",
        "data.test_fraction=0.4",
    ]
    cfg = train_cfg(*overrides)
    batched = instantiate(cfg.data)
    streamed = instantiate(train_cfg(*overrides, "data.pipeline=per_sample").data)
    assert (batched.pipeline, streamed.pipeline, batched.image_size) == (
        "batched",
        "per_sample",
        24,
    )
    for dm in (batched, streamed):
        dm.setup("test")
    held, labels = batched.on_after_batch_transfer(next(iter(batched.test_dataloader())), 0)
    read, same_labels = next(iter(streamed.test_dataloader()))
    assert held.shape == (4, 3, 24, 24) and torch.equal(labels, same_labels)
    assert torch.allclose(held, read, atol=1e-5)
    # predict: the checkpoint's data config, with what train.py recorded of auto, on the files
    found = {"image_size": 24, "mean": batched.mean, "std": batched.std, "channels": 3}
    recorded = {**OmegaConf.to_container(cfg.data, resolve=True), **found}
    transform = eval_transform_of(recorded)
    files = [batched.paths[i] for i in batched.splits["test"]]
    predicted = torch.stack([transform(read_image(path)) for path in files])
    assert torch.allclose(held, predicted, atol=1e-5)


OLD_TRANSFORMS = [
    {"_target_": "torchvision.transforms.v2.ToImage"},
    {"_target_": "torchvision.transforms.v2.Resize", "size": 16, "antialias": True},
    {"_target_": "torchvision.transforms.v2.CenterCrop", "size": 16},
    {
        "_target_": "torchvision.transforms.v2.ToDtype",
        "dtype": {"_target_": "hydra.utils.get_object", "path": "torch.float32"},
        "scale": True,
    },
    {
        "_target_": "torchvision.transforms.v2.Normalize",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    },
]


def test_transform_lists_build_stream_and_predict(tmp_path):
    """Torchvision transform lists instead of `augment`: streamed per sample, as predict does."""
    write_sizes(tmp_path, [(40, 24), (24, 36), (30, 30), (50, 20), (28, 44)])
    data = {
        "_target_": "src.data.image_folder.ImageFolderDataModule",
        "root": str(tmp_path),
        "image_size": 64,
        "val_fraction": 0.2,
        "test_fraction": 0.4,
        "batch_size": 32,
        "num_workers": 0,
        "train_transforms": OLD_TRANSFORMS,
        "eval_transforms": OLD_TRANSFORMS,
    }
    dm = instantiate(data)
    assert dm.pipeline == "per_sample"
    dm.setup("test")
    images, _ = next(iter(dm.test_dataloader()))
    transform = eval_transform_of(data)
    files = [dm.paths[i] for i in dm.splits["test"]]
    assert torch.equal(images, torch.stack([transform(read_image(path)) for path in files]))
    assert images.shape == (4, 3, 16, 16)  # the lists' size, not image_size


def test_predict_applies_exactly_the_evaluation_transform_of_training(train_cfg, tmp_path):
    root = tmp_path / "images"
    write_sizes(root, [(40, 24), (24, 36), (30, 30), (50, 20), (28, 44)], classes="abc")
    cfg = train_cfg(
        *folder_overrides(root)[:-1],
        "data.val_fraction=0.2",
        "data.test_fraction=0.4",
        "trainer.max_epochs=1",
        "test=false",
        "logger=csv",
        *QUIET,
    )
    train(cfg)
    checkpoint = read_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    model = classifier_from_checkpoint(checkpoint).eval()
    dm = instantiate(cfg.data)
    dm.setup("test")
    images, _ = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    with torch.no_grad():
        expected = model(images).softmax(dim=1)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for n, i in enumerate(dm.splits["test"]):  # 00.png, 01.png, ... in the test set's order
        shutil.copy(dm.paths[i], inputs / f"{n:02d}.png")
    written = predict(
        compose_config(
            "predict.yaml",
            tmp_path / "predict",
            [
                "extras.print_config=false",
                f"ckpt_path={cfg.paths.output_dir}/checkpoints/last.ckpt",
                f"input={inputs}",
                "top_k=3",
            ],
        )
    )
    rows = list(csv.DictReader(open(written)))
    assert len(rows) == len(expected) == 6
    for row, probs in zip(rows, expected, strict=True):
        found = {row[f"class_{k}"]: float(row[f"prob_{k}"]) for k in (1, 2, 3)}
        wanted = dict(zip(dm.class_names, probs.tolist(), strict=True))
        assert found == pytest.approx(wanted, abs=1e-5)


def predictions_of(logs: Path, *args: str) -> list[dict[str, str]]:
    """`python src/predict.py ARGS` logging under logs: the rows of its predictions.csv."""
    result = run_in_process(
        "src/predict.py", "extras.print_config=false", f"paths.log_dir={logs}", *args
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [run] = run_folders(logs, "predict")
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    shutil.rmtree(logs)
    return [{**row, "path": Path(row["path"]).name} for row in rows]


def test_image_size_auto_is_recorded_so_predict_never_reads_the_training_folder(tmp_path):
    """The size image_size=auto found is what the checkpoint and .hydra/config.yaml record; predict
    uses it after the training folder is gone. A checkpoint that still says auto is refused in one
    line naming image_size=, which then gives the same predictions."""
    root = tmp_path / "images"
    write_sizes(root, [(40, 24), (24, 36), (30, 30), (50, 20), (28, 44)])
    inputs = tmp_path / "inputs"
    shutil.copytree(root / "a", inputs)
    result = run_in_process(
        "src/train.py",
        *folder_overrides(root)[:-1],  # image_size=auto: the median shorter side, 24
        *QUIET,
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "test=false",
        "logger=csv",
        f"paths.log_dir={tmp_path / 'logs'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [run] = run_folders(tmp_path / "logs")
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["run_config"]["data"]["image_size"] == 24
    assert OmegaConf.load(run / ".hydra" / "config.yaml").data.image_size == 24

    before = predictions_of(tmp_path / "p", f"ckpt_path={ckpt}", f"input={inputs}")
    shutil.move(root, tmp_path / "elsewhere")
    assert predictions_of(tmp_path / "p", f"ckpt_path={ckpt}", f"input={inputs}") == before

    old = torch.load(ckpt, weights_only=True)
    old["run_config"]["data"]["image_size"] = "auto"  # as runs saved it before
    torch.save(old, tmp_path / "old.ckpt")
    refused = run_in_process(
        "src/predict.py",
        "extras.print_config=false",
        f"ckpt_path={tmp_path / 'old.ckpt'}",
        f"input={inputs}",
        f"paths.log_dir={tmp_path / 'p'}",
    )
    assert refused.returncode == 2
    assert error_lines(refused) == [
        "error: the checkpoint's data.image_size is auto, not the size it trained at (its "
        "training log says `data.image_size=auto: <size>`): pass image_size=<that size>"
    ]
    args = [f"ckpt_path={tmp_path / 'old.ckpt'}", f"input={inputs}", "image_size=24"]
    assert predictions_of(tmp_path / "p", *args) == before
