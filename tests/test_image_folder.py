"""ImageFolderDataModule on tiny real image folders and labels files written with PIL."""

import json
import logging
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from torchvision import tv_tensors

from src.cli.errors import ConfigError
from src.data.image_folder import ImageFolderDataModule
from src.data.images import load_rgb_image, read_rgb_image


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


def targets_by_name(dm: ImageFolderDataModule) -> dict[str, object]:
    """Each image's file name with the target the data set returns for it."""
    dm.setup("fit")
    source = dm.train_set.source
    return {Path(source.paths[i]).name: source[i][1] for i in range(len(source))}


def test_class_folders_split_batch_and_seed(train_cfg, tmp_path):
    root = tmp_path / "images"
    write_classes(root, {"cat": 10, "ant": 10, "bee": 10})
    cfg = train_cfg(*folder_overrides(root), "data.batch_size=4")
    dm = instantiate(cfg.data)
    assert (dm.task, dm.num_classes, dm.class_names) == ("multiclass", 3, ["ant", "bee", "cat"])
    assert sizes(dm) == (24, 3, 3)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    images, _ = next(iter(dm.val_dataloader()))
    assert images.shape == (3, 3, 16, 16)
    targets = dm.train_targets()
    assert targets.shape == (24,) and targets.dtype == torch.long
    assert Counter(targets.tolist()) == {0: 8, 1: 8, 2: 8}  # stratified
    again = instantiate(cfg.data)
    again.setup("fit")
    assert again.val_set.indices == dm.val_set.indices
    other = instantiate(train_cfg(*folder_overrides(root), "data.split_seed=7").data)
    other.setup("fit")
    assert other.val_set.indices != dm.val_set.indices


def test_presplit_folders_take_the_missing_test_split_from_train(tmp_path):
    write_classes(tmp_path / "train", {"a": 4, "b": 4})
    write_classes(tmp_path / "val", {"a": 1, "b": 1}, ext="jpg")
    dm = ImageFolderDataModule(str(tmp_path), test_fraction=0.25)
    assert dm.class_names == ["a", "b"]
    assert sizes(dm) == (6, 2, 2)
    val_paths = {Path(dm.paths[i]) for i in dm.val_set.indices}
    assert val_paths == {
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
            assert load_rgb_image(folder / name).mode == "RGB", name
            pixels = read_rgb_image(folder / name)
            assert pixels.shape[0] == 3 and pixels.dtype == torch.uint8, name
        dm = ImageFolderDataModule(str(tmp_path), test_fraction=0.2, val_fraction=0.2)
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
    test_names = {Path(dm.paths[i]).name for i in dm.test_set.indices}
    assert test_names == {"4.png", "5.png"}


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
