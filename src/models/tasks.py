"""What differs between multi-class, binary and multi-label classification: the network's output
width, the metrics and the predictions."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryConfusionMatrix,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassStatScores,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelHammingDistance,
    MultilabelStatScores,
)

from src.models.training_metrics import (
    TrainingExactMatch,
    TrainingF1Score,
    TrainingPrecision,
    TrainingRecall,
)

TASKS = ("multiclass", "multilabel", "binary")


def output_width(task: str, num_classes: int) -> int:
    """The network's outputs for the task: one logit (binary: of class 1, the positive class),
    else one per class (label)."""
    return 1 if task == "binary" else num_classes


class BinaryClassCounts(MulticlassStatScores):
    """The per-class counts of a binary model (both classes, as rows of tp, fp, tn, fn, support)
    from positive-class probabilities (B,): class 1 where the probability exceeds `threshold`."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__(2, average=None)
        self.threshold = threshold

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update((preds > self.threshold).long(), target)


def binary_metrics(threshold: float, training: bool) -> MetricCollection:
    """Accuracy, F1, precision and recall of the positive class at `threshold`, and (not in
    training: it holds every prediction of the epoch) the threshold-free ROC AUC."""
    at = {"threshold": threshold, "validate_args": not training}
    metrics = {
        "acc": BinaryAccuracy(**at),
        "f1": BinaryF1Score(**at),
        "precision": BinaryPrecision(**at),
        "recall": BinaryRecall(**at),
    }
    if not training:
        metrics["auroc"] = BinaryAUROC()
    return MetricCollection(metrics)


def task_metrics(
    task: str, num_classes: int, threshold: float = 0.5, training: bool = False
) -> MetricCollection:
    """Multi-class: top-1 (and top-5) accuracy, macro F1, precision and recall. Binary: those of
    the positive class at `threshold` and ROC AUC. Multi-label: macro average precision (mAP),
    macro and micro F1, Hamming distance and exact match at `threshold`.

    `training`: the set for the training step, kept lean: no argument checks, no mAP or AUROC
    (they hold every prediction of the epoch), updates that never wait for the device
    (src/models/training_metrics.py); the binary and multi-label metrics there take 0/1
    predictions (a float one would be checked against [0, 1] on the host).
    """
    check = not training
    if task == "binary":
        return binary_metrics(threshold, training)
    if task == "multiclass":
        f1, precision, recall = (
            (TrainingF1Score, TrainingPrecision, TrainingRecall)
            if training
            else (MulticlassF1Score, MulticlassPrecision, MulticlassRecall)
        )
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=check),
            "f1": f1(num_classes, average="macro", validate_args=check),
            # F1, precision and recall share their counts: the collection updates them once
            "precision": precision(num_classes, average="macro", validate_args=check),
            "recall": recall(num_classes, average="macro", validate_args=check),
        }
        if num_classes > 5:
            metrics["acc_top5"] = MulticlassAccuracy(
                num_classes, top_k=5, average="micro", validate_args=check
            )
        return MetricCollection(metrics)
    at = {"threshold": threshold, "validate_args": check}
    metrics = {} if training else {"map": MultilabelAveragePrecision(num_classes, average="macro")}
    metrics |= {
        "f1": MultilabelF1Score(num_classes, average="macro", **at),
        "f1_micro": MultilabelF1Score(num_classes, average="micro", **at),
        "hamming": MultilabelHammingDistance(num_classes, **at),
        "exact_match": (TrainingExactMatch if training else MultilabelExactMatch)(
            num_classes, **at
        ),
    }
    return MetricCollection(metrics)


def per_class_metrics(num_classes: int, threshold: float = 0.5) -> MetricCollection:
    """Multi-label F1 and average precision of each class, for the test report."""
    return MetricCollection(
        {
            "f1": MultilabelF1Score(num_classes, threshold=threshold, average=None),
            "ap": MultilabelAveragePrecision(num_classes, average=None),
        }
    )


def per_class_counts(task: str, num_classes: int, threshold: float = 0.5) -> Metric:
    """True and false positives, true and false negatives and support of each class (rows of
    (tp, fp, tn, fn, support)), for the test table of per-class precision, recall and F1."""
    if task == "multiclass":
        return MulticlassStatScores(num_classes, average=None)
    if task == "binary":
        return BinaryClassCounts(threshold)
    return MultilabelStatScores(num_classes, threshold=threshold, average=None)


def confusion_matrix(task: str, num_classes: int, threshold: float = 0.5) -> Metric | None:
    """The test confusion matrix (rows: true class, columns: predicted) of a multi-class or
    binary model (2x2, class 1 predicted above `threshold`); None for multi-label data."""
    if task == "multiclass":
        return MulticlassConfusionMatrix(num_classes)
    if task == "binary":
        return BinaryConfusionMatrix(threshold)
    return None


def probabilities(task: str, logits: Tensor) -> Tensor:
    """Class probabilities in float32 (also under mixed precision, where half-precision sigmoids
    round near 0 and 1): softmax over classes, an independent sigmoid per label, or (binary)
    the positive class's probability (B,), the sigmoid of the one logit."""
    logits = logits.float()
    if task == "binary":
        return logits.squeeze(-1).sigmoid()
    return logits.softmax(dim=-1) if task == "multiclass" else logits.sigmoid()


def training_predictions(task: str, logits: Tensor, threshold: float) -> Tensor:
    """What the lean training metrics take: the logits (multi-class, ranked as they are), or 0/1
    per label (multi-label) or image (binary, (B,)): logit above the threshold's logit, the same
    as sigmoid > threshold."""
    if task == "multiclass":
        return logits.detach()
    if task == "binary":
        logits = logits.squeeze(-1)
    return (logits.detach() > math.log(threshold / (1 - threshold))).long()


def inverse_frequency_weights(targets: Tensor, num_classes: int) -> Tensor:
    """class_weights=auto: each class's weight inverse to its count among the (N,) training
    targets, scaled so the weights average 1 (a class without samples counts as one)."""
    counts = torch.bincount(targets.long(), minlength=num_classes).double().clamp(min=1)
    weights = 1.0 / counts
    return (weights * num_classes / weights.sum()).float()


def soft_target_cross_entropy(
    logits: Tensor, targets: Tensor, weight: Tensor | None, label_smoothing: float
) -> Tensor:
    """CrossEntropy against (B, C) class probabilities (MixUp/CutMix targets), averaged the way
    PyTorch averages class-index targets: by the summed class weight of the targets, not by B.
    For one-hot targets it equals nn.CrossEntropyLoss(weight, label_smoothing) on their indices,
    so the loss keeps its scale when mixing switches off (PyTorch's own mean for probability
    targets divides by B, which with class weights that do not average 1 over the samples, such
    as class_weights=auto on imbalanced data, scales the mixed epochs' loss by another factor).
    Computed in float32 also under mixed precision: bf16 targets and normaliser round by ~4e-3."""
    with torch.autocast(logits.device.type, enabled=False):  # its matmul would run in half
        logits, targets = logits.float(), targets.float()
        weight = None if weight is None else weight.float()
        losses = F.cross_entropy(
            logits, targets, weight=weight, label_smoothing=label_smoothing, reduction="none"
        )
        if weight is None:
            return losses.mean()
        return losses.sum() / (targets @ weight).sum()
