"""Image verification runs once: a manifest keyed by size and mtime spares later builds."""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image

import src.data.image_checks as image_checks
from src.core.errors import user_error_in
from src.data.manifest import manifest_file


def write_folder(root: Path, per_class: int = 4) -> None:
    """root/{a,b}/<i>.png, small noise images."""
    for c, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = np.random.default_rng(10 * c + i).integers(0, 256, (8, 8, 3), np.uint8)
            Image.fromarray(noise).save(root / name / f"{i}.png")


@pytest.fixture
def decoded(monkeypatch) -> list[str]:
    """Names of the files verification decodes, build after build."""
    calls: list[str] = []
    check = image_checks.image_problem

    def counted(path):
        calls.append(Path(path).name)
        return check(path)

    monkeypatch.setattr(image_checks, "image_problem", counted)
    return calls


@pytest.fixture
def build(train_cfg, tmp_path):
    """Build the image_folder data module of the real config on tmp_path/images."""
    root = tmp_path / "images"
    write_folder(root)

    composed = {}

    def make(*overrides: str):
        if overrides not in composed:
            composed[overrides] = train_cfg(
                "data=image_folder",
                f"data.root={root}",
                f"data.manifest_dir={tmp_path / 'manifests'}",
                *overrides,
            ).data
        return instantiate(composed[overrides])

    make.root = root
    make.manifest = manifest_file(tmp_path / "manifests", root)
    return make


def test_the_config_keeps_manifests_in_the_data_folder(train_cfg, tmp_path):
    cfg = train_cfg("data=image_folder", f"data.root={tmp_path}")
    assert cfg.data.manifest_dir == f"{cfg.paths.data_dir}/manifests"


def test_a_second_build_decodes_nothing(build, decoded):
    first = build()
    assert len(decoded) == 8
    data = json.loads(build.manifest.read_text())
    entry = data["images"]["a/0.png"]
    stat = os.stat(build.root / "a" / "0.png")
    assert entry == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "problem": None}
    decoded.clear()
    second = build()
    assert decoded == []
    assert second.paths == first.paths


def test_touched_changed_and_new_files_are_verified_again(build, decoded):
    build()
    decoded.clear()
    touched = build.root / "a" / "1.png"
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = build.root / "b" / "2.png"
    Image.new("RGB", (4, 4)).save(changed)
    Image.new("RGB", (4, 4)).save(build.root / "b" / "new.png")
    build()
    assert sorted(decoded) == ["1.png", "2.png", "new.png"]
    decoded.clear()
    build()
    assert decoded == []


def test_a_broken_file_in_the_manifest_is_still_refused_or_skipped(build, decoded, caplog):
    broken = build.root / "a" / "fake.png"
    broken.write_text("not an image")
    for _ in range(2):
        with pytest.raises(InstantiationException) as error:
            build()
        assert "fake.png is not a readable image" in str(user_error_in(error.value))
    assert decoded.count("fake.png") == 1  # refused the second time from the manifest
    assert json.loads(build.manifest.read_text())["images"]["a/fake.png"]["problem"]
    decoded.clear()
    with caplog.at_level(logging.WARNING, logger="src.data.image_folder"):
        dm = build("data.skip_bad_images=true")
    assert decoded == [] and len(dm.paths) == 8
    assert "skipping" in caplog.text and "fake.png" in caplog.text


@pytest.mark.parametrize("variable", ["RANK", "LOCAL_RANK", "SLURM_PROCID"])
def test_other_ranks_read_the_manifest_but_never_write_it(build, decoded, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    build()
    assert len(decoded) == 8 and not build.manifest.exists()
    monkeypatch.delenv(variable)
    build()
    written = build.manifest.read_text()
    Image.new("RGB", (4, 4)).save(build.root / "b" / "new.png")
    decoded.clear()
    monkeypatch.setenv(variable, "1")
    build()
    assert decoded == ["new.png"]  # verifies only what the manifest lacks
    assert build.manifest.read_text() == written


def test_an_unwritable_manifest_folder_warns_and_goes_on(build, decoded, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="src.data.manifest"):
        dm = build(f"data.manifest_dir={blocker}")
    assert len(dm.paths) == 8
    assert "cannot write the image manifest" in caplog.text and "data.manifest_dir" in caplog.text


def test_a_damaged_manifest_is_verified_again_and_rewritten(build, decoded, caplog):
    build()
    build.manifest.write_text('{"version": 1, "images": {"a/0.png": ')
    decoded.clear()
    with caplog.at_level(logging.WARNING, logger="src.data.manifest"):
        build()
    assert len(decoded) == 8 and "ignoring the image manifest" in caplog.text
    assert len(json.loads(build.manifest.read_text())["images"]) == 8


def test_null_manifest_dir_or_no_verification_write_nothing(build, decoded, tmp_path):
    build("data.manifest_dir=null")
    # given statistics: mean/std=auto would remember the training split's beside the manifest
    build("data.verify_images=false", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]")
    assert len(decoded) == 8 and not (tmp_path / "manifests").exists()


def test_each_source_has_its_own_manifest(tmp_path, monkeypatch):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "labels.csv").write_text("path,labels\n")
    monkeypatch.chdir(tmp_path)
    named = manifest_file(tmp_path / "m", Path("x"))
    assert named == manifest_file(tmp_path / "m", tmp_path / "x")
    assert named.parent == tmp_path / "m" and named.suffix == ".json"
    others = {manifest_file(tmp_path / "m", tmp_path / p) for p in ("y", "x/labels.csv")}
    assert named not in others and len(others) == 2
