"""Refuse, before any work, a multirun whose jobs would make Lightning start DDP processes.

Lightning's DDP launcher starts each extra process by running the script again with the same
command line (`-m` and the sweep included), so on one machine every process would run the whole
sweep, or its own Optuna search, again. Under the SLURM launcher each job's processes are SLURM
tasks that Lightning only joins, so that is allowed.
"""

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig

from src.sweepers.outcome import SweepSetupError

# strategies whose launcher runs the script again per process (Lightning's subprocess launcher)
SCRIPT_LAUNCHED = ("ddp", "fsdp", "deepspeed", "model_parallel", "modelparallel")
# start methods that fork or spawn a function instead, which never reaches the sweeper again
IN_PROCESS_STARTS = ("spawn", "fork", "notebook")
SLURM_LAUNCHER = "SlurmLauncher"  # hydra-submitit-launcher's class (hydra/launcher=slurm)


def _processes_per_node(devices: Any) -> int | None:
    """How many processes `trainer.devices` asks for on each node; None for all the machine has."""
    if isinstance(devices, list | tuple | ListConfig):
        return len(devices)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        return None
    if "," in text:  # "0,1": these GPUs
        return len([d for d in text.split(",") if d.strip()])
    return int(text) if text.isdigit() else None


def _strategy_name(strategy: Any) -> tuple[str, str]:
    """The strategy's name in lower case and its start method, from a name or a _target_ node."""
    if isinstance(strategy, DictConfig):
        name = str(strategy.get("_target_", "")).rsplit(".", 1)[-1].lower()
        return name, str(strategy.get("start_method", "popen"))
    return str(strategy).lower(), ""


def lightning_starts_processes(trainer: DictConfig) -> bool:
    """Whether a Trainer built from `trainer` would start its DDP processes by running the
    script again (several processes per node, or several nodes, on a script-launched strategy;
    `strategy: auto` picks DDP for several devices)."""
    name, start = _strategy_name(trainer.get("strategy", "auto"))
    processes = _processes_per_node(trainer.get("devices", "auto"))
    nodes = int(trainer.get("num_nodes", 1) or 1)
    if name == "auto":
        return (processes or 1) > 1 or nodes > 1
    if not any(kind in name for kind in SCRIPT_LAUNCHED):
        return False
    if any(method in name or method in start for method in IN_PROCESS_STARTS):
        return False
    return processes is None or processes > 1 or nodes > 1


def refuse_ddp_jobs(config: DictConfig, jobs: Iterable[DictConfig]) -> None:
    """Raise SweepSetupError when a job of this multirun would have Lightning start its DDP
    processes itself (unless the jobs run under the SLURM launcher)."""
    if str(config.hydra.launcher.get("_target_", "")).endswith(SLURM_LAUNCHER):
        return
    for job in jobs:
        trainer = job.get("trainer")
        if trainer is not None and lightning_starts_processes(trainer):
            raise SweepSetupError(
                "a multirun cannot run jobs whose DDP processes Lightning starts "
                f"(trainer.strategy={trainer.get('strategy')}, "
                f"trainer.devices={trainer.get('devices')}): each process would run the whole "
                "sweep again; run each job as its own command, or submit the sweep with "
                "hydra/launcher=slurm (one SLURM task per device)"
            )
