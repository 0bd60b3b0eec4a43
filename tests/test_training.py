"""Training as a user relies on it: it learns, logs, checkpoints, evaluates and resumes exactly,
and keeps the best epoch by the monitored metric, whichever way that metric improves."""

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from src.core.metrics import metric_mode
from src.data.digits import load_digit_images
from src.data.transforms import eval_transform_of
from src.eval import evaluate
from src.models.checkpoint import classifier_from_checkpoint, read_checkpoint
from src.models.classifier import MOVED_STATES
from src.train import train
from tests.conftest import FAST, LEAN, LEAN_SHORT, ONE_EPOCH, compose_config
from tests.helpers import (
    csv_metric,
    run_status,
    session_hparams,
    tensorboard_events,
    tensorboard_scalars,
)


def epochs_run(run_dir: Path) -> int:
    """How many epochs the run trained, from its epoch times."""
    return len(tensorboard_scalars(run_dir)["train/epoch_time"])


def best_so_far(values: list[float], mode: str) -> list[float]:
    pick = max if mode == "max" else min
    return [pick(values[: i + 1]) for i in range(len(values))]


def checkpoint_callback_state(checkpoint: dict, name: str) -> dict:
    return next(v for k, v in checkpoint["callbacks"].items() if k.startswith(name))


def test_the_default_run_beats_98_percent_on_digits(default_run):
    """What `make train` does: the default config, nothing overridden."""
    _, metrics = default_run
    assert metrics["test/acc"] >= 0.98


