"""The test confusion matrix of a multi-class run: printed as a table and saved as CSV."""

import csv
from collections.abc import Sequence
from pathlib import Path

import rich
from lightning.pytorch.utilities import rank_zero_only
from rich.table import Table
from torch import Tensor

from src.core.files import write_atomically


@rank_zero_only
def report_confusion_matrix(
    matrix: Tensor, class_names: Sequence[str], save_to: Path | None = None
) -> None:
    """Print the confusion matrix (rows: true class, columns: predicted) and save it as CSV."""
    table = Table(title="test confusion matrix (rows: true, columns: predicted)")
    table.add_column("true \\ pred", style="bold")
    for name in class_names:
        table.add_column(str(name), justify="right")
    rows = [
        [str(name), *(str(int(v)) for v in row)]
        for name, row in zip(class_names, matrix.tolist(), strict=True)
    ]
    for row in rows:
        table.add_row(*row)
    rich.print(table)
    if save_to is None:
        return

    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["true\\pred", *map(str, class_names)])
            writer.writerows(rows)

    write_atomically(save_to, write)
