"""Training-step metrics whose updates never wait for the device.

These are torchmetrics' classes, with the update written out where theirs makes the host wait on a
GPU: macro F1, precision and recall count (target, prediction) pairs with torch.bincount, which on
CUDA reads the largest value back to size its output; exact match puts its image count on the
device with torch.tensor, a copy the host waits for. Compute, reset and the DDP sync stay theirs.
They take what the training step gives them (src/models/tasks.py `training_predictions`):
multi-class logits (B, C) with class indices (B,); multi-label 0/1 predictions and targets (B, C).
"""

import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import (
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelExactMatch,
)


class _ClassCounts:
    """Per-class true and false positives and negatives of the top-1 predictions, counted from
    one-hot rows: the same counts as torchmetrics' bincount, in tensors of a fixed size."""

    num_classes: int

    def update(self, preds: Tensor, target: Tensor) -> None:
        predicted = F.one_hot(preds.argmax(dim=1), self.num_classes)
        actual = F.one_hot(target.long(), self.num_classes)
        tp = (predicted * actual).sum(dim=0)
        fp, fn = predicted.sum(dim=0) - tp, actual.sum(dim=0) - tp
        self._update_state(tp, fp, len(target) - tp - fp - fn, fn)  # type: ignore[attr-defined]


class TrainingF1Score(_ClassCounts, MulticlassF1Score):
    """MulticlassF1Score of logits, updated without a wait for the device."""


class TrainingPrecision(_ClassCounts, MulticlassPrecision):
    """MulticlassPrecision of logits, updated without a wait for the device."""


class TrainingRecall(_ClassCounts, MulticlassRecall):
    """MulticlassRecall of logits, updated without a wait for the device."""


class TrainingExactMatch(MultilabelExactMatch):
    """MultilabelExactMatch of 0/1 predictions, updated without a wait for the device."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.correct += (preds == target).all(dim=1).sum()
        self.total += len(target)
