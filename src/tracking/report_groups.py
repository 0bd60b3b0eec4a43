"""Runs that differ only in some keys (the folds of a cross-validation, the seeds of a repeated
run) as one row of the comparison table: each metric's mean, standard deviation and count."""

from collections import Counter
from difflib import get_close_matches

import numpy as np

from src.core.errors import ConfigError
from src.core.hparams import is_hyperparameter
from src.tracking.report_columns import (
    Cell,
    column_value,
    hyperparameter_columns,
    hyperparameter_value,
    run_measures,
)
from src.tracking.run_records import RunSummary, natural_key

# the columns of each metric in a grouped table, and how a group's run names are joined
STATS = ("mean", "std", "n")
RUNS_SEPARATOR = "; "


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
