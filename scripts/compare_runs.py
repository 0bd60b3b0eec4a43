"""Compare the runs under a folder: a table, comparison.csv and comparison.png of their curves.

    python scripts/compare_runs.py logs/train/multiruns/<timestamp>
    python scripts/compare_runs.py logs --metric val/loss --out reports/

The report's logic is src/tracking/report.py; this is its command line.
"""

import argparse
import sys
from pathlib import Path

from rich.console import Console

from src.cli.errors import ConfigError
from src.tracking.metrics import metric_mode
from src.tracking.report import (
    choose_metric,
    choose_monitor,
    plot_curves,
    rich_table,
    sort_runs,
    tabulate,
    write_csv,
)
from src.tracking.run_records import find_runs, read_run


def main(argv: list[str] | None = None) -> int:
    """Compare the runs under PATH: print the table, write comparison.csv and comparison.png."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a run, a sweep or search folder, or logs/")
    parser.add_argument("--out", type=Path, help="folder for comparison.csv/.png (default: PATH)")
    parser.add_argument("--metric", help="sort by this metric (default: optimized_metric)")
    parser.add_argument("--mode", choices=("max", "min"), help="default: min for losses, else max")
    args = parser.parse_args(argv)
    path, out = args.path, args.out or args.path
    if not path.is_dir():
        print(f"error: {path} is not a folder: pass a run, sweep or logs folder", file=sys.stderr)
        return 2
    if not (run_dirs := find_runs(path)):
        looked = "looked for .hydra/ folders and TensorBoard event files"
        print(f"error: no runs under {path} ({looked})", file=sys.stderr)
        return 2
    runs = [read_run(run_dir, path) for run_dir in run_dirs]
    metric = choose_metric(runs, args.metric)
    try:
        mode = args.mode or metric_mode(metric)
        runs = sort_runs(runs, metric, mode)
        columns, rows = tabulate(runs, metric)
    except ConfigError as error:
        print(f"error: {error}, or pass --mode max|min", file=sys.stderr)
        return 2
    order = "highest" if mode == "max" else "lowest"
    counted = f"{len(runs)} run{'s' * (len(runs) != 1)}"
    title = f"{counted} under {path}, sorted by {metric} ({order} first)"
    # Rows unwrapped when the output goes to a file or a pipe, where nobody reads wrapped lines.
    console = Console(width=None if sys.stdout.isatty() else 1000)
    console.print(rich_table(columns, rows, title))
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(columns, rows, out / "comparison.csv")
        plot_curves(runs, choose_monitor(runs, metric), out / "comparison.png", title)
    except OSError as error:
        print(f"error: cannot write to {out}: {error.strerror}: pass --out DIR", file=sys.stderr)
        return 1
    console.print(
        f"wrote {out / 'comparison.csv'}\nwrote {out / 'comparison.png'}", highlight=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
