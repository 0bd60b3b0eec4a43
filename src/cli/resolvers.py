"""The OmegaConf resolvers the configs use, registered when this module is imported.

Each use in configs/ carries a comment naming this file. The entry points import it; so must
anything else that composes and resolves the configs (tests, scripts).
"""

import os
import re
import sys

from omegaconf import OmegaConf

from src import PROJECT_ROOT
from src.cli.resume import kept_subdir, resume_folder
from src.core.hparams import is_hyperparameter
from src.core.metrics import default_monitor, metric_mode

JOB_DIR_LENGTH = 120  # the most characters of a sweep job's folder name


def _short_value(item: str) -> str:
    """`key=value` with a long float value cut to 4 significant digits (a label, not the value)."""
    key, _, value = item.partition("=")
    try:
        number = float(value)
    except ValueError:
        return item
    return f"{key}={number:.4g}" if len(value) > 6 and ("." in value or "e" in value) else item


def sweep_job_dir(number: int, overrides: list[str]) -> str:
    """A sweep job's folder name: its number and the overrides that set hyperparameters, sorted,
    e.g. `1_optimizer=sgd,optimizer.lr=0.1`, so TensorBoard's run names say what each run
    changed (at most JOB_DIR_LENGTH characters, cut at an override)."""
    name = str(number)
    kept = sorted(o for o in overrides if not o.startswith("~") and is_hyperparameter(o))
    for item in kept:
        part = _short_value(item.lstrip("+")).replace("/", "-")
        if len(name) + 1 + len(part) > JOB_DIR_LENGTH:
            break
        name += ("_" if name == str(number) else ",") + part
    return name


def _slurm_runs_several_tasks() -> bool:
    """Whether srun started this process as one of several tasks (what Lightning's
    SLURMEnvironment detects; an interactive `bash` job is left to Lightning's own launcher)."""
    interactive = os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and not interactive


def run_folder(timestamp: str) -> str:
    """A run's folder name: `timestamp`, or, when a launcher started every process of the run
    itself (each resolving this on its own node, at its own time), a name from the launcher's
    id that all of them share: `torchrun-<rdzv id>` or `slurm-<job id>`."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id == "none" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Hydra fails to format an exception raised while it resolves hydra.run.dir, so this
        # reports like a composition error: the message on stderr and an exit before the task
        # (src/cli/one_line_errors.py turns it into one `error:` line).
        sys.stderr.write(
            "torchrun was started without --rdzv-id, so its processes cannot agree on one run "
            "folder: pass the same --rdzv-id=<a new name for this run> to torchrun on every node\n"
        )
        raise SystemExit(2)
    if run_id is not None and run_id != "none":
        return "torchrun-" + re.sub(r"[^\w.-]", "-", run_id)
    if run_id is None and _slurm_runs_several_tasks() and "SLURM_JOB_ID" in os.environ:
        # the job's id, which a requeued job keeps: Lightning resumes from the hpc_ckpt_*.ckpt
        # it saved in this folder before the requeue
        return f"slurm-{os.environ['SLURM_JOB_ID']}"
    return timestamp


def rank_zero_subdir(subdir: str) -> str | None:
    """`subdir` on the process of global rank zero, None (nothing written) on the others of a
    run whose processes a launcher started (torchrun sets RANK, srun SLURM_PROCID)."""
    rank = os.environ.get("RANK") or (
        os.environ.get("SLURM_PROCID") if _slurm_runs_several_tasks() else None
    )
    return subdir if int(rank or 0) == 0 else None


def gpu_mixed_precision() -> str:
    """bf16-mixed where the GPU computes in bfloat16 (Ampere and later), else 16-mixed."""
    import torch  # here, so that composing a config does not import torch

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16-mixed" if bf16 else "16-mixed"


def register_resolvers() -> None:
    """Register every resolver (again, if already there: tests import this module repeatedly)."""
    resolvers = {
        # configs/paths/default.yaml: `root_dir: ${project_root:}`
        "project_root": lambda: str(PROJECT_ROOT),
        # configs/train.yaml: `monitor: ${default_monitor:${data.task}}`
        "default_monitor": default_monitor,
        # callbacks, scheduler/plateau.yaml, hydra/sweeper/optuna.yaml: max or min for a metric
        "metric_mode": metric_mode,
        # configs/hydra/default.yaml: `subdir: ${sweep_job_dir:${hydra.job.num},...}`
        "sweep_job_dir": sweep_job_dir,
        # configs/hydra/default.yaml: `dir: .../runs/${run_folder:${now:...}}`, one folder for
        # all processes of a torchrun or srun launch
        "run_folder": run_folder,
        # configs/hydra/default.yaml: `output_subdir: ${rank_zero_subdir:.hydra}`
        "rank_zero_subdir": rank_zero_subdir,
        # configs/hydra/default.yaml: resume=auto continues an old run in its folder, keeping its
        # .hydra/ (src/cli/resume.py)
        "resume_folder": resume_folder,
        "kept_subdir": kept_subdir,
        # configs/trainer/gpu.yaml and ddp.yaml: `precision: ${gpu_mixed_precision:}`
        "gpu_mixed_precision": gpu_mixed_precision,
    }
    for name, resolver in resolvers.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


register_resolvers()
