"""The comparison table of the runs under a folder, and its CSV (the plot: src/tracking/figures.py).

scripts/compare_runs.py is its command line. Each run's hyperparameters come from
.hydra/overrides.yaml and its TensorBoard HPARAMS record (where the values a finder applied win
over the overrides), its metrics from its TensorBoard scalars, and how it ended from its
status.txt, so crashed, failed and pruned runs show as such instead of being left out;
--columns adds what else they recorded (the commit of provenance.json). Grouped (--group-by), runs
that differ only in the given keys (the folds of a cross-validation, the seeds of a repeated run)
make one row of each metric's mean, standard deviation and count.
"""

import csv
import re
from collections import Counter
from collections.abc import Callable
from difflib import get_close_matches
from pathlib import Path
from statistics import mean

import numpy as np
from rich.table import Table
from rich.text import Text

from src.core.errors import ConfigError
from src.core.files import write_atomically
from src.core.hparams import is_hyperparameter
from src.core.metrics import BEST, DEFAULT_MONITOR, metric_mode
from src.tracking.hparams import APPLIED
from src.tracking.run_records import RunSummary, find_runs, natural_key, read_run

STATUS_STYLES = {
    "finished": "green",
    "running": "cyan",
    "pruned": "yellow",
    "interrupted": "yellow",
    "failed": "red",
}

Cell = str | int | float | None
# the columns of each metric in a grouped table, and how a group's run names are joined
STATS = ("mean", "std", "n")
RUNS_SEPARATOR = "; "
PLUS_MINUS = " ± "


def applied_keys(run: RunSummary) -> list[str]:
    """The keys whose values a finder applied before training (tune=lr: optimizer.lr)."""
    prefix = f"{APPLIED}."
    return [key.removeprefix(prefix) for key in run.hparams if key.startswith(prefix)]


def hyperparameter_value(run: RunSummary, key: str) -> str:
    """The value a finder applied for key, else the run's override, else its logged
    hyperparameter, else ""."""
    if f"{APPLIED}.{key}" in run.hparams:
        return str(run.hparams[f"{APPLIED}.{key}"])
    if key in run.overrides:
        return run.overrides[key]
    return str(run.hparams[key]) if key in run.hparams else ""


def column_value(run: RunSummary, key: str) -> str:
    """A column asked for with --columns: the run's provenance (commit, torch, ...), else a
    hyperparameter."""
    if key in run.provenance:
        return "" if run.provenance[key] is None else str(run.provenance[key])
    return hyperparameter_value(run, key)


def check_columns(runs: list[RunSummary], keys: list[str]) -> None:
    """Refuse a --columns key that no run records as provenance or a hyperparameter."""
    recorded = list(dict.fromkeys(key for run in runs for key in run.provenance))
    logged = sorted({key for run in runs for key in [*run.overrides, *run.hparams]})
    for key in keys:
        if key not in recorded and key not in logged:
            close = get_close_matches(key, recorded + logged, n=1)
            hint = (
                f"did you mean {close[0]}?" if close else f"the runs record {', '.join(recorded)}"
            )
            raise ConfigError(f"--columns {key}: no run records it: {hint}")


def hyperparameter_columns(runs: list[RunSummary]) -> list[str]:
    """Overridden or tuned keys that describe the model or training and differ between the
    runs."""
    overridden = [key for run in runs for key in run.overrides if is_hyperparameter(key)]
    keys = dict.fromkeys(overridden + [key for run in runs for key in applied_keys(run)])
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


def _epochs(run: RunSummary) -> int | None:
    if times := run.values("train/epoch_time"):
        return len(times)
    # Not max(epoch) + 1: the test loop logs `epoch` once more, after the last epoch.
    epoch_at = run.epoch_at()
    logged = [step for tag in ("train/loss", "val/loss") for step, _ in run.scalars.get(tag, [])]
    seen = [epoch_at[step] for step in logged if step in epoch_at]
    return int(max(seen)) + 1 if seen else None


def run_measures(runs: list[RunSummary], metric: str) -> dict[str, Callable[[RunSummary], Cell]]:
    """The table's metric columns and how each is read from a run."""
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
    return measures


def tabulate(
    runs: list[RunSummary], metric: str, columns: list[str] | None = None
) -> tuple[list[str], list[dict[str, Cell]]]:
    """Column names and one row per run, in the order given: the columns asked for,
    hyperparameters, then metrics."""
    measures = run_measures(runs, metric)
    columns = columns or []
    hyperparameters = [key for key in hyperparameter_columns(runs) if key not in columns]
    rows = [
        {
            "run": run.name,
            "status": run.status,
            **{key: column_value(run, key) for key in columns},
            **{key: hyperparameter_value(run, key) for key in hyperparameters},
            **{name: measure(run) for name, measure in measures.items()},
            "note": run.reason,
        }
        for run in runs
    ]
    return ["run", "status", *columns, *hyperparameters, *measures, "note"], rows


