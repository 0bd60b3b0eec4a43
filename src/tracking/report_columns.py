"""What the comparison table shows of one run: its hyperparameters (the values a finder applied
winning over the overrides) and the --columns it recorded, which keys differ between runs, the
metric to sort by and the metric columns."""

from collections import Counter
from collections.abc import Callable
from difflib import get_close_matches
from statistics import mean

from src.core.errors import ConfigError
from src.core.hparams import is_hyperparameter
from src.core.metrics import BEST, DEFAULT_MONITOR, metric_mode
from src.tracking.hparams import APPLIED
from src.tracking.run_records import RunSummary

Cell = str | int | float | None


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
