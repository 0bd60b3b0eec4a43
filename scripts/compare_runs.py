"""Compare the runs under a folder: a table, comparison.csv and comparison.png of their curves.

    python scripts/compare_runs.py logs/train/multiruns/<timestamp>
    python scripts/compare_runs.py logs --metric val/loss --out reports/
    python scripts/compare_runs.py logs/train/multiruns/<timestamp> --group-by data.fold

With --group-by KEY[,KEY], runs that differ only in those keys (the folds of a cross-validation,
the seeds of a repeated run) are one row: each metric's mean ± std over them, and n. With
--columns KEY[,KEY], the table also shows what each run recorded for those keys: `commit`, `dirty`,
`python`, a library (`torch`), or any hyperparameter (`data.batch_size`).

The report's logic is src/tracking/report*.py; this is its command line.
"""

import argparse
import sys
from pathlib import Path

from rich.console import Console

from src.core.errors import ConfigError
from src.core.metrics import metric_mode
from src.tracking.figures import plot_curves, plot_group_curves
from src.tracking.report import sort_runs, tabulate
from src.tracking.report_columns import check_columns, choose_metric, choose_monitor
from src.tracking.report_groups import check_group_keys, group_runs, sort_groups, tabulate_groups
from src.tracking.report_render import rich_table, write_csv
from src.tracking.run_records import find_runs, read_run


def main(argv: list[str] | None = None) -> int:
    """Compare the runs under PATH: print the table, write comparison.csv and comparison.png."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a run, a sweep or search folder, or logs/")
    parser.add_argument("--out", type=Path, help="folder for comparison.csv/.png (default: PATH)")
    parser.add_argument("--metric", help="sort by this metric (default: optimized_metric)")
    parser.add_argument("--mode", choices=("max", "min"), help="default: min for losses, else max")
    parser.add_argument(
        "--group-by",
        metavar="KEY[,KEY]",
        help="one row per group of runs that differ only in these override keys (e.g. "
        "data.fold or seed): each metric's mean ± std and n",
    )
    parser.add_argument(
        "--columns",
        metavar="KEY[,KEY]",
        help="also show these: commit, dirty, python, a library (torch, lightning, ...) or any "
        "hyperparameter (data.batch_size)",
    )
    args = parser.parse_args(argv)
    path, out = args.path, args.out or args.path
    keys = [k.strip().lstrip("+") for k in (args.group_by or "").split(",") if k.strip()]
    if args.group_by is not None and not keys:
        print("error: --group-by needs a key, e.g. --group-by data.fold", file=sys.stderr)
        return 2
    if not path.is_dir():
        print(f"error: {path} is not a folder: pass a run, sweep or logs folder", file=sys.stderr)
        return 2
    if not (run_dirs := find_runs(path)):
        looked = "looked for .hydra/ folders and TensorBoard event files"
        print(f"error: no runs under {path} ({looked})", file=sys.stderr)
        return 2
    runs = [read_run(run_dir, path) for run_dir in run_dirs]
    columns = [k.strip().lstrip("+") for k in (args.columns or "").split(",") if k.strip()]
    try:
        check_group_keys(runs, keys)
        check_columns(runs, columns)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metric = choose_metric(runs, args.metric)
    try:
        mode = args.mode or metric_mode(metric)
        groups = sort_groups(group_runs(runs, keys), metric, mode) if keys else []
        runs = sort_runs(runs, metric, mode)
        if keys:
            columns, rows = tabulate_groups(groups, metric, keys, columns)
        else:
            columns, rows = tabulate(runs, metric, columns)
    except ConfigError as error:
        print(f"error: {error}, or pass --mode max|min", file=sys.stderr)
        return 2
    order = "highest" if mode == "max" else "lowest"
    counted = f"{len(runs)} run{'s' * (len(runs) != 1)}"
    if keys:
        counted += f" in {len(groups)} group{'s' * (len(groups) != 1)} by {','.join(keys)}"
    sorted_by = f"{metric} mean" if keys else metric
    title = f"{counted} under {path}, sorted by {sorted_by} ({order} first)"
    # Rows unwrapped when the output goes to a file or a pipe, where nobody reads wrapped lines.
    console = Console(width=None if sys.stdout.isatty() else 1000)
    console.print(rich_table(columns, rows, title))
    monitor = choose_monitor(runs, metric)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(columns, rows, out / "comparison.csv")
        if keys:
            plot_group_curves(groups, keys, monitor, out / "comparison.png", title)
        else:
            plot_curves(runs, monitor, out / "comparison.png", title)
    except OSError as error:
        print(f"error: cannot write to {out}: {error.strerror}: pass --out DIR", file=sys.stderr)
        return 1
    console.print(
        f"wrote {out / 'comparison.csv'}\nwrote {out / 'comparison.png'}", highlight=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
