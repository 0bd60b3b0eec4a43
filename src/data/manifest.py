"""The image manifest: what verifying each file found, valid while its size and mtime hold."""

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

from src.core.errors import ConfigError
from src.core.files import write_atomically

log = logging.getLogger(__name__)
VERSION = 1
# torchrun sets RANK; Lightning's DDP launcher gives its children only LOCAL_RANK and NODE_RANK;
# SLURM numbers its tasks with SLURM_PROCID
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


class Entry(NamedTuple):
    """What verifying one file found: its size, mtime (ns) and why it is unreadable (None: ok)."""

    size: int
    mtime_ns: int
    problem: str | None


def manifest_file(manifest_dir: Path, source: Path) -> Path:
    """The manifest of one data source (a root folder or a labels file) inside manifest_dir."""
    resolved = source.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return manifest_dir / f"{resolved.name}-{digest}.json"


def is_global_rank_zero() -> bool:
    """Whether this process is the first of a distributed run, or not in one (by env vars)."""
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


def read_manifest(path: Path) -> dict[str, Entry]:
    """The entries of a manifest by file key; none when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["version"] != VERSION:
            raise ValueError(f"version {data['version']}, not {VERSION}")
        return {
            key: Entry(int(item["size"]), int(item["mtime_ns"]), item["problem"])
            for key, item in data["images"].items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the image manifest %s (%s): its images are verified again", path, exc)
        return {}


def write_manifest(path: Path, source: Path, entries: dict[str, Entry]) -> None:
    """Write the entries atomically; if that fails, warn and go on (they are verified again)."""
    images = {key: entry._asdict() for key, entry in entries.items()}
    text = json.dumps({"version": VERSION, "source": str(source.resolve()), "images": images})
    try:
        write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    except (OSError, ConfigError) as exc:  # ConfigError: a full disk or read-only folder
        log.warning(
            "cannot write the image manifest %s (%s): images are verified again on every run; "
            "set data.manifest_dir to a writable folder, or to null to silence this",
            path,
            exc,
        )
