"""data.mean/std=auto: the per-channel mean and standard deviation of the training images,
computed once and remembered beside the image manifest, keyed by the training split's files (path,
size, mtime), the image size and the split settings, so a later run on the same split reads them
and any change (a file added or edited, another fold or split seed) computes them again."""

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from src.core.errors import ConfigError
from src.core.files import write_atomically
from src.data.manifest import is_global_rank_zero, manifest_file

log = logging.getLogger(__name__)
VERSION = 1
# a remembered file keeps this many training splits (folds, seeds, sizes), the newest
KEPT = 32
# uint8 pixels summed in float64 this many images at a time (a bound on the memory it takes)
CHUNK = 256


class Statistics(NamedTuple):
    """Per-channel mean and standard deviation of pixels in [0, 1], and how many images gave
    them."""

    mean: list[float]
    std: list[float]
    images: int


def channel_statistics(batches: Iterable[Tensor]) -> Statistics:
    """The mean and (population) standard deviation per channel of uint8 image batches (N, C, H,
    W), scaled to [0, 1], summed in float64 a chunk at a time."""
    total = squares = None
    pixels = images = 0
    for batch in batches:
        for chunk in batch.split(CHUNK):
            x = chunk.to(torch.float64).div_(255).transpose(0, 1).flatten(1)  # (C, pixels)
            total = x.sum(1) if total is None else total + x.sum(1)
            squares = x.square().sum(1) if squares is None else squares + x.square().sum(1)
            pixels += x.shape[1]
            images += len(chunk)
    if total is None or squares is None:
        raise ValueError("no images to compute statistics from")
    mean = total / pixels
    std = (squares / pixels - mean.square()).clamp_(min=0).sqrt_()
    return Statistics(mean.tolist(), std.tolist(), images)


def statistics_key(paths: Sequence[Path], image_size: int, settings: Mapping[str, Any]) -> str:
    """A digest of the training files (path, size, mtime), the image size and the split
    settings: what the statistics depend on."""
    digest = hashlib.sha256(json.dumps([VERSION, image_size, dict(settings)]).encode())
    for path in paths:
        stat = Path(path).stat()
        digest.update(f"\0{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def statistics_file(manifest_dir: Path, source: Path) -> Path:
    """Where the statistics of one data source's training splits are remembered."""
    return manifest_file(manifest_dir, source).with_suffix(".statistics.json")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["version"] != VERSION or not isinstance(data["splits"], dict):
            raise ValueError(f"version {data['version']}, not {VERSION}")
        return data["splits"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the remembered statistics %s (%s): computing them again", path, exc)
        return {}


def remembered_statistics(path: Path, key: str) -> Statistics | None:
    """The statistics remembered in `path` under `key`, or None."""
    entry = _read(path).get(key)
    try:
        return None if entry is None else Statistics(entry["mean"], entry["std"], entry["images"])
    except (KeyError, TypeError):
        return None


def remember_statistics(path: Path, source: Path, key: str, found: Statistics) -> None:
    """Add `found` under `key` atomically (on the first process only); if that fails, warn and go
    on (the next run computes them again)."""
    if not is_global_rank_zero():
        return
    splits = {k: v for k, v in _read(path).items() if k != key}
    splits = dict(list(splits.items())[-(KEPT - 1) :]) | {key: found._asdict()}
    text = json.dumps({"version": VERSION, "source": str(source.resolve()), "splits": splits})
    try:
        write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    except (OSError, ConfigError) as exc:  # ConfigError: a full disk or read-only folder
        log.warning("cannot remember the statistics in %s (%s): computed again next run", path, exc)


def training_statistics(
    paths: Sequence[Path],
    image_size: int,
    settings: Mapping[str, Any],
    remembered: Path | None,
    source: Path,
    batches: Callable[[], Iterable[Tensor]],
) -> tuple[Statistics, str]:
    """The statistics of the training images `paths` (as the uint8 `batches()` give them):
    read from `remembered` when it holds this split's, else computed and remembered there; with
    a note of which."""
    key = statistics_key(paths, image_size, settings)
    if remembered is not None and (found := remembered_statistics(remembered, key)):
        return found, f"remembered in {remembered}"
    start = time.perf_counter()
    found = channel_statistics(batches())
    if remembered is not None:
        remember_statistics(remembered, source, key, found)
    return found, f"computed in {time.perf_counter() - start:.1f} s"


def fill_in_auto(
    mean: Sequence[float] | str, std: Sequence[float] | str, found: Statistics, source: Path
) -> tuple[list[float], list[float]]:
    """`mean` and `std`, each "auto" replaced by what was found (rounded to 4 decimals, plenty
    for normalising and readable in a config)."""
    if std == "auto" and min(round(v, 4) for v in found.std) <= 0:
        raise ConfigError(
            f"data.std=auto: the training images of {source} have one value throughout a "
            "colour channel (std 0): give data.std=[...] instead"
        )
    return (
        [round(v, 4) for v in found.mean] if mean == "auto" else list(mean),
        [round(v, 4) for v in found.std] if std == "auto" else list(std),
    )
