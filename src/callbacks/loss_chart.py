"""TensorBoard's CUSTOM SCALARS tab: metrics overlaid on one chart, e.g. train/loss and val/loss."""

import re
from collections.abc import Mapping, Sequence

import lightning as L

from src.callbacks.tensorboard import tensorboard_writer
from src.core.errors import ConfigError

CATEGORY = "train and validation"  # the heading the charts appear under


def custom_scalars_layout(charts: Mapping[str, Sequence[str]]) -> dict:
    """SummaryWriter.add_custom_scalars' layout: one multi-line chart per entry (title -> metric
    names). TensorBoard matches a chart's tags as regular expressions from the start of a name,
    so each name is escaped and anchored at its end too (val/loss must not match val/loss_best)."""
    return {
        CATEGORY: {
            title: ["Multiline", [re.escape(name) + "$" for name in names]]
            for title, names in charts.items()
        }
    }


class LossChart(L.Callback):
    """Write the chart layout once a fit starts, into the run's TensorBoard files (rank zero).

    Args:
        charts: chart title -> the metric names drawn on it; by default one chart, `loss`, with
            train/loss and val/loss.
    """

    def __init__(self, charts: Mapping[str, Sequence[str]] | None = None) -> None:
        charts = dict(charts) if charts is not None else {"loss": ["train/loss", "val/loss"]}
        for title, names in charts.items():
            if isinstance(names, str) or not names:
                raise ConfigError(
                    f"callbacks.loss_chart.charts.{title} must list metric names, got {names!r}"
                )
        self.charts = {title: [str(name) for name in names] for title, names in charts.items()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (writer := tensorboard_writer(trainer)) is None:
            return
        writer.add_custom_scalars(custom_scalars_layout(self.charts))
        writer.flush()
