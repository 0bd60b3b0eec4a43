"""The comparison report of the runs under a folder: a table, its CSV and a plot of the curves.

scripts/compare_runs.py is its command line. Each run's hyperparameters come from
.hydra/overrides.yaml and its TensorBoard HPARAMS record, its metrics from its TensorBoard scalars,
and how it ended from its `run/status` text, so crashed, failed and pruned runs show as such
instead of being left out.
"""

import csv
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from statistics import mean

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from rich.table import Table
from rich.text import Text

from src.tracking.files import write_atomically
from src.tracking.hparams import is_hyperparameter
from src.tracking.metrics import BEST, DEFAULT_MONITOR, metric_mode
from src.tracking.run_records import RunSummary, find_runs, natural_key, read_run

STATUS_STYLES = {"finished": "green", "running": "cyan", "pruned": "yellow", "failed": "red"}

Cell = str | int | float | None


def hyperparameter_value(run: RunSummary, key: str) -> str:
    """The run's override for key, else its logged hyperparameter, else ""."""
    if key in run.overrides:
        return run.overrides[key]
    return str(run.hparams[key]) if key in run.hparams else ""


def hyperparameter_columns(runs: list[RunSummary]) -> list[str]:
    """Overridden keys that describe the model or training and differ between the runs."""
    keys = dict.fromkeys(key for run in runs for key in run.overrides if is_hyperparameter(key))
    values = {key: {hyperparameter_value(run, key) for run in runs} for key in keys}
    return [key for key in keys if len(runs) == 1 or len(values[key]) > 1]


def _named(runs: list[RunSummary], key: str) -> list[str]:
    """The values of a hyperparameter over the runs, most common first."""
    named = Counter(str(run.hparams[key]) for run in runs if run.hparams.get(key, "None") != "None")
    return [value for value, _ in named.most_common()]


def choose_metric(runs: list[RunSummary], metric: str | None = None) -> str:
    """The metric to sort by: the one asked for, else the runs' `optimized_metric` if they agree."""
    named = _named(runs, "optimized_metric")
    if metric or len(named) == 1:
        return metric or named[0]
    logged = {tag for run in runs for tag in run.scalars}
    defaults = [f"{monitor}{BEST}" for monitor in DEFAULT_MONITOR.values()]  # multi-class first
    return next((name for name in defaults if name in logged), defaults[0])


def choose_monitor(runs: list[RunSummary], metric: str) -> str:
    """The metric the runs monitored (their `monitor`), else the sort metric without `_best`."""
    named = _named(runs, "monitor")
    return named[0] if named else metric.removesuffix("_best")


def sort_runs(runs: list[RunSummary], metric: str, mode: str) -> list[RunSummary]:
    """Runs best first by the last value of metric; those without one (or NaN) last, by name."""
    sign = -1 if mode == "max" else 1

    def key(run: RunSummary) -> tuple[bool, float, list[str | int]]:
        value = run.last(metric)
        missing = value is None or value != value  # NaN
        return missing, 0.0 if missing else sign * value, natural_key(run.name)

    return sorted(runs, key=key)


def _epoch_at(run: RunSummary) -> dict[int, float]:
    """The `epoch` scalar at each step."""
    epoch_at: dict[int, float] = {}
    for step, epoch in run.scalars.get("epoch", []):
        epoch_at.setdefault(step, epoch)
    return epoch_at


def _epochs(run: RunSummary) -> int | None:
    if times := run.values("train/epoch_time"):
        return len(times)
    # Not max(epoch) + 1: the test loop logs `epoch` once more, after the last epoch.
    epoch_at = _epoch_at(run)
    logged = [step for tag in ("train/loss", "val/loss") for step, _ in run.scalars.get(tag, [])]
    seen = [epoch_at[step] for step in logged if step in epoch_at]
    return int(max(seen)) + 1 if seen else None


