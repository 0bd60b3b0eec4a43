"""The classifier module refuses inconsistent settings before any work starts."""

import pytest
import torch
from hydra.utils import instantiate

from src.core.errors import user_error_in
from src.eval import evaluate
from src.train import train
from tests.conftest import compose_config
from tests.helpers import optimizer_of


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
        ("optimizer.weight_decay=-1", "optimizer.weight_decay=-1 is refused by"),
        ("model.pos_weight=auto", "model.pos_weight applies to multi-label data"),
        ("scheduler=plateau scheduler.factor=2", "scheduler.factor=2 is refused by"),
    ],
)
def test_settings_are_checked_when_the_model_is_built(train_cfg, override, message):
    with pytest.raises(Exception) as error:
        build(train_cfg(*override.split()))
    assert message in str(user_error_in(error.value))


def test_a_scheduler_config_reaches_the_optimizer(train_cfg):
    model = build(train_cfg("scheduler=step", "scheduler.step_size=3", "scheduler.gamma=0.5"))
    scheduler = optimizer_of(model)["lr_scheduler"]
    assert (scheduler["scheduler"].step_size, scheduler["scheduler"].gamma) == (3, 0.5)
    assert scheduler["interval"] == "epoch"


def test_class_weights_and_label_smoothing_reach_the_loss(train_cfg):
    weights = [float(i + 1) for i in range(10)]
    model = build(train_cfg(f"model.class_weights={weights}", "model.label_smoothing=0.1"))
    assert torch.equal(model.criterion.weight, torch.tensor(weights))
    assert model.criterion.label_smoothing == 0.1


@pytest.mark.slow
def test_resnet50_trains_an_epoch_and_its_checkpoint_evaluates_the_same(train_cfg, tmp_path):
    cfg = train_cfg("model=resnet50", "optimizer=adam", "trainer.max_epochs=1")
    metrics = train(cfg)
    best = f"ckpt_path={cfg.paths.output_dir}/checkpoints/best.ckpt"
    evaluated = evaluate(compose_config("eval.yaml", tmp_path / "eval", [best]))
    assert evaluated["test/acc"] == metrics["test/acc"]
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)
