"""resume=auto: continue the newest unfinished run of the same command, in its own folder.

Hydra names the run folder before the task starts, so the search runs in a resolver of
hydra.run.dir (configs/hydra/default.yaml): the task then runs in the old folder, its log is
appended to, its .hydra/ is kept as it was (`kept_subdir`), and TensorBoard and CSV write on in
the same folders. The task continues from the folder's newest checkpoint (`continue_in_place`,
called first thing in src/train.py). A run is unfinished when its status (status.txt, written
by src/tracking/run_status.py) is interrupted, failed or crashed (running, but its process is
gone), and it can be continued when it has saved a checkpoint.
"""

import logging
import os
import shlex
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from src import PROJECT_ROOT
from src.compat import batches_that_stepped
from src.core.errors import ConfigError
from src.core.runs import RUN_CONFIG_KEY, read_status

log = logging.getLogger(__name__)

# Overrides a resumed run may change: resume itself and how long the run trains. Any other
# difference makes another command, so another run.
MAY_CHANGE = ("resume", "trainer.max_epochs", "trainer.max_time")
# Statuses of a run that did not end, as src/core/runs.py reads them: `crashed` is
# running with its process gone. A run last seen running on another machine (`unknown`) is
# continued only by the same SLURM job, requeued: it may still be running.
UNFINISHED = ("interrupted", "failed", "crashed")

_chosen: dict[tuple[str, ...], str] = {}  # resolver answers: the same folder when re-resolved
_resumed_dirs: set[str] = set()  # folders of old runs this process continues
_notes: list[str] = []  # what the search passed over, logged once logging is set up


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def command_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that make the command: without those a resume may change, `+` dropped."""
    return sorted(str(o).lstrip("+") for o in overrides if _key(str(o)) not in MAY_CHANGE)


def checkpoint_to_resume(run: Path) -> Path | None:
    """The newest of the run's checkpoints/last.ckpt and the hpc_ckpt_<n>.ckpt that Lightning
    saves on SLURM's warning signal, or None."""
    found = [run / "checkpoints" / "last.ckpt", *run.glob("hpc_ckpt_*.ckpt")]
    found = [path for path in found if path.is_file()]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def find_unfinished_run(runs_dir: Path, overrides: Sequence[str]) -> tuple[Path | None, list[str]]:
    """The newest run under runs_dir of the command these overrides make that did not end and
    has a checkpoint, and notes on the runs of the command passed over."""
    wanted = command_overrides(overrides)
    started = {}
    for run in runs_dir.iterdir() if runs_dir.is_dir() else []:
        file = run / ".hydra" / "overrides.yaml"
        if file.is_file():
            started[run] = file.stat().st_mtime
    notes = []
    for run in sorted(started, key=started.__getitem__, reverse=True):
        overrides_file = run / ".hydra" / "overrides.yaml"
        if command_overrides(yaml.safe_load(overrides_file.read_text()) or []) != wanted:
            continue
        status, reason, job = read_status(run)
        requeued = status == "unknown" and job is not None and job == os.environ.get("SLURM_JOB_ID")
        if status not in UNFINISHED and not requeued:
            if status in ("running", "unknown"):
                notes.append(
                    f"{run.name} may still be running ({reason}): not continued; if it is not, "
                    f"continue it with hydra.run.dir={run} resume=auto"
                )
            continue
        if checkpoint_to_resume(run) is None:
            notes.append(f"{run.name} is {status} but saved no checkpoint: not continued")
            continue
        return run, notes
    return None, notes


def resume_folder(runs_dir: str, name: str, resume: Any, overrides: Sequence[str]) -> str:
    """The run folder's name: with resume=auto that of the newest unfinished run of this command
    under runs_dir, else (or if there is none) `name`, a new run's."""
    if resume != "auto":
        return name
    key = (runs_dir, name, *map(str, overrides))
    if key not in _chosen:
        run, notes = find_unfinished_run(Path(runs_dir), [str(o) for o in overrides])
        _notes[:] = notes
        _chosen[key] = run.name if run else name
        if run is not None:
            _resumed_dirs.add(os.path.abspath(run))
    return _chosen[key]


def kept_subdir(output_dir: str | None, subdir: str | None) -> str | None:
    """Where Hydra writes the run's config (.hydra/): nowhere for an old run continued in its
    folder, whose config stays as it was first written (output_dir: None before Hydra set it,
    as in the compose API)."""
    if output_dir is not None and os.path.abspath(output_dir) in _resumed_dirs:
        return None
    return subdir


