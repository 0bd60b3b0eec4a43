"""Bad input as one `error: ...` line and exit code 2: Hydra's composition errors and our own.

Hydra prints a composition error (an unknown key or option) over several lines before the task
starts, so stderr is held back until the config has composed; the sweepers release it once their
own set-up is done, since jobs may run in other processes.
"""

import io
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from difflib import get_close_matches
from functools import wraps
from pathlib import Path
from typing import Any, TextIO

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from src.cli.trainer_args import check_trainer_config, trainer_class, unknown_key_message
from src.core.errors import RAISED_IN_RESOLVER, ConfigError, user_error_in
from src.core.files import cannot_write_line

log = logging.getLogger(__name__)

# Lines of Hydra's composition errors that repeat the first line or point elsewhere.
HYDRA_NOISE = (
    "Set the environment variable HYDRA_FULL_ERROR",
    "full_key:",
    "object_type=",
    "Key '",
)
_held_stderr: list[tuple[TextIO, io.StringIO]] = []  # (real stderr, its stand-in)


def _one_line(report: str) -> str | None:
    """Hydra's several-line error report as one line (indented lists joined by commas), or None
    for a traceback of anything but bad input."""
    if "Traceback" in report:  # ours only if its last line is a ConfigError's, maybe in a resolver
        if (line := cannot_write_line(report)) is not None:  # Hydra could not make the run folder
            return line
        error, _, message = report.strip().splitlines()[-1].partition(": ")
        if error.rsplit(".", 1)[-1] == ConfigError.__name__:
            return message
        return (
            message.removeprefix(RAISED_IN_RESOLVER)
            if message.startswith(RAISED_IN_RESOLVER)
            else None
        )
    parts: list[str] = []
    for line in report.splitlines():
        text = line.strip()
        if text.startswith("Config search path"):
            break
        if not text or text.startswith(HYDRA_NOISE):
            continue
        if line.startswith("\t") and parts:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + text
        else:
            parts.append(text)
    return " ".join(p if p[-1] in ".:" else p + "." for p in parts).rstrip(".")


def _closest_key(key: str, parent: DictConfig, prefix: str) -> str | None:
    """The dotted name of the key of parent closest to key; at the top level also the keys of
    the groups (max_epochs -> trainer.max_epochs)."""
    keys = [str(k) for k in parent.keys()]
    if close := get_close_matches(key, keys, n=1):
        return f"{prefix}.{close[0]}" if prefix else close[0]
    if prefix:
        return None
    tree = OmegaConf.to_container(parent, resolve=False)
    by_name: dict[str, str] = {}  # a key's name -> its dotted name (the first group's)
    for group, node in tree.items():
        if isinstance(node, dict) and group != "hydra":
            for name in node:
                by_name.setdefault(str(name), f"{group}.{name}")
    close = get_close_matches(key, list(by_name), n=1)  # the same name comes first
    return by_name[close[0]] if close else None


def _missing_key_line(exit: SystemExit) -> str | None:
    """For an override of a key the config does not have (Hydra: "Key 'x' is not in struct"):
    one line naming the closest valid key, with its type for the Trainer's arguments; None when
    no key is close (Hydra's own words are kept)."""
    error = exit.__context__
    while error is not None and not isinstance(error, ConfigAttributeError | ConfigKeyError):
        error = error.__cause__ or error.__context__
    parent = getattr(error, "parent_node", None)
    if error is None or not isinstance(parent, DictConfig) or not error.full_key:
        return None
    prefix, _, key = str(error.full_key).rpartition(".")
    if prefix == "trainer" and (trainer := trainer_class(parent)) is not None:
        return unknown_key_message(key, trainer)
    if key in parent or (closest := _closest_key(key, parent, prefix)) is None:
        return None
    return f"{error.full_key} is not a key of {prefix or 'the config'}: did you mean {closest}?"


@contextmanager
def hydra_errors_on_one_line() -> Iterator[None]:
    """Hold stderr back until the task starts; if Hydra exits before (a bad override or
    option), print its report as one `error:` line. Tracebacks pass through unchanged."""
    real, held = sys.stderr, io.StringIO()
    sys.stderr = held
    _held_stderr.append((real, held))
    try:
        yield
    except SystemExit as exit:
        report = held.getvalue()
        line = (
            _missing_key_line(exit) or _one_line(report)
            if sys.stderr is held and exit.code and report
            else None
        )
        if line is not None:
            sys.stderr = real
            print(f"error: {line}", file=real)
            raise SystemExit(2) from None
        raise
    finally:
        release_stderr()


def release_stderr() -> None:
    """Give stderr back to the terminal, with whatever was held meanwhile: once the config
    composed (a task or a sweep starts), errors are no longer Hydra's composition errors."""
    if not _held_stderr:
        return
    real, held = _held_stderr.pop()
    if sys.stderr is held:  # not given back already (an error line was printed instead)
        sys.stderr = real
        real.write(held.getvalue())


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (a sweep or a search)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _remove_refused_run_folder() -> None:
    """Remove the folder of a run refused before any work (it holds only config and log)."""
    if not HydraConfig.initialized() or not rank_zero_only.rank == 0:
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    written = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    before_work = {".hydra", f"{HydraConfig.get().job.name}.log", "config_tree.log"}
    if written <= before_work:
        shutil.rmtree(folder)
        for empty in (folder.parent, folder.parent.parent):  # runs/, <task_name>/
            if any(empty.iterdir()):
                break
            empty.rmdir()


def report_user_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn bad user input into one `error: ...` line on stderr and exit code 2, not a traceback.

    The composed `trainer` node is checked first (its keys and their types against Lightning's
    Trainer: src/cli/trainer_args.py), so every entry point refuses a bad value before any work.
    In a multirun the error is logged to the job's log and raised on, so the sweeper records
    this job as failed and goes on with the others."""

    @wraps(task)
    def wrapped(cfg: DictConfig) -> Any:
        release_stderr()  # the config composed: from here on stderr goes out as written
        try:
            check_trainer_config(cfg.get("trainer"))
            return task(cfg)
        except Exception as exc:
            error = user_error_in(exc)
            if error is None:
                raise
            if in_multirun():
                log.error(f"error: {error}")
                raise
            print(f"error: {error}", file=sys.stderr)
            _remove_refused_run_folder()
            sys.exit(2)

    return wrapped
