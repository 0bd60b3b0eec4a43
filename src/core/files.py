"""Files a run or a report writes, replaced whole: no reader ever sees half of one.

A file is written to a hidden temporary file in its own folder, synced to disk, renamed over the
old one (a single step on every local file system) and the folder synced, so a kill or a power
cut at any instant leaves either the old file or the new one. A full disk or a read-only folder
is reported as one line naming the file.
"""

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from src.core.errors import ConfigError

# Name of a file being written: hidden, never ending in the real name's suffix (a glob for
# `*.ckpt` does not find it) and never containing "ckpt_" (Lightning's search for the newest
# `hpc_ckpt_<n>.ckpt` reads the digits of every name that contains it).
PARTIAL_PREFIX = ".partial-"
# What to say for the errors that mean "this folder takes no more files", by errno name.
_CANNOT_WRITE = {
    "ENOSPC": ("no space left on device", "free space"),
    "EDQUOT": ("disk quota exceeded", "free space"),
    "EROFS": ("read-only file system", "make it writable"),
    "EACCES": ("permission denied", "make the folder writable"),
    "EPERM": ("operation not permitted", "make the folder writable"),
}
CANNOT_WRITE = {getattr(errno, n): text for n, text in _CANNOT_WRITE.items() if hasattr(errno, n)}
ELSEWHERE = "set paths.log_dir=... to write elsewhere"
# The last line of a traceback of an OSError: `OSError: [Errno 30] Read-only file system: '/x'`
OS_ERROR_LINE = re.compile(r"^\w*Error: \[Errno (\d+)\] [^:]+(?:: '(.+)')?$")


def cannot_write(path: Path | str, exc: OSError, elsewhere: str = ELSEWHERE) -> ConfigError | None:
    """The one-line error for a full disk or a read-only folder while writing path, else None."""
    if exc.errno not in CANNOT_WRITE:
        return None
    what, fix = CANNOT_WRITE[exc.errno]
    return ConfigError(f"cannot write {path}: {what}; {fix} or {elsewhere}")


def cannot_write_line(report: str) -> str | None:
    """For a printed traceback that ends in a full disk or a read-only folder (Hydra's, when it
    cannot make the run folder or write .hydra/), the one line saying so; else None."""
    for line in reversed(report.strip().splitlines()):
        if match := OS_ERROR_LINE.match(line.strip()):
            error = cannot_write(match[2] or "the run's files", OSError(int(match[1]), ""))
            return None if error is None else str(error)
    return None


# The temporary files this process is writing now (a checkpoint may be saved in a thread).
_in_flight: set[Path] = set()


def is_partial(path: Path) -> bool:
    """Whether path is the temporary file of a write not finished: under way, or killed."""
    return path.name.startswith(PARTIAL_PREFIX)


def remove_partial_files(folder: Path) -> list[Path]:
    """Delete what writes killed before they finished left in folder (not this process's
    writes under way; a folder is written by one run at a time); return what was deleted."""
    removed = []
    for partial in sorted(folder.glob(f"{PARTIAL_PREFIX}*")) if folder.is_dir() else []:
        if partial not in _in_flight:
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def sync_folder(folder: Path) -> None:
    """Make a rename in folder durable (a no-op where folders cannot be synced, as on Windows)."""
    if os.name == "nt":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError as exc:  # some network file systems cannot sync a folder; nothing to do then
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(handle)


def _sync_file(path: Path) -> None:
    handle = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(handle)  # the data of every descriptor of the file, not only this one's
    finally:
        os.close(handle)


def _new_partial(folder: Path) -> Path:
    """Create an empty temporary file in folder (permissions as the umask says, like open())."""
    while True:
        path = folder / f"{PARTIAL_PREFIX}{secrets.token_hex(6)}"  # hex: no "ckpt_" in it
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        _in_flight.add(path)
        return path


def write_atomically(
    path: Path, write: Callable[[Path], object], elsewhere: str = ELSEWHERE
) -> None:
    """Call write(temporary path) beside path, sync it, then move it over path in one step.

    The temporary path has no suffix: pass a format where a writer infers it from the name
    (`savefig(temporary, format="png")`). On failure the temporary file is removed and a file
    already at path is left as it was; a full disk or a read-only folder raises a ConfigError
    that names path (`elsewhere` says where else to write).
    """
    path = Path(path)
    partial: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = _new_partial(path.parent)
        write(partial)
        _sync_file(partial)
        os.replace(partial, path)
        _in_flight.discard(partial)
        partial = None
        sync_folder(path.parent)
    except BaseException as exc:
        if partial is not None:
            _in_flight.discard(partial)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        error = cannot_write(path, exc, elsewhere) if isinstance(exc, OSError) else None
        if error is not None:
            raise error from exc
        raise
