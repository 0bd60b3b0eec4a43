"""Keep the random generators' states in checkpoints so a resumed run continues exactly."""

import logging
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)


class RNGStateCheckpoint(L.Callback):
    """Save the torch, CUDA, numpy and Python RNG states with each checkpoint; restore on resume.

    Lightning restores the model, optimizer, scheduler and loops but not these states, so without
    them a resumed run shuffles and augments differently from an uninterrupted one. Under DDP the
    states of rank zero are saved; a machine with fewer GPUs than the one that saved them restores
    those of the GPUs it has and says so. All values are tensors or plain Python, so the
    checkpoint still loads with torch.load(weights_only=True).
    """

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        self._restore_cuda(state_dict.get("cuda", []))

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