def tabulate(runs: list[RunSummary], metric: str) -> tuple[list[str], list[dict[str, Cell]]]:
    """Column names and one row per run, in the order given: hyperparameters, then metrics."""
    monitor = choose_monitor(runs, metric)
    best = max if metric_mode(monitor) == "max" else min
    test = "test/" + monitor.rsplit("/", 1)[-1]
    # Keyed by column name, so a metric asked for twice (e.g. --metric val/acc) shows once.
    measures: dict[str, Callable[[RunSummary], Cell]] = {
        metric: lambda run: run.last(metric),
        f"best {monitor}": lambda run: best(run.values(monitor), default=None),
        monitor: lambda run: run.last(monitor),
        "val/loss": lambda run: run.last("val/loss"),
    }
    if any(test in run.scalars for run in runs):
        measures.setdefault(test, lambda run: run.last(test))
    measures["epochs"] = _epochs
    measures["s/epoch"] = lambda run: mean(t) if (t := run.values("train/epoch_time")) else None
    hyperparameters = hyperparameter_columns(runs)
    rows = [
        {
            "run": run.name,
            "status": run.status,
            **{key: hyperparameter_value(run, key) for key in hyperparameters},
            **{name: measure(run) for name, measure in measures.items()},
            "note": run.reason,
        }
        for run in runs
    ]
    return ["run", "status", *hyperparameters, *measures, "note"], rows


def compare(
    path: Path, metric: str | None = None, mode: str | None = None
) -> tuple[list[str], list[dict[str, Cell]]]:
    """The comparison table of the runs under path: column names and rows, best run first."""
    runs = [read_run(run_dir, path) for run_dir in find_runs(path)]
    metric = choose_metric(runs, metric)
    return tabulate(sort_runs(runs, metric, mode or metric_mode(metric)), metric)


def write_csv(columns: list[str], rows: list[dict[str, Cell]], path: Path) -> None:
    """The table as CSV with a header row, full precision, empty cells for missing values."""

    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)


def _short(value: Cell) -> str:
    """A cell as short text: long numbers to 4 significant digits."""
    text = "" if value is None else str(value)
    try:
        return text if len(text) <= 6 else f"{float(text):.4g}"
    except ValueError:
        return text


def plot_curves(runs: list[RunSummary], monitor: str, path: Path, title: str) -> None:
    """The validation curves of the runs against epoch: the monitored metric and val/loss."""
    panels = [monitor] + ["val/loss"] * (monitor != "val/loss")
    hyperparameters = hyperparameter_columns(runs)
    plotted = [run for run in runs if run.scalars.get(monitor)]
    figure = Figure(figsize=(6 * len(panels), 4.5 + 0.2 * len(plotted)), layout="constrained")
    for axes, tag in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        for run in plotted:
            points = run.scalars.get(tag, [])
            epoch_at = _epoch_at(run)
            steps = [step for step, _ in points]
            epochs = [epoch_at[s] for s in steps] if set(steps) <= set(epoch_at) else None
            named = all(f"{k}={hyperparameter_value(run, k)}" in run.name for k in hyperparameters)
            settings = (
                ""
                if named
                else " ".join(  # sweep folders already name their overrides
                    f"{key.rsplit('.', 1)[-1]}={_short(hyperparameter_value(run, key))}"
                    for key in hyperparameters
                )
            )
            ended = "" if run.status in ("finished", "running") else f" ({run.status})"
            axes.plot(
                range(len(steps)) if epochs is None else epochs,
                [value for _, value in points],
                "--" if ended else "-",
                marker="o",
                label=f"{run.name}  {settings}{ended}",
            )
        if not plotted:
            axes.text(0.5, 0.5, f"no run logged {monitor}", ha="center", transform=axes.transAxes)
        axes.set(title=tag, xlabel="epoch", ylabel=tag)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    if plotted:
        handles, labels = figure.axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", fontsize="small")
    figure.suptitle(title)
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=120))


def _display_name(name: str) -> str:
    """A run's name for the table: a sweep job's folder `3_optimizer=sgd,...` as `3`, since the
    hyperparameter columns show its overrides (the CSV keeps the whole name)."""
    *parents, last = name.split("/")
    if re.match(r"\d+_", last):
        last = last.split("_", 1)[0]
    return "/".join([*parents, last])


def rich_table(columns: list[str], rows: list[dict[str, Cell]], title: str) -> Table:
    """The rows as a rich table: long numbers to 4 significant digits, statuses in colour."""
    table = Table(title=title)
    for column in columns:
        numeric = all(isinstance(row[column], int | float | None) for row in rows)
        limit = 60 if column == "note" else None
        table.add_column(column, justify="right" if numeric else "left", max_width=limit)
    for row in rows:
        style = STATUS_STYLES.get(str(row["status"]), "dim")
        # Text, not markup: an error message like "[Errno 2] ..." must show as it is.
        cells = {c: _short(row[c]) for c in columns} | {"run": _display_name(str(row["run"]))}
        table.add_row(*(Text(cells[c], style if c == "status" else "") for c in columns))
    return table
