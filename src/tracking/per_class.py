"""The per-class test table: precision, recall, F1 and support of each class (and its average
precision, multi-label), printed, saved as CSV and written to TensorBoard as a markdown table."""

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rich
import torch
from lightning.pytorch.utilities import rank_zero_only
from rich.table import Table
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from src.core.files import write_atomically
from src.tracking.confusion_matrix import report_confusion_matrix

TEXT_TAG = "test/per_class"  # TensorBoard's TEXT tab: test/per_class/text_summary in the files


@dataclass
class TestReport:
    """What a test found per class: the confusion matrix (multi-class), each label's scores by
    metric (multi-label: f1, ap) and the rows of the per-class table."""

    __test__ = False  # not a pytest test class

    confusion_matrix: Tensor | None = None
    per_class_scores: dict[str, Tensor] = field(default_factory=dict)
    per_class_table: list[dict[str, Any]] = field(default_factory=list)


def ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, 0 where the denominator is 0 (as torchmetrics and scikit-learn's
    zero_division=0 count an undefined precision or recall)."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), 0.0)


def per_class_rows(
    counts: Tensor, class_names: Sequence[str], scores: Mapping[str, Tensor] | None = None
) -> list[dict[str, Any]]:
    """One row per class from torchmetrics' per-class stat scores (rows of tp, fp, tn, fn,
    support): its name, precision, recall, F1 and support, then each of `scores` (e.g. ap)."""
    tp, fp, _, fn, support = counts.double().cpu().unbind(dim=1)
    columns = {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "support": support.long(),
        **{name: values.double().cpu() for name, values in (scores or {}).items()},
    }
    return [
        {"class": str(name), **{key: values[i].item() for key, values in columns.items()}}
        for i, name in enumerate(class_names)
    ]


def formatted(value: Any, digits: int = 4) -> str:
    """A table cell: a score to `digits` decimals, a count as it is."""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a markdown table, which TensorBoard's TEXT tab renders."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(formatted(row[key]) for key in header) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The rows as CSV at path (scores at full precision), replacing the file whole."""

    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)


@rank_zero_only
def report_per_class(
    rows: Sequence[Mapping[str, Any]],
    save_to: Path | None = None,
    tensorboard_dir: Path | None = None,
    step: int = 0,
) -> None:
    """Print the table, save it as CSV at `save_to` and add it to the TensorBoard files in
    `tensorboard_dir` as text (each where given)."""
    if not rows:
        return
    table = Table(title="test metrics per class")
    for key in rows[0]:
        table.add_column(key, justify="left" if key == "class" else "right")
    for row in rows:
        table.add_row(*(formatted(value) for value in row.values()))
    rich.print(table)
    if save_to is not None:
        write_csv(rows, save_to)
    if tensorboard_dir is not None:
        writer = SummaryWriter(str(tensorboard_dir))
        writer.add_text(TEXT_TAG, markdown_table(rows), step)
        writer.close()


def write_test_report(
    report: TestReport | None,
    class_names: Sequence[str],
    out_dir: Path,
    tensorboard_dir: Path | None,
    step: int,
) -> None:
    """Print the confusion matrix (saved as confusion_matrix.csv) and the per-class table (saved
    as per_class.csv, and added to TensorBoard's files); nothing for a run that did not test."""
    if report is None:
        return
    if report.confusion_matrix is not None:
        report_confusion_matrix(
            report.confusion_matrix, class_names, out_dir / "confusion_matrix.csv"
        )
    report_per_class(report.per_class_table, out_dir / "per_class.csv", tensorboard_dir, step)
