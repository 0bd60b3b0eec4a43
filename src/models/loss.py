"""The loss of each task: CrossEntropy for multi-class data, BCEWithLogits for binary and
multi-label data, with their weights and the soft targets MixUp/CutMix make."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.core.errors import ConfigError
from src.models.tasks import inverse_frequency_weights, output_width, soft_target_cross_entropy

MULTI_HOT = (
    "multi-hot targets cannot train a multi-class (CrossEntropy) model: "
    "the data is multi-label, set data.task=multilabel"
)
NOT_BINARY = (
    "a binary model takes one target per image (class 0 or 1, or a mixed share of class 1): "
    "the data has {} per image; use data.task=multiclass or multilabel"
)


def negatives_over_positives(targets: Tensor) -> Tensor:
    """pos_weight=auto: negatives over positives of each label among (N, C) multi-hot targets
    (binary: of class 1 among (N,) class indices)."""
    targets = targets.float()
    positives = targets.sum(dim=0)
    return (len(targets) - positives) / positives.clamp(min=1)


def binary_cross_entropy(
    logits: Tensor, targets: Tensor, pos_weight: Tensor, label_smoothing: float
) -> Tensor:
    """BCEWithLogits of the one logit (B, 1) against the probability of class 1 (B,): class
    indices 0/1 or MixUp/CutMix's mixed shares, smoothed towards 1/2 as CrossEntropy's label
    smoothing smooths two classes (so a 2-class model's smoothing carries over)."""
    if targets.ndim != 1:
        raise ConfigError(NOT_BINARY.format(targets.shape[-1]))
    targets = targets.float() * (1 - label_smoothing) + label_smoothing / 2
    return F.binary_cross_entropy_with_logits(logits.squeeze(-1), targets, pos_weight=pos_weight)


class ClassificationLoss(nn.Module):
    """CrossEntropy (class weights, label smoothing) or BCEWithLogits (weights of positives;
    binary: label smoothing too).

    Both weights are buffers, kept in checkpoints, so weights found from the training data
    ("auto", see `fit_to`) load back with the model; until found they are ones.

    Args:
        task: "multiclass", "binary" or "multilabel".
        num_classes: number of classes (labels; 2 for binary).
        class_weights: multi-class: a weight per class, "auto" or None.
        label_smoothing: multi-class and binary: label smoothing in [0, 1).
        pos_weight: multi-label: a weight of positives per label; binary: of class 1 (one
            number); "auto" or None.
    """

    def __init__(
        self,
        task: str,
        num_classes: int,
        class_weights: Sequence[float] | str | None = None,
        label_smoothing: float = 0.0,
        pos_weight: Sequence[float] | str | None = None,
    ) -> None:
        super().__init__()
        self.task = task
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.auto = {"class_weights": class_weights == "auto", "pos_weight": pos_weight == "auto"}
        if class_weights == "auto":
            class_weights = [1.0] * num_classes
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float)
        self.register_buffer("weight", weight)
        if pos_weight is None or pos_weight == "auto":
            pos_weight = [1.0] * output_width(task, num_classes)
        elif isinstance(pos_weight, int | float):
            pos_weight = [float(pos_weight)]
        self.register_buffer("pos_weight", torch.tensor(pos_weight, dtype=torch.float))
        self._multi_hot_rows: Tensor | None = None  # see count_multi_hot

    def fit_to(self, targets: Tensor) -> None:
        """Set the weights configured as "auto" from the (N,) or (N, C) training targets."""
        if self.auto["class_weights"]:
            self.weight.copy_(inverse_frequency_weights(targets, self.num_classes))
        if self.auto["pos_weight"]:
            self.pos_weight.copy_(negatives_over_positives(targets))

    def forward(self, logits: Tensor, targets: Tensor, mixed: bool = False) -> Tensor:
        """The mean loss of a batch.

        mixed: training batches, which MixUp/CutMix may have mixed (src/data/batch_mixing.py):
        multi-class targets may then be (B, C) class probabilities, which CrossEntropy takes as
        they are (class weights and label smoothing apply to them too, in float32); multi-label
        targets are mixed multi-hot floats, which BCEWithLogits takes like any multi-hot targets;
        binary targets (B,) are mixed shares of class 1, BCEWithLogits' soft targets.
        """
        if self.task == "binary":
            return binary_cross_entropy(logits, targets, self.pos_weight, self.label_smoothing)
        if self.task == "multilabel":
            return F.binary_cross_entropy_with_logits(
                logits, targets.float(), pos_weight=self.pos_weight
            )
        if targets.ndim != 1 and not (mixed and targets.is_floating_point()):
            raise ConfigError(MULTI_HOT)
        if targets.ndim == 2:
            self.count_multi_hot(targets)
            return soft_target_cross_entropy(logits, targets, self.weight, self.label_smoothing)
        return F.cross_entropy(
            logits, targets, weight=self.weight, label_smoothing=self.label_smoothing
        )

    def count_multi_hot(self, targets: Tensor) -> None:
        """Mixed multi-class targets are class probabilities (rows that sum to 1); multi-hot
        ones (multi-label data) are not. Such rows are counted on the device, and refused by
        `refuse_multi_hot` when the LightningModule asks (checking every batch at once would make
        each training step wait for the device)."""
        rows = (~torch.isclose(targets.sum(dim=1), targets.new_ones(()))).sum()
        if self._multi_hot_rows is not None:
            rows = rows + self._multi_hot_rows
        self._multi_hot_rows = rows

    def refuse_multi_hot(self) -> None:
        """Raise the one-line error if any multi-hot rows were counted since the last call."""
        rows, self._multi_hot_rows = self._multi_hot_rows, None
        if rows is not None and rows.item():
            raise ConfigError(MULTI_HOT)
