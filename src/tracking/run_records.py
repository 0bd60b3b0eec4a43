"""Read a run folder back: its overrides, TensorBoard hyperparameters and scalars, its status
(status.txt) and provenance.

Light on purpose (no Lightning import), so reports over many runs start at once.
"""

import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import yaml
from google.protobuf.struct_pb2 import Value
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from src.core.runs import read_status
from src.tracking.provenance import read_provenance

EVENT_FILES = "events.out.tfevents.*"
# Every scalar and text; not the images, histograms and audio a run may also log.
SIZE_GUIDANCE = {"scalars": 0, "tensors": 0, "images": 1, "histograms": 1, "audio": 1}

HParam = str | int | float | bool


@dataclass
class RunSummary:
    """One run as it is on disk: where it is, how it ended, its hyperparameters and scalars."""

    name: str
    path: Path
    status: str
    reason: str = ""
    overrides: dict[str, str] = field(default_factory=dict)
    hparams: dict[str, HParam] = field(default_factory=dict)
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    # the commit, dirty, python and library versions of src/tracking/provenance.py
    provenance: dict[str, HParam | None] = field(default_factory=dict)

    def values(self, tag: str) -> list[float]:
        """The values logged for a tag, oldest first."""
        return [value for _, value in self.scalars.get(tag, [])]

    def last(self, tag: str) -> float | None:
        """The last value logged for a tag, or None."""
        values = self.values(tag)
        return values[-1] if values else None

    def epoch_at(self) -> dict[int, float]:
        """The `epoch` scalar at each step."""
        epoch_at: dict[int, float] = {}
        for step, epoch in self.scalars.get("epoch", []):
            epoch_at.setdefault(step, epoch)
        return epoch_at

    def by_epoch(self, tag: str) -> tuple[list[float], list[float]]:
        """A tag's values and the epochs they were logged at (their position if unknown)."""
        points = self.scalars.get(tag, [])
        epoch_at = self.epoch_at()
        steps = [step for step, _ in points]
        known = set(steps) <= set(epoch_at)
        epochs = [epoch_at[step] for step in steps] if known else list(range(len(steps)))
        return epochs, [value for _, value in points]


def natural_key(name: str) -> list[str | int]:
    """Sorts run 10 after run 9."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_runs(path: Path) -> list[Path]:
    """Run folders at or under path: with a .hydra/ folder, TensorBoard event files, or both."""
    runs = []
    for folder, subfolders, files in os.walk(path):
        here = Path(folder)
        if (
            (here / ".hydra").is_dir()
            or any((here / "tensorboard").glob(EVENT_FILES))
            or any(fnmatch(name, EVENT_FILES) for name in files)
        ):
            runs.append(here)
            subfolders.clear()  # everything below a run belongs to it
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
    return sorted(runs, key=lambda run: natural_key(str(run)))


def _plain(value: Value) -> HParam:
    kind = value.WhichOneof("kind")
    plain = getattr(value, kind) if kind else ""
    # TensorBoard stores every number as a float: show batch size 64, not 64.0.
    return int(plain) if isinstance(plain, float) and plain.is_integer() else plain


def _session_hparams(accumulator: EventAccumulator) -> dict[str, HParam]:
    try:
        content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    except KeyError:
        return {}
    if metadata.SESSION_START_INFO_TAG not in content:
        return {}
    start = HParamsPluginData.FromString(content[metadata.SESSION_START_INFO_TAG])
    return {key: _plain(value) for key, value in start.session_start_info.hparams.items()}


def read_overrides(run_dir: Path) -> dict[str, str]:
    """The run's command-line overrides as key -> value text, without deletions (`~key`)."""
    file = run_dir / ".hydra" / "overrides.yaml"
    overrides = {}
    for item in (yaml.safe_load(file.read_text()) or []) if file.is_file() else []:
        key, has_value, value = str(item).partition("=")
        if has_value and not key.startswith("~"):
            overrides[key.lstrip("+")] = value
    return overrides


def read_run(run_dir: Path, root: Path | None = None) -> RunSummary:
    """Read a run's overrides, hyperparameters, scalars and status; name it relative to root."""
    scalars: dict[str, list[tuple[float, int, float]]] = {}
    hparams: dict[str, HParam] = {}
    event_folders = sorted({file.parent for file in run_dir.rglob(EVENT_FILES)})
    for folder in event_folders:
        accumulator = EventAccumulator(str(folder), size_guidance=SIZE_GUIDANCE)
        accumulator.Reload()
        tags = accumulator.Tags()
        for tag in tags["scalars"]:
            events = accumulator.Scalars(tag)
            scalars.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in events)
        hparams.update(_session_hparams(accumulator))
    status, reason, _ = read_status(run_dir, started=bool(event_folders))
    inside = root is not None and run_dir.resolve() != root.resolve()
    return RunSummary(
        name=str(run_dir.relative_to(root)) if inside else run_dir.resolve().name,
        path=run_dir,
        status=status,
        reason=reason,
        overrides=read_overrides(run_dir),
        hparams=hparams,
        # In the order they were written, also across several event folders.
        scalars={tag: [(s, v) for _, s, v in sorted(events)] for tag, events in scalars.items()},
        provenance=read_provenance(run_dir),
    )