def resume_command() -> str:
    """The command that continues this run: `python src/train.py <its overrides> resume=auto`."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    script = PROJECT_ROOT / "src" / "train.py"
    if script.is_relative_to(Path.cwd()):
        script = script.relative_to(Path.cwd())
    kept = [str(o) for o in overrides if _key(str(o)) != "resume"]
    return shlex.join(["python", str(script), *kept, "resume=auto"])


def _read_checkpoint(path: Path) -> dict[str, Any]:
    import torch  # here: composing a config does not import torch

    try:  # mapped, not read: a quick look at its config and progress
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ConfigError(
            f"resume=auto cannot read {path} ({type(exc).__name__}): move it aside to continue "
            "from the run's other checkpoint, or leave out resume=auto to start a new run"
        ) from exc


def run_length_keys(scheduler: DictConfig | None) -> list[str]:
    """The scheduler's settings that follow the run's length (a trainer value, or `auto`)."""
    raw = OmegaConf.to_container(scheduler, resolve=False) if scheduler else {}
    return [
        f"scheduler.{key}={value}"
        for key, value in raw.items()
        if isinstance(value, str) and ("trainer." in value or value == "auto")
    ]


def refuse_changed_schedule(
    cfg: DictConfig, checkpoint: dict[str, Any], path: Path, passed: str = "resume=auto"
) -> None:
    """Refuse a resume with another trainer.max_epochs where the schedule follows it: the
    restored schedule would not fit the new length (a cosine would climb again, a one-cycle
    would step past its end). `passed`: what the user gave to resume, for the message."""
    before = (checkpoint.get(RUN_CONFIG_KEY) or {}).get("trainer", {}).get("max_epochs")
    now = cfg.trainer.get("max_epochs")
    keys = run_length_keys(cfg.get("scheduler"))
    if before is None or before == now or not keys:
        return
    raise ConfigError(
        f"{passed} with trainer.max_epochs={now}, but the run started with {before} and its "
        f"schedule follows the run's length ({', '.join(keys)}): resume with "
        f"trainer.max_epochs={before}, or start a new run from its weights with "
        f"model.init_from={path}"
    )


def next_logged_step(checkpoint: dict[str, Any]) -> int | None:
    """The logging step the run continues at from this checkpoint (Lightning's count of batches
    that stepped, plus the one it adds when the save came at a batch's end), or None."""
    try:
        loop = checkpoint["loops"]["fit_loop"]
        step = batches_that_stepped(loop["epoch_loop.state_dict"])
        total = loop["epoch_loop.batch_progress"]["total"]
    except (KeyError, TypeError):
        return None
    return step + (1 if total["completed"] == total["processed"] - 1 else 0)


def _purge_tensorboard_from(cfg: DictConfig, step: int) -> None:
    """TensorBoard hides what an earlier attempt logged from `step` on (after a hard kill, the
    steps since the checkpoint), so the curves continue without doubled points."""
    for entry in (cfg.get("logger") or {}).values():
        if isinstance(entry, DictConfig) and str(entry.get("_target_", "")).endswith(
            "TensorBoardLogger"
        ):
            with open_dict(entry):
                entry.purge_step = step


def continue_in_place(cfg: DictConfig) -> None:
    """resume=auto: set ckpt_path to the newest checkpoint of the run folder hydra.run.dir chose
    (an unfinished run's), or say that a new run starts."""
    from src.cli.one_line_errors import in_multirun  # here: it imports Lightning

    resume = cfg.get("resume")
    if resume is None or resume is False:
        return
    if resume != "auto":
        raise ConfigError(
            f"resume={resume} is not an option: resume=auto continues the newest unfinished run "
            "of this command; leave it out to start a new run, or pass ckpt_path=<a .ckpt>"
        )
    if in_multirun():
        raise ConfigError(
            "resume=auto continues a single run, not the jobs of a multirun (-m): leave it out"
        )
    out = Path(cfg.paths.output_dir)
    for note in _notes:
        log.info(f"resume=auto: {note}")
    _notes.clear()
    path = checkpoint_to_resume(out)
    if path is None:
        log.info(
            f"resume=auto: no unfinished run of this command with a checkpoint in {out.parent}: "
            f"starting a new run in {out}"
        )
        return
    checkpoint = _read_checkpoint(path)
    refuse_changed_schedule(cfg, checkpoint, path)
    if cfg.get("ckpt_path") and Path(cfg.ckpt_path).absolute() != path.absolute():
        log.info(f"resume=auto: continuing from {path}, not ckpt_path={cfg.ckpt_path}")
    with open_dict(cfg):
        cfg.ckpt_path = str(path)
    step = next_logged_step(checkpoint)
    if step is not None:
        _purge_tensorboard_from(cfg, step)
    # Lightning warns of a checkpoint folder that is not empty: here it is the run's own.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    log.info(
        f"resume=auto: continuing {out} from {path.name} (saved in epoch "
        f"{checkpoint.get('epoch', -1) + 1}, at step {checkpoint.get('global_step')})"
    )
