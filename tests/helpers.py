"""Read what a run wrote, the way a user would: event files, CSV, checkpoints."""

import csv
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def tensorboard_scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar tag in the run's TensorBoard event files, read with tensorboard's reader."""
    values: dict[str, list[float]] = {}
    for events in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in accumulator.Scalars(tag))
    return values


def csv_metric(run_dir: Path, name: str) -> list[float]:
    """The values of one metric in the run's csv/metrics.csv, in the order they were logged."""
    with open(run_dir / "csv" / "metrics.csv") as file:
        return [float(row[name]) for row in csv.DictReader(file) if row.get(name)]


def tensorboard_events(run_dir: Path) -> EventAccumulator:
    """All of a run's TensorBoard records (images, histograms, text, hparams), fully loaded."""
    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"),
        size_guidance={"images": 0, "histograms": 0, "tensors": 0, "scalars": 0},
    )
    accumulator.Reload()
    return accumulator


def run_status(run_dir: Path) -> list[str]:
    """The run's `run/status` texts in the order they were written."""
    events = tensorboard_events(run_dir).Tensors("run/status/text_summary")
    events = sorted(events, key=lambda e: e.wall_time)
    return [e.tensor_proto.string_val[0].decode() for e in events]


def session_hparams(run_dir: Path) -> dict[str, object]:
    """The hyperparameters of the run's TensorBoard HPARAMS session."""
    from google.protobuf.json_format import MessageToDict
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = tensorboard_events(run_dir).PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return MessageToDict(start.session_start_info)["hparams"]