def test_tensorboard_and_csv_hold_the_contract_metric_names(default_run):
    out, metrics = default_run
    epochs = epochs_run(out)
    scalars = tensorboard_scalars(out)
    for tag in ["train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "val/f1"]:
        assert len(scalars[tag]) == epochs, tag
    assert scalars["test/acc"] == [pytest.approx(metrics["test/acc"])]
    assert scalars["train/lr"] == [pytest.approx(1e-3)] * epochs
    assert len(scalars["train/epoch_time"]) == epochs and min(scalars["train/epoch_time"]) > 0
    assert csv_metric(out, "val/acc") == pytest.approx(scalars["val/acc"])


def test_every_validation_metric_has_its_best_so_far_in_its_direction(default_run):
    out, _ = default_run
    scalars = tensorboard_scalars(out)
    for name in ["val/loss", "val/acc", "val/f1", "val/acc_top5"]:
        expected = best_so_far(scalars[name], metric_mode(name))
        assert scalars[f"{name}_best"] == pytest.approx(expected), name
    assert scalars["val/loss_best"][-1] == pytest.approx(min(scalars["val/loss"]))


def test_best_ckpt_is_the_first_epoch_with_the_highest_val_acc(default_run):
    out, metrics = default_run
    accuracies = tensorboard_scalars(out)["val/acc"]
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == accuracies.index(max(accuracies))
    state = checkpoint_callback_state(best, "ModelCheckpoint")
    assert float(state["best_model_score"]) == pytest.approx(max(accuracies))
    assert metrics["val/acc_best"] == pytest.approx(max(accuracies))


def test_monitor_val_loss_keeps_the_epoch_with_the_lowest_loss(train_cfg):
    short = ["trainer.limit_train_batches=8", "trainer.limit_val_batches=3"]
    cfg = train_cfg(*LEAN, *short, "monitor=val/loss", "trainer.max_epochs=5", "optimizer.lr=0.003")
    metrics = train(cfg)
    out = Path(cfg.paths.output_dir)
    losses = tensorboard_scalars(out)["val/loss"]
    assert len(losses) == 5
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == losses.index(min(losses))  # the lowest, not the highest
    for callback, key in [("ModelCheckpoint", "best_model_score"), ("EarlyStopping", "best_score")]:
        state = checkpoint_callback_state(best, callback)
        assert float(state[key]) == pytest.approx(min(losses)), callback
    assert tensorboard_scalars(out)["val/loss_best"] == pytest.approx(best_so_far(losses, "min"))
    # what a sweep receives: optimized_metric follows the monitor
    assert cfg.optimized_metric == "val/loss_best"
    assert metrics["val/loss_best"] == pytest.approx(min(losses))


def test_tensorboard_compares_runs_by_hyperparameters_and_status(default_run):
    out, _ = default_run
    hparams = session_hparams(out)
    assert hparams["optimizer.lr"] == 1e-3 and hparams["optimizer._target_"] == "torch.optim.Adam"
    assert hparams["data.batch_size"] == 64 and hparams["seed"] == 42
    assert hparams["trainer.precision"] == "32-true"
    assert hparams["monitor"] == "val/acc" and hparams["optimized_metric"] == "val/acc_best"
    assert hparams["data.pipeline"] == "batched"  # the augmentation, key by key
    assert hparams["data.augment.degrees"] == 10 and hparams["data.augment.hflip"] == 0.0
    assert hparams["data.augment.translate"] == "[0.1, 0.1]"
    recording = ("paths.", "logger.", "extras.", "callbacks.")  # where and how, not what
    assert not any(key.startswith(recording) for key in hparams)
    for key in ("trainer.default_root_dir", "task_name", "tags", "ckpt_path"):
        assert key not in hparams  # not hyperparameters (src/tracking/hparams.py)
    assert run_status(out).startswith("finished")
    end = tensorboard_events(out).PluginTagToContent("hparams")["_hparams_/session_end_info"]
    assert HParamsPluginData.FromString(end).session_end_info.status == api_pb2.STATUS_SUCCESS


def test_tensorboard_shows_augmented_images_and_the_confusion_matrix(default_run):
    out, _ = default_run
    images = tensorboard_events(out).Images
    grid = images("train/augmented_images")
    assert len(grid) == 1 and grid[0].width > 100  # 32 images of 32x32, 8 to a row
    figure = images("test/confusion_matrix")
    assert len(figure) == 1 and figure[0].encoded_image_string.startswith(b"\x89PNG")


def test_histograms_and_graph_are_config_switches(train_cfg):
    cfg = train_cfg(
        *LEAN,
        *ONE_EPOCH,
        "callbacks=[default,histograms]",
        "logger.tensorboard.log_graph=true",
    )
    train(cfg)
    events = tensorboard_events(Path(cfg.paths.output_dir))
    model = instantiate(cfg.model, optimizer=cfg.optimizer, _recursive_=False)
    parameters = [name for name, _ in model.named_parameters()]
    histograms = set(events.Tags()["histograms"])
    assert {f"weights/{name}" for name in parameters} <= histograms
    assert {f"gradients/{name}" for name in parameters} <= histograms
    assert events.Tags()["graph"]


def test_last_ckpt_is_the_last_epoch_also_after_early_stopping(default_run):
    out, _ = default_run
    epochs = epochs_run(out)
    assert epochs < 30  # early stopping ended the run, epochs after the best one
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    assert last["epoch"] == epochs - 1 and best["epoch"] < last["epoch"]


def test_checkpoints_load_with_torch_safe_loader(default_run):
    out, _ = default_run
    for name in ["best.ckpt", "last.ckpt"]:
        checkpoint = torch.load(out / "checkpoints" / name, weights_only=True, map_location="cpu")
        assert checkpoint["hyper_parameters"]["class_names"] == [str(i) for i in range(10)]
        assert checkpoint["run_config"]["data"]["_target_"].endswith("DigitsDataModule")
    assert (out / "confusion_matrix.csv").read_text().startswith("true\\pred,0,1,")


def test_eval_reproduces_the_test_metrics_from_the_checkpoint_alone(default_run, tmp_path):
    out, metrics = default_run
    cfg = compose_config(
        "eval.yaml",
        tmp_path,
        [f"ckpt_path={out / 'checkpoints' / 'best.ckpt'}", "extras.print_config=false"],
    )
    evaluated = evaluate(cfg)
    assert evaluated["test/acc"] == metrics["test/acc"]
    assert evaluated["test/f1"] == pytest.approx(metrics["test/f1"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)
    # eval writes the same per-class table as the run's test did
    assert (tmp_path / "per_class.csv").read_text() == (out / "per_class.csv").read_text()


def test_a_checkpoint_from_before_the_loss_and_metrics_modules_still_evaluates(
    default_run, tmp_path
):
    out, metrics = default_run
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    state = checkpoint["state_dict"]
    best = float(state["metrics.val_best.acc.max_value"])
    for new, old in [(new, old) for old, new in MOVED_STATES.items()]:  # as such files were
        for key in [k for k in state if k == new or (new.endswith(".") and k.startswith(new))]:
            state[old + key[len(new) :]] = state.pop(key)
    assert "pos_weight" in state and "val_best.acc.max_value" in state
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    cfg = compose_config("eval.yaml", tmp_path / "eval", [f"ckpt_path={old}"])
    assert evaluate(cfg)["test/acc"] == metrics["test/acc"]
    model = classifier_from_checkpoint(torch.load(old, weights_only=True))
    assert model.metrics.val_best["acc"].compute() == pytest.approx(best)


OLD_DIGITS_TRANSFORMS = [  # what data=digits held before data.augment: torchvision lists
    {"_target_": "torchvision.transforms.v2.ToImage"},
    {
        "_target_": "torchvision.transforms.v2.ToDtype",
        "dtype": {"_target_": "hydra.utils.get_object", "path": "torch.float32"},
        "scale": True,
    },
    {"_target_": "torchvision.transforms.v2.Normalize", "mean": [0.305] * 3, "std": [0.324] * 3},
]


def test_a_checkpoint_with_transform_lists_still_evaluates_and_predicts(default_run, tmp_path):
    out, metrics = default_run
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    data = checkpoint["run_config"]["data"]
    for key in ("pipeline", "augment", "mean", "std"):
        del data[key]
    data["train_transforms"] = data["eval_transforms"] = OLD_DIGITS_TRANSFORMS
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    cfg = compose_config("eval.yaml", tmp_path / "eval", [f"ckpt_path={old}"])
    evaluated = evaluate(cfg)  # per image, as it was trained
    assert evaluated["test/acc"] == metrics["test/acc"]
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)
    images, _ = load_digit_images()
    expected = eval_transform_of(
        read_checkpoint(out / "checkpoints" / "best.ckpt")["run_config"]["data"]
    )
    assert torch.allclose(eval_transform_of(data)(images[0]), expected(images[0]), atol=1e-6)


def test_resume_2_plus_2_epochs_equals_4_straight(train_cfg):
    common = [
        *LEAN_SHORT,
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

    for name in ["val/loss", "val/acc", "val/acc_best", "val/loss_best", "train/loss"]:
        whole = csv_metric(Path(straight.paths.output_dir), name)
        split = csv_metric(Path(first.paths.output_dir), name)
        split += csv_metric(Path(resumed.paths.output_dir), name)
        assert len(whole) == 4 and len(split) == 4, name
        assert split == pytest.approx(whole, abs=1e-6), name


def test_seed_zero_is_a_seed(train_cfg):
    losses = [train(train_cfg("seed=0", "debug=fdr"))["train/loss"] for _ in range(2)]
    other = train(train_cfg("seed=1", "debug=fdr"))["train/loss"]
    assert math.isfinite(losses[0]) and losses[0] == losses[1]
    assert other != losses[0]


def test_test_ckpt_last_scores_the_final_weights_and_best_the_monitors_epoch(train_cfg, tmp_path):
    """test_ckpt=last tests last.ckpt (what eval of last.ckpt gives), not best.ckpt; best.ckpt
    holds the monitor's best epoch, here not the last: two epochs learn, then a 100-fold lr
    ruins the third."""
    cfg = train_cfg(
        *LEAN,
        "test_ckpt=last",
        "trainer.max_epochs=3",
        "scheduler=step",
        "scheduler.step_size=2",
        "scheduler.gamma=100",
    )
    metrics = train(cfg)
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    scores, epochs = {}, {}
    for name in ("last", "best"):
        ckpt = checkpoints / f"{name}.ckpt"
        epochs[name] = torch.load(ckpt, weights_only=True)["epoch"]
        overrides = [*FAST, f"ckpt_path={ckpt}"]
        scores[name] = evaluate(compose_config("eval.yaml", tmp_path / name, overrides))
    assert (epochs["best"], epochs["last"]) == (1, 2)
    assert metrics["test/loss"] == pytest.approx(scores["last"]["test/loss"], abs=1e-6)
    assert scores["best"]["test/acc"] > scores["last"]["test/acc"] + 0.3


def test_a_bad_test_ckpt_is_refused_in_one_line(train_cfg):
    with pytest.raises(Exception, match="test_ckpt=newest is not a choice: use best or last"):
        train(train_cfg("test_ckpt=newest", "trainer.max_epochs=1"))  # before any work
