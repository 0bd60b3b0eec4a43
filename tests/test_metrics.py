"""The one table of metric directions, the resolver the configs read it through, and the
macro precision and recall of multi-class runs."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.metrics import precision_score, recall_score

from src.core.errors import ConfigError, one_line_reason, user_error_in
from src.core.metrics import DIRECTIONS, default_monitor, metric_mode
from src.models.tasks import task_metrics


@pytest.mark.parametrize(
    ("metric", "mode"),
    [
        ("val/acc", "max"),
        ("val/acc_best", "max"),
        ("test/acc_top5", "max"),
        ("val/f1_micro", "max"),
        ("val/map_best", "max"),
        ("test/per_class/ap/7", "max"),  # per class: per_class/<metric>/<class name>
        ("test/per_class/f1/hot_dog", "max"),
        ("val/exact_match", "max"),
        ("val/precision", "max"),
        ("train/recall", "max"),
        ("val/loss", "min"),
        ("val/loss_best", "min"),
        ("val/hamming", "min"),  # a distance
        ("val/hamming_best", "min"),
        ("val/calibration_error", "min"),
        ("train/epoch_time", "min"),
    ],
)
def test_each_metric_improves_one_way(metric, mode):
    assert metric_mode(metric) == mode


@pytest.mark.parametrize("metric", ["val/nope", "val/lossy", "train/lr", "val/", "acc_top"])
def test_an_unknown_metric_is_refused_with_the_known_names(metric):
    with pytest.raises(ConfigError) as error:
        metric_mode(metric)
    assert f"no direction is known for metric {metric!r}" in str(error.value)
    assert all(name in str(error.value) for name in DIRECTIONS)


def test_each_task_monitors_its_metric_by_default():
    assert default_monitor("multiclass") == "val/acc"
    assert default_monitor("multilabel") == "val/map"
    assert default_monitor(None) == "val/acc"  # an image folder before its task is known


def test_a_config_error_in_a_resolver_reaches_the_user_as_itself():
    config = OmegaConf.create({"mode": "${metric_mode:val/nope}"})
    with pytest.raises(Exception) as raised:
        _ = config.mode
    error = user_error_in(raised.value)
    assert isinstance(error, ConfigError)
    assert str(error).startswith("no direction is known for metric 'val/nope'")
    assert one_line_reason(raised.value) == str(error)
    assert one_line_reason(RuntimeError("boom\nmore")) == "RuntimeError: boom"


def test_multiclass_metrics_include_macro_precision_and_recall_as_sklearn_computes_them():
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(200, 6, generator=generator).softmax(dim=1)
    targets = torch.randint(0, 6, (200,), generator=generator)
    predicted = probs.argmax(dim=1)
    expected = {
        "precision": precision_score(targets, predicted, average="macro", zero_division=0),
        "recall": recall_score(targets, predicted, average="macro", zero_division=0),
    }
    for training in (False, True):  # the lean training set takes the logits, ranked the same
        metrics = task_metrics("multiclass", 6, training=training)
        values = metrics(probs.log() if training else probs, targets)
        assert {"acc", "acc_top5", "f1", "precision", "recall"} == set(values)
        for name, value in expected.items():
            assert float(values[name]) == pytest.approx(value, abs=1e-6), (name, training)


def test_precision_and_recall_have_a_best_so_far_and_can_be_monitored(train_cfg):
    cfg = train_cfg("monitor=val/recall")
    assert cfg.callbacks.model_checkpoint.mode == "max"
    model = instantiate(cfg.model, optimizer=cfg.optimizer, _recursive_=False)
    names = model.logged_metric_names()
    for name in ("train/precision", "val/precision_best", "val/recall_best", "test/recall"):
        assert name in names
    assert "val/precision" not in model.logged_metric_names(["train"])
