"""The comparison table shown: as CSV at full precision, and as a rich table in the terminal
(short numbers and run names, a group's metrics as mean ± std, statuses in colour)."""

import csv
import re
from pathlib import Path

from rich.table import Table
from rich.text import Text

from src.core.files import write_atomically
from src.tracking.report_columns import Cell
from src.tracking.report_groups import RUNS_SEPARATOR, STATS

STATUS_STYLES = {
    "finished": "green",
    "running": "cyan",
    "pruned": "yellow",
    "interrupted": "yellow",
    "failed": "red",
}
PLUS_MINUS = " ± "


def write_csv(columns: list[str], rows: list[dict[str, Cell]], path: Path) -> None:
    """The table as CSV with a header row, full precision, empty cells for missing values."""

    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)


def short_text(value: Cell) -> str:
    """A cell as short text: long numbers to 4 significant digits."""
    text = "" if value is None else str(value)
    try:
        return text if len(text) <= 6 else f"{float(text):.4g}"
    except ValueError:
        return text


def display_name(name: str) -> str:
    """A run's name for the table: a sweep job's folder `3_optimizer=sgd,...` as `3`, since the
    hyperparameter columns show its overrides (the CSV keeps the whole name)."""
    *parents, last = name.split("/")
    if re.match(r"\d+_", last):
        last = last.split("_", 1)[0]
    return "/".join([*parents, last])


def grouped_metrics(columns: list[str]) -> list[str]:
    """The metrics a grouped table summarises over its runs (those with a `NAME mean` column)."""
    return [c.removesuffix(" mean") for c in columns if c.endswith(" mean")]


def _mean_std(row: dict[str, Cell], name: str) -> str:
    """A metric's cell in a grouped table: `mean ± std`, with `(n=k)` when only k of the
    group's runs logged it."""
    average, spread, count = (row[f"{name} {stat}"] for stat in STATS)
    if average is None:
        return ""
    text = short_text(average) + ("" if spread is None else f"{PLUS_MINUS}{spread:.2g}")
    return text + ("" if count == row["n"] else f" (n={count})")


def shown_cells(columns: list[str], rows: list[dict[str, Cell]]) -> tuple[list[str], list[dict]]:
    """The columns and cells a table shows: in a grouped table each metric's mean, std and n as
    one `mean ± std` cell, and a group's runs as their short names."""
    names = grouped_metrics(columns)
    stats = {f"{name} {stat}" for name in names for stat in STATS}
    shown = [c for c in columns if c not in stats or c.endswith(" mean")]
    shown = [c.removesuffix(" mean") if c in stats else c for c in shown]
    cells = []
    for row in rows:
        cell = {c: row[c] for c in shown if c in row} | {n: _mean_std(row, n) for n in names}
        if "runs" in row:
            runs = str(row["runs"]).split(RUNS_SEPARATOR)
            cell["runs"] = ",".join(display_name(run) for run in runs)
        if "run" in row:
            cell["run"] = display_name(str(row["run"]))
        cells.append(cell)
    return shown, cells


def rich_table(columns: list[str], rows: list[dict[str, Cell]], title: str) -> Table:
    """The rows as a rich table: long numbers to 4 significant digits, a group's metrics as
    mean ± std, statuses in colour."""
    grouped = grouped_metrics(columns)
    columns, rows = shown_cells(columns, rows)
    table = Table(title=title)
    for column in columns:
        numeric = column in grouped or all(isinstance(r[column], int | float | None) for r in rows)
        limit = 60 if column == "note" else None
        table.add_column(column, justify="right" if numeric else "left", max_width=limit)
    for row in rows:
        style = STATUS_STYLES.get(str(row["status"]), "dim")
        # Text, not markup: an error message like "[Errno 2] ..." must show as it is.
        cells = {c: short_text(row[c]) for c in columns}
        table.add_row(*(Text(cells[c], style if c == "status" else "") for c in columns))
    return table
