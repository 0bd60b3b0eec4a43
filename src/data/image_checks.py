"""Verifying image files once: decode each, and remember the outcome in a manifest so that a
later build decodes only new or changed files."""

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from src.data.images import image_problem
from src.data.manifest import Entry, is_global_rank_zero, read_manifest, write_manifest

log = logging.getLogger(__name__)
STAT_CHUNK = 4096  # files stat'ed per task: few tasks, yet parallel on network file systems


def file_stamp(path: Path) -> tuple[int, int] | None:
    """A file's size and modification time in ns, or None when it cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def file_stamps(paths: Sequence[Path], pool: ThreadPoolExecutor) -> list[tuple[int, int] | None]:
    """The stamp of each file, stat'ed in chunks across the pool."""
    chunks = [paths[i : i + STAT_CHUNK] for i in range(0, len(paths), STAT_CHUNK)]
    stamped = pool.map(lambda chunk: [file_stamp(path) for path in chunk], chunks)
    return [stamp for chunk in stamped for stamp in chunk]


def manifest_key(path: Path, base: str) -> str:
    """The path relative to the absolute folder base, or absolute if it lies outside."""
    absolute = os.path.abspath(path)
    return absolute[len(base) + 1 :] if absolute.startswith(base + os.sep) else absolute


def find_problems(paths: Sequence[Path], source: Path, manifest: Path | None) -> list[str | None]:
    """Why each file of `source` (a folder or a labels file) does not decode (None: it does),
    decoding only files the manifest does not vouch for; global rank zero updates the manifest."""
    cached = read_manifest(manifest) if manifest else {}
    base = os.path.abspath(source if source.is_dir() else source.parent)
    keys = [manifest_key(path, base) for path in paths]
    problems: list[str | None] = [None] * len(paths)
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        stamps = file_stamps(paths, pool)  # before decoding: a file changed meanwhile is redone
        unknown = []
        for i, (key, stamp) in enumerate(zip(keys, stamps, strict=True)):
            entry = cached.get(key)
            if stamp is not None and entry is not None and (entry.size, entry.mtime_ns) == stamp:
                problems[i] = entry.problem
            else:
                unknown.append(i)
        found = pool.map(image_problem, [paths[i] for i in unknown])
        for i, problem in zip(unknown, found, strict=True):
            problems[i] = problem
    log.info("decoded %d new or changed images of %d to verify them", len(unknown), len(paths))
    if manifest is not None and is_global_rank_zero():
        entries = {
            key: Entry(*stamp, problem)
            for key, stamp, problem in zip(keys, stamps, problems, strict=True)
            if stamp is not None  # a file that cannot be stat'ed is verified again next time
        }
        if entries != cached:
            write_manifest(manifest, source, entries)
    return problems
