"""Training as a user relies on it: it learns, logs, checkpoints, evaluates and resumes exactly."""

from pathlib import Path

import pytest
import torch
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from src.eval import evaluate
from src.train import train
from tests.conftest import compose_config
from tests.helpers import (
    csv_metric,
    run_status,
    session_hparams,
    tensorboard_events,
    tensorboard_scalars,
)


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
    assert scalars["train/lr"] == [pytest.approx(1e-3)] * 4
    assert len(scalars["train/epoch_time"]) == 4 and min(scalars["train/epoch_time"]) > 0
    assert csv_metric(out, "val/acc") == pytest.approx(scalars["val/acc"])


def test_tensorboard_compares_runs_by_hyperparameters_and_status(trained):
    out, _ = trained
    hparams = session_hparams(out)
    assert hparams["optimizer.lr"] == 1e-3 and hparams["optimizer._target_"] == "torch.optim.Adam"
    assert hparams["data.batch_size"] == 64 and hparams["seed"] == 42
    assert hparams["trainer.precision"] == "32-true"
    assert hparams["monitor"] == "val/acc" and hparams["optimized_metric"] == "val/acc_best"
    transforms = hparams["data.train_transforms"]  # the augmentation, compactly
    assert "RandomAffine(degrees=10, translate=[0.1, 0.1]" in transforms
    assert "ToDtype(dtype=torch.float32, scale=True)" in transforms
    recording = ("paths.", "logger.", "extras.", "callbacks.")  # where and how, not what
    assert not any(key.startswith(recording) for key in hparams)
    assert "trainer.default_root_dir" not in hparams  # a folder, not a hyperparameter
    status = run_status(out)
    assert status[0].startswith("running: pid ") and status[-1] == "finished"
    end = tensorboard_events(out).PluginTagToContent("hparams")["_hparams_/session_end_info"]
    assert HParamsPluginData.FromString(end).session_end_info.status == api_pb2.STATUS_SUCCESS


def test_tensorboard_shows_augmented_images_and_the_confusion_matrix(trained):
    out, _ = trained
    images = tensorboard_events(out).Images
    grid = images("train/augmented_images")
    assert len(grid) == 1 and grid[0].width > 100  # 32 images of 32x32, 8 to a row
    figure = images("test/confusion_matrix")
    assert len(figure) == 1 and figure[0].encoded_image_string.startswith(b"\x89PNG")


def test_histograms_and_graph_are_config_switches(tmp_path):
    overrides = [
        "extras.print_config=false",
        "trainer.max_epochs=1",
        "callbacks=[default,histograms]",
        "logger.tensorboard.log_graph=true",
    ]
    train(compose_config("train.yaml", tmp_path, overrides))
    events = tensorboard_events(tmp_path)
    histograms = events.Tags()["histograms"]
    assert "weights/net.classifier.0.weight" in histograms or any(
        h.startswith("weights/net.") for h in histograms
    )
    assert any(h.startswith("gradients/net.") for h in histograms)
    assert events.Tags()["graph"]


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
