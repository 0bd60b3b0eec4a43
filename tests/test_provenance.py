"""Provenance: every run folder and checkpoint records the commit, whether the tree was dirty
(the diff beside it), the Python and the library versions; compare_runs shows the commit."""

import csv
import json
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from PIL import Image

from scripts.compare_runs import main as compare_runs
from src import PROJECT_ROOT
from src.core.errors import ConfigError
from src.eval import evaluate
from src.predict import predict
from src.tracking.provenance import PACKAGES, collect_provenance, record_provenance
from src.train import train
from tests.conftest import FAST, LEAN, ONE_EPOCH, compose_config

TINY_RUN = [*LEAN, *ONE_EPOCH, "trainer.num_sanity_val_steps=0", "test=false"]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A one-epoch run of the project as it is checked out now."""
    out = tmp_path_factory.mktemp("provenance_run")
    train(compose_config("train.yaml", out, TINY_RUN))
    return out


def test_a_run_records_the_commit_the_tree_and_the_versions(run: Path):
    recorded = json.loads((run / "provenance.json").read_text())
    assert recorded["commit"] == git(PROJECT_ROOT, "rev-parse", "HEAD").strip()
    assert recorded["dirty"] == bool(git(PROJECT_ROOT, "status", "--porcelain"))
    assert (run / "git_diff.patch").exists() == bool(git(PROJECT_ROOT, "diff", "HEAD"))
    assert recorded["python"] == platform.python_version()
    assert recorded["packages"] == {package: version(package) for package in PACKAGES}
    for name in ("last.ckpt", "best.ckpt"):
        checkpoint = torch.load(run / "checkpoints" / name, weights_only=True)
        assert checkpoint["provenance"] == recorded, name


def test_a_refused_run_records_nothing(tmp_path: Path):
    with pytest.raises((ConfigError, InstantiationException), match="tune.mode"):
        train(compose_config("train.yaml", tmp_path, [*TINY_RUN, "tune=batch_size", "tune.mode=x"]))
    assert not (tmp_path / "provenance.json").exists()


def test_eval_and_predict_record_it_in_their_run_folders(run: Path, tmp_path: Path):
    ckpt = run / "checkpoints" / "last.ckpt"
    head = git(PROJECT_ROOT, "rev-parse", "HEAD").strip()
    evaluate(compose_config("eval.yaml", tmp_path / "eval", [*FAST, f"ckpt_path={ckpt}"]))
    assert json.loads((tmp_path / "eval" / "provenance.json").read_text())["commit"] == head
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (8, 8)).save(images / "blank.png")
    overrides = [*FAST, f"ckpt_path={ckpt}", f"input={images}"]
    predict(compose_config("predict.yaml", tmp_path / "predict", overrides))
    assert json.loads((tmp_path / "predict" / "provenance.json").read_text())["commit"] == head


def test_compare_runs_shows_the_commit_column(run: Path, tmp_path: Path):
    assert compare_runs([str(run), "--columns", "commit,torch", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "comparison.csv", newline="") as file:
        (row,) = csv.DictReader(file)
    assert row["commit"] == git(PROJECT_ROOT, "rev-parse", "HEAD").strip()
    assert row["torch"] == version("torch")


def test_compare_runs_refuses_an_unknown_column_in_one_line(run: Path, tmp_path: Path, capsys):
    assert compare_runs([str(run), "--columns", "comit", "--out", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --columns comit:") and "commit" in line
    assert not (tmp_path / "comparison.csv").exists()


def test_outside_a_git_checkout_the_commit_is_null_and_nothing_fails(tmp_path: Path, monkeypatch):
    info = record_provenance(tmp_path / "run", folder=tmp_path)
    assert (info["commit"], info["dirty"], info["untracked"]) == (None, None, [])
    assert json.loads((tmp_path / "run" / "provenance.json").read_text()) == info
    assert not (tmp_path / "run" / "git_diff.patch").exists()
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    info, diff = collect_provenance(PROJECT_ROOT)
    assert (info["commit"], info["dirty"], diff) == (None, None, "")
    assert info["packages"]["torch"] == version("torch")


def test_a_dirty_tree_saves_its_diff_and_lists_untracked_files(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "model.py").write_text("lr = 0.1\n")
    git(repo, "add", "model.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    clean = record_provenance(tmp_path / "clean", folder=repo)
    assert clean["commit"] == git(repo, "rev-parse", "HEAD").strip() and clean["dirty"] is False
    assert not (tmp_path / "clean" / "git_diff.patch").exists()

    (repo / "model.py").write_text("lr = 0.2\n")
    (repo / "notes.txt").write_text("new\n")
    dirty = record_provenance(tmp_path / "dirty", folder=repo)
    assert dirty["dirty"] is True and dirty["untracked"] == ["notes.txt"]
    patch = (tmp_path / "dirty" / "git_diff.patch").read_text()
    assert "-lr = 0.1\n+lr = 0.2" in patch
    git(repo, "checkout", "-q", "model.py")
    (repo / "notes.txt").unlink()
    git(repo, "apply", str(tmp_path / "dirty" / "git_diff.patch"))  # the patch restores it
    assert (repo / "model.py").read_text() == "lr = 0.2\n"
    git(repo, "checkout", "-q", "model.py")  # the folder recorded again from a clean tree
    assert record_provenance(tmp_path / "dirty", folder=repo)["dirty"] is False
    assert not (tmp_path / "dirty" / "git_diff.patch").exists()
