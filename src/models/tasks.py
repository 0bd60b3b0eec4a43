"""What differs between multi-class and multi-label classification: metrics and predictions."""

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
)

TASKS = ("multiclass", "multilabel")


def task_metrics(task: str, num_classes: int, threshold: float = 0.5) -> MetricCollection:
    """Multi-class: top-1 (and top-5) accuracy and macro F1. Multi-label: macro average precision
    (mAP), macro and micro F1, Hamming distance and exact match at `threshold`."""
    if task == "multiclass":
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        }
        if num_classes > 5:
            metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        return MetricCollection(metrics)
    return MetricCollection(
        {
            "map": MultilabelAveragePrecision(num_classes, average="macro"),
            "f1": MultilabelF1Score(num_classes, threshold=threshold, average="macro"),
            "f1_micro": MultilabelF1Score(num_classes, threshold=threshold, average="micro"),
            "hamming": MultilabelHammingDistance(num_classes, threshold=threshold),
            "exact_match": MultilabelExactMatch(num_classes, threshold=threshold),
        }
    )


def per_class_metrics(num_classes: int, threshold: float = 0.5) -> MetricCollection:
    """Multi-label F1 and average precision of each class, for the test report."""
    return MetricCollection(
        {
            "f1": MultilabelF1Score(num_classes, threshold=threshold, average=None),
            "ap": MultilabelAveragePrecision(num_classes, average=None),
        }
    )


def probabilities(task: str, logits: Tensor) -> Tensor:
    """Class probabilities: softmax over classes, or an independent sigmoid per label."""
    return logits.softmax(dim=-1) if task == "multiclass" else logits.sigmoid()
