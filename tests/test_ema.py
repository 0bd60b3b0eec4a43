"""callbacks=[default,ema]: validation, checkpoints, the test and predict use the weights'
exponential moving average, and a resumed run continues the average exactly."""

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import Tensor

from src.callbacks.ema import EMA
from src.core.errors import ConfigError
from src.models.checkpoint import classifier_from_checkpoint, read_checkpoint
from src.train import train
from tests.conftest import LEAN, SMALL_MULTILABEL, compose_config

# lean runs that validate and test on one batch, logging nothing
ONE_EVAL_BATCH = [
    *LEAN,
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "logger=none",
]


def weights(module: torch.nn.Module) -> dict[str, Tensor]:
    """A copy of the parameters and buffers (what the average covers), by state_dict name."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return {name: value.detach().clone() for name, value in named}


class WeightSpy(L.Callback):
    """Records the raw weights after every optimizer step and the weights validation and the
    test run on (added after the EMA callback, so its hooks see what EMA swapped in)."""

    last: "WeightSpy"

    def __init__(self) -> None:
        self.steps: list[dict[str, Tensor]] = []
        self.validated: list[dict[str, Tensor]] = []
        self.tested: dict[str, Tensor] = {}
        WeightSpy.last = self

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(weights(pl_module))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.validated.append(weights(pl_module))

    def on_test_start(self, trainer, pl_module) -> None:
        self.tested = weights(pl_module)


def expected_average(steps: list[dict[str, Tensor]], decay: float) -> dict[str, Tensor]:
    """The EMA by its definition: the first step's weights, then a <- decay a + (1 - decay) w;
    counters (num_batches_tracked) follow the model."""
    average = dict(steps[0])
    for step in steps[1:]:
        average = {
            k: decay * a + (1 - decay) * step[k] if a.is_floating_point() else step[k]
            for k, a in average.items()
        }
    return average


def assert_close(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    assert actual.keys() >= expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=1e-6, msg=name)


def largest_difference(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_ema_composes_with_the_default_callbacks(tmp_path: Path):
    cfg = compose_config("train.yaml", tmp_path, ["callbacks=[default,ema]"])
    assert cfg.callbacks.ema._target_ == "src.callbacks.ema.EMA"
    assert {"model_checkpoint", "last_checkpoint", "early_stopping", "rng_state"} <= set(
        cfg.callbacks
    )


def test_a_bad_decay_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="callbacks.ema.decay"):
        EMA(decay=1.5)


def test_validation_best_ckpt_test_and_predict_use_the_average(tmp_path: Path):
    decay = 0.5  # a short memory: the average differs clearly from the last weights
    overrides = [
        *ONE_EVAL_BATCH,
        "callbacks=[default,ema]",
        f"callbacks.ema.decay={decay}",
        "+callbacks.spy._target_=tests.test_ema.WeightSpy",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
    ]
    metrics = train(compose_config("train.yaml", tmp_path, overrides))
    spy = WeightSpy.last
    raw = spy.steps[-1]
    average = expected_average(spy.steps, decay)
    assert len(spy.steps) == 4 and largest_difference(average, raw) > 1e-3

    # validation and the test after training ran on the average, not on the raw weights
    assert_close(spy.validated[-1], average)
    assert_close(spy.tested, average)
    assert "test/acc" in metrics
    # BatchNorm running statistics are averaged too; its counter follows the model
    stats = [k for k in average if k.endswith("running_mean")]
    assert stats and largest_difference({k: average[k] for k in stats}, raw) > 0
    counter = next(k for k in average if k.endswith("num_batches_tracked"))
    assert spy.tested[counter] == raw[counter] == 4

    # best.ckpt: the average in state_dict (what eval and predict load), the raw weights beside
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    assert_close(checkpoint["state_dict"], average)
    assert_close(checkpoint["current_model_state"], raw)
    assert_close(weights(classifier_from_checkpoint(checkpoint)), average)
    # the val/*_best states are the model's, not the average's stale copy (-inf)
    assert checkpoint["state_dict"]["metrics.val_best.acc.max_value"] == pytest.approx(
        metrics["val/acc_best"]
    )


def test_a_resumed_run_continues_the_average_exactly(tmp_path: Path):
    overrides = [
        *ONE_EVAL_BATCH,
        "callbacks=[default,ema]",
        "callbacks.ema.decay=0.8",
        "trainer.deterministic=true",
        "trainer.limit_train_batches=3",
        "test=false",
    ]
    whole, first, resumed = tmp_path / "whole", tmp_path / "first", tmp_path / "resumed"
    train(compose_config("train.yaml", whole, [*overrides, "trainer.max_epochs=2"]))
    train(compose_config("train.yaml", first, [*overrides, "trainer.max_epochs=1"]))
    resume = [*overrides, "trainer.max_epochs=2", f"ckpt_path={first}/checkpoints/last.ckpt"]
    train(compose_config("train.yaml", resumed, resume))

    expected = read_checkpoint(whole / "checkpoints" / "last.ckpt")
    actual = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert actual["global_step"] == expected["global_step"] == 6
    assert expected["averaging_state"]["n_averaged"] == 6
    for key in ("state_dict", "current_model_state", "averaging_state"):
        assert expected[key].keys() == actual[key].keys()
        for name, value in expected[key].items():
            assert torch.equal(actual[key][name], value), f"{key}: {name}"


def test_multilabel_pos_weight_auto_stays_exact_under_the_average(tmp_path: Path):
    overrides = [
        *ONE_EVAL_BATCH,
        *SMALL_MULTILABEL,
        "model.pos_weight=auto",
        "callbacks=[default,ema]",
        "callbacks.ema.decay=0.9",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
    ]
    metrics = train(compose_config("train.yaml", tmp_path, overrides))
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    found = checkpoint["current_model_state"]["criterion.pos_weight"]
    assert (found > 1).all()  # negatives outnumber positives for every label
    assert torch.equal(
        checkpoint["state_dict"]["criterion.pos_weight"], found
    )  # a lerp keeps constants
    assert checkpoint["state_dict"]["metrics.val_best.map.max_value"] == pytest.approx(
        metrics["val/map_best"]
    )
