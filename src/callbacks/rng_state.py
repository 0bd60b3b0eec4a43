"""Keep the random generators' states in checkpoints so a resumed run continues exactly."""

import logging
import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


def this_process() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class RNGStateCheckpoint(L.Callback):
    """Save the torch, CUDA, numpy and Python RNG states with each checkpoint; restore on resume.

    Lightning restores the model, optimizer, scheduler and loops but not these states, so without
    them a resumed run shuffles and augments differently from an uninterrupted one. Under DDP the
    states of every process are gathered (Lightning asks every process for its callbacks' states
    when saving, then writes rank zero's) and each process restores its own; a run resumed on
    another number of processes, or on fewer GPUs, restores what matches and says so once. All
    values are tensors or plain Python, so the checkpoint still loads with
    torch.load(weights_only=True).
    """

    def state_dict(self) -> dict[str, Any]:
        state = self._own_state()
        if not (dist.is_available() and dist.is_initialized()):
            return {"ranks": [state]}
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, state)
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict.get("ranks", [state_dict])  # one flat state: saved before DDP's
        rank, world_size = this_process()
        if len(states) != world_size and rank == 0:
            log.warning(
                f"the checkpoint holds the random-generator states of {len(states)} processes, "
                f"this run has {world_size}: restored those of the first "
                f"{min(len(states), world_size)}; the random draws differ from an uninterrupted run"
            )
        if rank < len(states):
            self._restore(states[rank])

    @staticmethod
    def _own_state() -> dict[str, Any]:
        """This process's torch, numpy, Python and CUDA generator states."""
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @classmethod
    def _restore(cls, state: dict[str, Any]) -> None:
        """Set this process's generators to `state`, as _own_state made it."""
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        cls._restore_cuda(state.get("cuda", []))

    @staticmethod
    def _restore_cuda(states: list[torch.Tensor]) -> None:
        """GPU i gets the state saved for GPU i, for as many GPUs as this machine has (a run
        saved on 8 GPUs may resume on 1); the states left over are named once, on rank zero."""
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        for device, state in enumerate(states[:count]):
            torch.cuda.set_rng_state(state, device)
        if len(states) > count and rank_zero_only.rank == 0:
            log.warning(
                f"the checkpoint holds the random-generator states of {len(states)} GPUs, this "
                f"machine has {count}: restored {count}; the random draws on the GPUs differ "
                "from an uninterrupted run"
            )
