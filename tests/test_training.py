"""Training as a user relies on it: it learns, logs, checkpoints, evaluates and resumes exactly."""

from pathlib import Path

import pytest
import torch

from src.eval import evaluate
from src.train import train
from tests.conftest import compose_config
from tests.helpers import csv_metric, tensorboard_scalars


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A short digits run with TensorBoard and CSV logging, shared by the tests below."""
    out = tmp_path_factory.mktemp("trained")
    cfg = compose_config(
        "train.yaml",
        out,
        ["extras.print_config=false", "trainer.max_epochs=4", "logger=tensorboard_csv"],
    )
    return out, train(cfg)


def test_a_short_run_learns_digits(trained):
    _, metrics = trained
    assert metrics["test/acc"] > 0.9
    assert metrics["val/acc_best"] >= metrics["val/acc"] - 1e-9


def test_tensorboard_holds_the_contract_metric_names(trained):
    out, metrics = trained
    scalars = tensorboard_scalars(out)
    for tag in ["train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "val/f1"]:
        assert len(scalars[tag]) == 4, tag
    assert scalars["test/acc"] == [pytest.approx(metrics["test/acc"])]
    assert "lr-Adam" in scalars
    assert csv_metric(out, "val/acc") == pytest.approx(scalars["val/acc"])


def test_checkpoints_load_with_torch_safe_loader(trained):
    out, _ = trained
    for name in ["best.ckpt", "last.ckpt"]:
        checkpoint = torch.load(out / "checkpoints" / name, weights_only=True, map_location="cpu")
        assert checkpoint["hyper_parameters"]["class_names"] == [str(i) for i in range(10)]
        assert checkpoint["run_config"]["data"]["_target_"].endswith("DigitsDataModule")
    assert (out / "confusion_matrix.csv").read_text().startswith("true\\pred,0,1,")


def test_eval_reproduces_the_test_metrics_from_the_checkpoint_alone(trained, tmp_path):
    out, metrics = trained
    cfg = compose_config(
        "eval.yaml",
        tmp_path,
        [f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}", "extras.print_config=false"],
    )
    evaluated = evaluate(cfg)
    assert evaluated["test/acc"] == metrics["test/acc"]
    assert evaluated["test/f1"] == pytest.approx(metrics["test/f1"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)


def test_resume_2_plus_2_epochs_equals_4_straight(train_cfg):
    common = [
        "trainer.deterministic=true",
        "logger=csv",
        "scheduler=step",
        "scheduler.step_size=1",
        "scheduler.gamma=0.5",
        "test=false",
    ]
    straight = train_cfg(*common, "trainer.max_epochs=4")
    train(straight)
    first = train_cfg(*common, "trainer.max_epochs=2")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = train_cfg(*common, "trainer.max_epochs=4", f"ckpt_path={last}")
    train(resumed)

    for name in ["val/loss", "val/acc", "val/acc_best", "train/loss"]:
        whole = csv_metric(Path(straight.paths.output_dir), name)
        split = csv_metric(Path(first.paths.output_dir), name)
        split += csv_metric(Path(resumed.paths.output_dir), name)
        assert len(whole) == 4 and len(split) == 4, name
        assert split == pytest.approx(whole, abs=1e-6), name


def test_seed_zero_is_a_seed(train_cfg):
    losses = [train(train_cfg("seed=0", "debug=fdr"))["train/loss"] for _ in range(2)]
    other = train(train_cfg("seed=1", "debug=fdr"))["train/loss"]
    assert losses[0] == losses[1]
    assert other != losses[0]
