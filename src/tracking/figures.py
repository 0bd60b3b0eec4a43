"""Matplotlib figures: test results for TensorBoard, and the curves of the comparison report."""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from src.core.files import write_atomically  # noqa: E402
from src.tracking.report_columns import hyperparameter_columns, hyperparameter_value  # noqa: E402
from src.tracking.report_groups import summarise  # noqa: E402
from src.tracking.report_render import display_name, short_text  # noqa: E402
from src.tracking.run_records import RunSummary  # noqa: E402

if TYPE_CHECKING:  # torch only for the annotations: the report starts without importing it
    from torch import Tensor


def confusion_matrix_figure(matrix: "Tensor", class_names: Sequence[str]) -> Figure:
    """A heat map of counts, true classes down, predicted classes across."""
    n = len(class_names)
    size = min(2 + 0.5 * n, 16)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix.numpy(), cmap="Blues")
    axes.set(
        xticks=range(n),
        yticks=range(n),
        xlabel="predicted",
        ylabel="true",
        title="test confusion matrix",
    )
    axes.set_xticklabels(class_names, rotation=90)
    axes.set_yticklabels(class_names)
    if n <= 20:
        high = matrix.max().item()
        for true, row in enumerate(matrix.tolist()):
            for predicted, count in enumerate(row):
                color = "white" if count > high / 2 else "black"
                axes.text(predicted, true, int(count), ha="center", va="center", color=color)
    figure.tight_layout()
    return figure


def average_precision_bars(scores: "Tensor", class_names: Sequence[str]) -> Figure:
    """One bar per label: its test average precision."""
    figure, axes = plt.subplots(figsize=(min(2 + 0.4 * len(class_names), 16), 4))
    axes.bar(range(len(class_names)), scores.numpy())
    axes.set(ylim=(0, 1), ylabel="average precision", title="test AP per label")
    axes.set_xticks(range(len(class_names)))
    axes.set_xticklabels(class_names, rotation=90)
    figure.tight_layout()
    return figure


def _settings(run: RunSummary, keys: list[str]) -> str:
    """`lr=0.01 optimizer=sgd`: the run's values of keys, short."""
    return " ".join(
        f"{k.rsplit('.', 1)[-1]}={short_text(hyperparameter_value(run, k))}" for k in keys
    )


def _save_curves(
    panels: list[str], lines: int, title: str, path: Path, draw: Callable[[Axes, str], int]
) -> None:
    """One panel per tag, against epoch, with `draw(axes, tag)` drawing its lines (and returning
    how many); one legend below; written to path."""
    figure = Figure(figsize=(6 * len(panels), 4.5 + 0.2 * lines), layout="constrained")
    drawn = 0
    for axes, tag in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        drawn = max(drawn, draw(axes, tag))
        axes.set(title=tag, xlabel="epoch", ylabel=tag)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    if drawn:
        handles, labels = figure.axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", fontsize="small")
    else:
        figure.axes[0].text(
            0.5, 0.5, f"no run logged {panels[0]}", ha="center", transform=figure.axes[0].transAxes
        )
    figure.suptitle(title)
    save_figure(figure, path, dpi=120)


def save_figure(figure: Figure, path: Path, dpi: int) -> None:
    """Save the figure whole or not at all, in the format its name's suffix says."""
    file_format = path.suffix.removeprefix(".") or None  # the temporary name has no suffix
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=dpi, format=file_format))


def plot_curves(runs: list[RunSummary], monitor: str, path: Path, title: str) -> None:
    """The validation curves of the runs against epoch: the monitored metric and val/loss."""
    panels = [monitor] + ["val/loss"] * (monitor != "val/loss")
    hyperparameters = hyperparameter_columns(runs)
    plotted = [run for run in runs if run.scalars.get(monitor)]

    def draw(axes: Axes, tag: str) -> int:
        for run in plotted:
            named = all(f"{k}={hyperparameter_value(run, k)}" in run.name for k in hyperparameters)
            # sweep folders already name their overrides
            settings = "" if named else _settings(run, hyperparameters)
            ended = "" if run.status in ("finished", "running") else f" ({run.status})"
            style = "--" if ended else "-"
            label = f"{run.name}  {settings}{ended}"
            axes.plot(*run.by_epoch(tag), style, marker="o", label=label)
        return len(plotted)

    _save_curves(panels, len(plotted), title, path, draw)


def plot_group_curves(
    groups: list[list[RunSummary]], keys: list[str], monitor: str, path: Path, title: str
) -> None:
    """Each group's mean validation curve against epoch, with a band of ±1 standard deviation
    over the group's runs that reached the epoch (dashed once some had stopped): the monitored
    metric and val/loss."""
    panels = [monitor] + ["val/loss"] * (monitor != "val/loss")
    hyperparameters = [k for k in hyperparameter_columns([g[0] for g in groups]) if k not in keys]
    plotted = [group for group in groups if any(run.scalars.get(monitor) for run in group)]

    def draw(axes: Axes, tag: str) -> int:
        for group in plotted:
            curves = [dict(zip(*run.by_epoch(tag), strict=True)) for run in group]
            epochs = sorted({epoch for curve in curves for epoch in curve})
            stats = [summarise([c[e] for c in curves if e in c]) for e in epochs]
            means = [average for average, _, _ in stats]
            spreads = [spread or 0.0 for _, spread, _ in stats]
            names = ",".join(display_name(run.name) for run in group)
            count = sum(bool(curve) for curve in curves)
            label = f"{_settings(group[0], hyperparameters) or names}  mean ± std of {count} runs"
            # solid while every run is in the mean, dashed after the first one stopped
            every = next((i for i, (_, _, n) in enumerate(stats) if n < count), len(stats))
            (line,) = axes.plot(
                epochs[:every], means[:every], marker="o", markersize=3, label=label
            )
            if every < len(stats):
                start = max(every - 1, 0)
                axes.plot(
                    epochs[start:],
                    means[start:],
                    "--",
                    color=line.get_color(),
                    marker="o",
                    markersize=2,
                )
            low = [m - s for m, s in zip(means, spreads, strict=True)]
            high = [m + s for m, s in zip(means, spreads, strict=True)]
            axes.fill_between(epochs, low, high, color=line.get_color(), alpha=0.25, linewidth=0)
        return len(plotted)

    _save_curves(panels, len(plotted), title, path, draw)