def check_group_keys(runs: list[RunSummary], keys: list[str]) -> None:
    """Refuse a --group-by key that no run overrides or logs as a hyperparameter."""
    overridden = sorted({key for run in runs for key in run.overrides if is_hyperparameter(key)})
    logged = sorted({key for run in runs for key in run.hparams})
    for key in keys:
        if key in overridden or key in logged:
            continue
        close = get_close_matches(key, overridden, n=1) or get_close_matches(key, logged, n=1)
        hint = (
            f"did you mean {close[0]}?" if close else f"the runs override {', '.join(overridden)}"
        )
        raise ConfigError(f"--group-by {key}: no run has this hyperparameter: {hint}")


def group_runs(runs: list[RunSummary], keys: list[str]) -> list[list[RunSummary]]:
    """Runs whose overridden hyperparameters differ only in `keys`, together, in the given order."""
    overridden = dict.fromkeys(k for run in runs for k in run.overrides if is_hyperparameter(k))
    others = [key for key in overridden if key not in keys]
    groups: dict[tuple[str, ...], list[RunSummary]] = {}
    for run in runs:
        groups.setdefault(tuple(hyperparameter_value(run, k) for k in others), []).append(run)
    return list(groups.values())


def summarise(values: list[Cell]) -> tuple[float | None, float | None, int]:
    """Mean, sample standard deviation (ddof=1, None below two values) and count of the numbers
    among values (None and NaN left out)."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and v == v]
    if not numbers:
        return None, None, 0
    spread = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None
    return float(np.mean(numbers)), spread, len(numbers)


def sort_groups(groups: list[list[RunSummary]], metric: str, mode: str) -> list[list[RunSummary]]:
    """Groups best first by the mean of metric's last values; those without any last."""
    sign = -1 if mode == "max" else 1

    def key(group: list[RunSummary]) -> tuple[bool, float, list[str | int]]:
        average = summarise([run.last(metric) for run in group])[0]
        return (
            average is None,
            0.0 if average is None else sign * average,
            natural_key(group[0].name),
        )

    return sorted(groups, key=key)


def _status(group: list[RunSummary]) -> str:
    """The status the runs share, else how many have each, e.g. `4 finished, 1 failed`."""
    counts = Counter(run.status for run in group)
    return (
        next(iter(counts)) if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())
    )


def tabulate_groups(
    groups: list[list[RunSummary]], metric: str, keys: list[str], columns: list[str] | None = None
) -> tuple[list[str], list[dict[str, Cell]]]:
    """Column names and one row per group: its runs, the values of `keys` and of the columns
    asked for they cover, the hyperparameters, then each metric's mean, std and n (the runs
    that logged it)."""
    measures = run_measures([run for group in groups for run in group], metric)
    columns = [key for key in columns or [] if key not in keys]
    shown = [*keys, *columns]
    hyperparameters = [k for k in hyperparameter_columns([g[0] for g in groups]) if k not in shown]
    stats = [f"{name} {stat}" for name in measures for stat in STATS]
    rows = []
    for group in groups:
        row: dict[str, Cell] = {
            "runs": RUNS_SEPARATOR.join(run.name for run in group),
            "n": len(group),
            "status": _status(group),
            **{k: ",".join(dict.fromkeys(hyperparameter_value(r, k) for r in group)) for k in keys},
            **{
                k: ",".join(dict.fromkeys(v for r in group if (v := column_value(r, k))))
                for k in columns
            },
            **{key: hyperparameter_value(group[0], key) for key in hyperparameters},
        }
        for name, measure in measures.items():
            summary = summarise([measure(run) for run in group])
            row |= {f"{name} {stat}": value for stat, value in zip(STATS, summary, strict=True)}
        row["note"] = "; ".join(f"{r.name}: {r.reason}" for r in group if r.status != "finished")
        rows.append(row)
    return ["runs", "n", "status", *shown, *hyperparameters, *stats, "note"], rows


def compare(
    path: Path,
    metric: str | None = None,
    mode: str | None = None,
    group_by: list[str] | None = None,
    columns: list[str] | None = None,
) -> tuple[list[str], list[dict[str, Cell]]]:
    """The comparison table of the runs under path: column names and rows, best run first; with
    group_by, one row per group of runs that differ only in those keys, best mean first;
    `columns` (commit, torch, a hyperparameter) shown as well."""
    runs = [read_run(run_dir, path) for run_dir in find_runs(path)]
    check_columns(runs, columns or [])
    metric = choose_metric(runs, metric)
    mode = mode or metric_mode(metric)
    if not group_by:
        return tabulate(sort_runs(runs, metric, mode), metric, columns)
    check_group_keys(runs, group_by)
    groups = sort_groups(group_runs(runs, group_by), metric, mode)
    return tabulate_groups(groups, metric, group_by, columns)


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
    names = [c.removesuffix(" mean") for c in columns if c.endswith(" mean")]
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
    grouped = {c.removesuffix(" mean") for c in columns if c.endswith(" mean")}
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
