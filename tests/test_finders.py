"""tune=lr and tune=batch_size: Lightning's finders before training, their result used (or only
reported), the plot saved, and the run otherwise unchanged."""

import logging
from pathlib import Path
from types import SimpleNamespace

import hydra
import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf

from src.callbacks.finders import BatchSizeFinder, LearningRateFinder, record_learning_rate
from src.callbacks.run_config import RunConfigCheckpoint
from src.core.errors import ConfigError
from src.models.checkpoint import read_checkpoint
from src.tracking.report import compare
from src.train import train
from tests.conftest import LEAN, compose_config
from tests.helpers import optimizer_of, session_hparams, tensorboard_events, tensorboard_scalars

# lean, deterministic runs that validate on one batch and never test
FINDER_RUN = [
    *LEAN,
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.deterministic=true",
    "test=false",
]
# 16 training steps in 2 epochs; the lr search takes 15 of them (the fewest that give a
# suggestion: its first 10 points and its last are never suggested)
LR_SEARCH = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=8",
    "tune=lr",
    "tune.num_training_steps=15",
    "tune.early_stop_threshold=null",
]
PNG = b"\x89PNG\r\n\x1a\n"


class BatchSpy(L.Callback):
    """Records the size of every training and test batch."""

    last: "BatchSpy"

    def __init__(self) -> None:
        self.train: list[int] = []
        self.test: list[int] = []
        BatchSpy.last = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train.append(len(batch[1]))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.test.append(len(batch[1]))


def suggestion(run: Path) -> float:
    """The finder's suggestion, as its callback saved it in the run's last checkpoint."""
    checkpoint = read_checkpoint(run / "checkpoints" / "last.ckpt")
    return checkpoint["callbacks"]["LearningRateFinder"]["suggestion"]


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory) -> Path:
    """Two short epochs after an lr search whose suggestion was applied."""
    out = tmp_path_factory.mktemp("lr_run")
    train(compose_config("train.yaml", out, [*FINDER_RUN, *LR_SEARCH]))
    return out


def test_the_lr_finder_trains_with_its_suggestion_and_saves_its_plot(lr_run: Path):
    lr = suggestion(lr_run)
    assert lr is not None and lr != 0.001  # configs/optimizer/adam.yaml's lr
    checkpoint = read_checkpoint(lr_run / "checkpoints" / "last.ckpt")
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == lr
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == lr
    assert tensorboard_scalars(lr_run)["train/lr"] == pytest.approx([lr, lr], rel=1e-6)
    assert (lr_run / "lr_finder.png").read_bytes().startswith(PNG)
    (figure,) = tensorboard_events(lr_run).Images("tune/lr_finder")
    assert figure.encoded_image_string.startswith(PNG)


