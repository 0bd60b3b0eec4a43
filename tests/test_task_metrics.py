"""The metrics of each task on their own: training metrics on mixed targets, the bests of the
validation metrics (each its own way), and what a test reports per class."""

import pytest
import torch
import torch.nn.functional as F

from src.models.metrics import TaskMetrics

NAMES = [str(i) for i in range(10)]


def test_training_metrics_score_the_dominant_label():
    metrics = TaskMetrics("multiclass", 10, 0.5, NAMES)
    logits = torch.randn(32, 10, generator=torch.Generator().manual_seed(0))
    predicted = logits.argmax(dim=1)
    # a 0.7 / 0.3 mix: half the images have the predicted class as their larger share
    other = (predicted + 1) % 10
    dominant = torch.where(torch.arange(32) < 16, predicted, other)
    soft = 0.7 * F.one_hot(dominant, 10) + 0.3 * F.one_hot((dominant + 3) % 10, 10)
    metrics.update_train(logits, soft.float())
    assert metrics.compute_train()["train/acc"] == pytest.approx(0.5)
    metrics.update_train(logits, predicted)  # unmixed targets as they are; a new epoch
    assert metrics.compute_train()["train/acc"] == pytest.approx(1.0)


def test_multilabel_training_metrics_score_labels_with_half_their_weight_or_more():
    metrics = TaskMetrics("multilabel", 5, 0.5, NAMES[:5])
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    predicted = (logits > 0).float()
    # labels with 0.6 of the weight are the dominant ones: they match the predictions exactly
    metrics.update_train(logits, 0.6 * predicted + 0.4 * (1 - predicted))
    assert metrics.compute_train()["train/exact_match"] == pytest.approx(1.0)


def test_each_best_moves_its_own_way_and_is_kept_in_the_state():
    metrics = TaskMetrics("multiclass", 3, 0.5, NAMES[:3])
    targets = torch.tensor([0, 1, 2, 0])
    right, wrong = F.one_hot(targets, 3).float(), F.one_hot((targets + 1) % 3, 3).float()
    for probs, loss in ((right, 0.5), (wrong, 0.2)):  # a better loss, a worse accuracy
        metrics.val_metrics.reset()
        metrics.val_loss.reset()
        metrics.update_val(probs, targets, torch.tensor(loss))
        bests = metrics.update_bests()
    assert bests["acc"] == pytest.approx(1.0) and bests["loss"] == pytest.approx(0.2)
    state = metrics.state_dict()
    assert float(state["val_best.acc.max_value"]) == pytest.approx(1.0)
    assert float(state["val_best.loss.min_value"]) == pytest.approx(0.2)


def test_a_multiclass_test_reports_the_confusion_matrix_and_the_per_class_table():
    metrics = TaskMetrics("multiclass", 3, 0.5, ["cat", "dog", "eel"])
    targets = torch.tensor([0, 0, 1, 2])
    predicted = torch.tensor([0, 1, 1, 2])
    metrics.update_test(F.one_hot(predicted, 3).float(), targets)
    report = metrics.finish_test()
    assert report.confusion_matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert report.per_class_scores == {}
    rows = {row["class"]: row for row in report.per_class_table}
    assert rows["cat"]["recall"] == 0.5 and rows["dog"]["precision"] == 0.5
    assert rows["cat"]["support"] == 2
    assert metrics.per_class_logged(report) == {}


def test_a_multilabel_test_reports_each_labels_scores_by_their_logged_names():
    metrics = TaskMetrics("multilabel", 2, 0.5, ["a/b", "c"])
    targets = torch.tensor([[1, 0], [0, 1], [1, 1]])
    metrics.update_test(targets.float() * 0.8 + 0.1, targets)
    report = metrics.finish_test()
    assert report.confusion_matrix is None
    assert set(report.per_class_scores) == {"f1", "ap"}
    assert [row["class"] for row in report.per_class_table] == ["a/b", "c"]
    logged = metrics.per_class_logged(report)
    assert logged["test/per_class/ap/a_b"] == pytest.approx(1.0)
    assert set(logged) <= set(metrics.logged_names(["test"]))


def test_the_logged_names_of_each_stage():
    names = TaskMetrics("multiclass", 10, 0.5, NAMES).logged_names()
    for name in ("train/loss", "train/lr", "train/acc", "val/acc_top5", "val/loss_best"):
        assert name in names
    assert "test/acc_best" not in names
