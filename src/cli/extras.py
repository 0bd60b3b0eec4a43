"""Run-wide utilities around the task: warnings, the printed config, DDP logs, the process group."""

import logging
import warnings
from pathlib import Path

import rich
import rich.syntax
import rich.tree
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from src.core.files import write_atomically

# The groups printed first, in this order; the rest follow as composed.
PRINT_FIRST = ("data", "model", "optimizer", "scheduler", "callbacks", "logger", "trainer", "paths")


def apply_extras(cfg: DictConfig) -> None:
    """Optional run-wide utilities from the `extras` group (never prompts: CI has no terminal)."""
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("print_config"):
        print_config_tree(cfg, save_to=Path(cfg.paths.output_dir) / "config_tree.log")


@rank_zero_only
def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """Print the composed config as a rich tree and, if given, save the same text to a file."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    order = [k for k in PRINT_FIRST if k in cfg] + [k for k in cfg if k not in PRINT_FIRST]
    for key in order:
        branch = tree.add(key, style="bold", guide_style="dim")
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:

        def write(path: Path) -> None:
            with open(path, "w") as file:
                rich.print(tree, file=file)

        write_atomically(save_to, write)


def keep_file_logs_on_rank_zero() -> None:
    """Under DDP, only rank zero writes the run's log file (the others' handlers never open it)."""
    if rank_zero_only.rank == 0:
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)


def leave_process_group() -> None:
    """After a finished DDP run: wait for every process, then close the process group. Lightning
    closes it at exit only for NCCL; a gloo group left open can abort a process as the interpreter
    exits ("terminate called without an active exception", exit -6), failing a finished run."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