def test_the_records_of_a_run_show_the_lr_it_trained_with(lr_run: Path):
    lr = suggestion(lr_run)
    checkpoint = torch.load(lr_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["run_config"]["optimizer"]["lr"] == lr != 0.001
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == lr
    assert session_hparams(lr_run)["optimizer.lr"] == lr  # TensorBoard's HPARAMS
    columns, (row,) = compare(lr_run)
    assert "optimizer.lr" in columns and row["optimizer.lr"] == str(lr)


def test_a_run_with_the_lr_search_trains_exactly_as_one_given_its_lr(lr_run: Path, tmp_path):
    # the search restores the weights, optimizer and every random draw: the rest of the run is
    # the run that was configured with the suggested lr from the start
    lr = suggestion(lr_run)
    plain = [*FINDER_RUN, *LR_SEARCH[:2], f"optimizer.lr={lr!r}"]
    train(compose_config("train.yaml", tmp_path, plain))
    searched = read_checkpoint(lr_run / "checkpoints" / "last.ckpt")["state_dict"]
    configured = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    assert searched.keys() == configured.keys()
    for name, value in configured.items():
        assert torch.equal(searched[name], value), name


def test_a_resumed_run_keeps_the_lr_found_and_does_not_search_again(lr_run: Path, tmp_path):
    last = lr_run / "checkpoints" / "last.ckpt"
    resume = [*FINDER_RUN, *LR_SEARCH, "trainer.max_epochs=3", f"ckpt_path={last}"]
    train(compose_config("train.yaml", tmp_path, resume))
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 24  # 16 steps before, 8 after: the loops were restored
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == suggestion(lr_run)
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == suggestion(lr_run)
    assert not (tmp_path / "lr_finder.png").exists()


def test_apply_false_reports_the_suggestion_and_keeps_the_configured_lr(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="src.callbacks.finders")
    train(compose_config("train.yaml", tmp_path, [*FINDER_RUN, *LR_SEARCH, "tune.apply=false"]))
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == 0.001
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == 0.001
    assert checkpoint["run_config"]["optimizer"]["lr"] == 0.001
    assert session_hparams(tmp_path)["optimizer.lr"] == 0.001
    assert "optimizer.lr" not in compare(tmp_path)[0]  # not tuned, not overridden
    lr = suggestion(tmp_path)
    assert f"suggested lr {lr:.4g}, not applied (tune.apply=false)" in caplog.text
    assert (tmp_path / "lr_finder.png").read_bytes().startswith(PNG)


def test_a_one_cycle_max_lr_read_from_the_old_lr_follows_the_new_one(tmp_path):
    cfg = compose_config("train.yaml", tmp_path, ["scheduler=onecycle"])
    model = hydra.utils.instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, _recursive_=False
    )
    run_config = RunConfigCheckpoint(OmegaConf.to_container(cfg, resolve=True))
    record_learning_rate(SimpleNamespace(callbacks=[run_config]), model, 0.02)
    assert model.hparams.optimizer["lr"] == model.hparams.scheduler["max_lr"] == 0.02
    assert run_config.config["optimizer"]["lr"] == run_config.config["scheduler"]["max_lr"] == 0.02
    scheduler = optimizer_of(model)["lr_scheduler"]["scheduler"]
    assert scheduler.optimizer.param_groups[0]["max_lr"] == 0.02


def test_the_batch_size_finder_trains_and_tests_with_the_size_it_found(tmp_path, caplog):
    overrides = [
        *FINDER_RUN,
        "test=true",
        "trainer.limit_test_batches=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "tune=batch_size",
        "tune.init_val=2",
        "tune.max_trials=3",  # tries 2, 4 and 8: on a CPU nothing runs out of memory
        "tune.steps_per_trial=1",
        "+callbacks.spy._target_=tests.test_finders.BatchSpy",
    ]
    train(compose_config("train.yaml", tmp_path, overrides))
    assert BatchSpy.last.train == [8, 8]  # data.batch_size was 32
    assert BatchSpy.last.test == [8]
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["callbacks"]["BatchSizeFinder"] == {"batch_size": 8}
    # what the run records is the size it trained with
    assert torch.load(last, weights_only=True)["run_config"]["data"]["batch_size"] == 8
    assert session_hparams(tmp_path)["data.batch_size"] == 8
    columns, (row,) = compare(tmp_path)
    assert "data.batch_size" in columns and row["data.batch_size"] == "8"

    # a resume trains on with the size found, without searching again
    caplog.set_level(logging.INFO, logger="src.callbacks.finders")
    resume = [*overrides, "test=false", "trainer.max_epochs=2", f"ckpt_path={last}"]
    train(compose_config("train.yaml", tmp_path / "resumed", resume))
    assert BatchSpy.last.train == [8, 8]
    assert "Batch-size finder skipped on resume: batch size 8" in caplog.text


def test_bad_finder_settings_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="tune.min_lr"):
        LearningRateFinder(min_lr=0.1, max_lr=0.01)
    with pytest.raises(ConfigError, match="tune.mode"):
        BatchSizeFinder(mode="linear")
    with pytest.raises(ConfigError, match="without trainer=ddp"):
        BatchSizeFinder().setup(SimpleNamespace(strategy=DDPStrategy()), None, "fit")
