"""Matplotlib figures of test results, for TensorBoard and reports."""

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402


def confusion_matrix_figure(matrix: Tensor, class_names: Sequence[str]) -> Figure:
    """A heat map of counts, true classes down, predicted classes across."""
    n = len(class_names)
    size = min(2 + 0.5 * n, 16)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix.numpy(), cmap="Blues")
    axes.set(
        xticks=range(n),
        yticks=range(n),
        xlabel="predicted",
        ylabel="true",
        title="test confusion matrix",
    )
    axes.set_xticklabels(class_names, rotation=90)
    axes.set_yticklabels(class_names)
    if n <= 20:
        high = matrix.max().item()
        for true, row in enumerate(matrix.tolist()):
            for predicted, count in enumerate(row):
                color = "white" if count > high / 2 else "black"
                axes.text(predicted, true, int(count), ha="center", va="center", color=color)
    figure.tight_layout()
    return figure


def average_precision_bars(scores: Tensor, class_names: Sequence[str]) -> Figure:
    """One bar per label: its test average precision."""
    figure, axes = plt.subplots(figsize=(min(2 + 0.4 * len(class_names), 16), 4))
    axes.bar(range(len(class_names)), scores.numpy())
    axes.set(ylim=(0, 1), ylabel="average precision", title="test AP per label")
    axes.set_xticks(range(len(class_names)))
    axes.set_xticklabels(class_names, rotation=90)
    figure.tight_layout()
    return figure
