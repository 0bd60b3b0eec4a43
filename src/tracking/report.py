"""The comparison table of the runs under a folder: one row per run, best first, or per group.

scripts/compare_runs.py is its command line; what a row shows of a run is report_columns.py, a
group's row report_groups.py, the table as CSV and in the terminal report_render.py, the plot
figures.py (all in src/tracking/). Each run's hyperparameters come from
.hydra/overrides.yaml and its TensorBoard HPARAMS record (where the values a finder applied win
over the overrides), its metrics from its TensorBoard scalars, and how it ended from its
status.txt, so crashed, failed and pruned runs show as such instead of being left out;
--columns adds what else they recorded (the commit of provenance.json). Grouped (--group-by), runs
that differ only in the given keys (the folds of a cross-validation, the seeds of a repeated run)
make one row of each metric's mean, standard deviation and count.
"""

from pathlib import Path

from src.core.metrics import metric_mode
from src.tracking.report_columns import (
    Cell,
    check_columns,
    choose_metric,
    column_value,
    hyperparameter_columns,
    hyperparameter_value,
    run_measures,
)
from src.tracking.report_groups import check_group_keys, group_runs, sort_groups, tabulate_groups
from src.tracking.run_records import RunSummary, find_runs, read_run


def sort_runs(runs: list[RunSummary], metric: str, mode: str) -> list[RunSummary]:
    """Runs best first by the last value of metric; those without one (or NaN) last, by name."""
    return [group[0] for group in sort_groups([[run] for run in runs], metric, mode)]


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
