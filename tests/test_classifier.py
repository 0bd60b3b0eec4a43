"""The classifier module refuses inconsistent settings before any work starts."""

import pytest
import torch
from hydra.utils import instantiate

from src.train import train
from src.utils.errors import user_error_in


def build(cfg):
    return instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, _recursive_=False
    )


def test_head_wider_or_narrower_than_the_data_is_refused(train_cfg):
    with pytest.raises(Exception) as error:
        build(train_cfg("+model.net.num_classes=5"))
    assert "head has 5 outputs but the data has 10 classes" in str(user_error_in(error.value))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.class_weights=[1,2]", "model.class_weights needs 10 non-negative numbers"),
        ("model.task=regression", "model.task='regression' is not supported"),
        ("optimizer.weight_decay=-1", "bad optimizer settings"),
        ("model.pos_weight=auto", "model.pos_weight applies to multi-label data"),
        ("scheduler=step", None),
    ],
)
def test_settings_are_checked_when_the_model_is_built(train_cfg, override, message):
    if message is None:
        assert build(train_cfg(override)).hparams.scheduler["step_size"] == 10
        return
    with pytest.raises(Exception) as error:
        build(train_cfg(override))
    assert message in str(user_error_in(error.value))


def test_class_weights_and_label_smoothing_reach_the_loss(train_cfg):
    weights = [float(i + 1) for i in range(10)]
    model = build(train_cfg(f"model.class_weights={weights}", "model.label_smoothing=0.1"))
    assert torch.equal(model.criterion.weight, torch.tensor(weights))
    assert model.criterion.label_smoothing == 0.1


def test_the_default_run_beats_98_percent_on_digits(train_cfg):
    """What `make train` does: the default config, nothing overridden."""
    metrics = train(train_cfg())
    assert metrics["test/acc"] >= 0.98


@pytest.mark.slow
def test_resnet50_trains_an_epoch_on_digits(train_cfg):
    metrics = train(train_cfg("model=resnet50", "optimizer=adam", "trainer.max_epochs=1"))
    assert metrics["test/acc"] > 0.1
