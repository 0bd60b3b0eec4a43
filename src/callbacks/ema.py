"""An exponential moving average (EMA) of the weights, for validation, checkpoints and testing."""

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from src.compat import foreach_copy_, foreach_lerp_
from src.core.errors import ConfigError


def ema_update(decay: float) -> Callable[[Sequence[Tensor], Sequence[Tensor], Any], None]:
    """AveragedModel's multi-tensor update: average <- lerp(average, current, 1 - decay).

    A lerp leaves a constant (a fixed buffer such as pos_weight, frozen layers) exactly as it is,
    where torch's per-tensor decay * a + (1 - decay) * a may move it by a rounding step. Counters
    (BatchNorm's num_batches_tracked) have no meaningful average: they follow the model.
    """

    @torch.no_grad()
    def update(averaged: Sequence[Tensor], current: Sequence[Tensor], _: Any) -> None:
        if torch.is_floating_point(averaged[0]):
            foreach_lerp_(list(averaged), list(current), 1 - decay)
        else:
            foreach_copy_(list(averaged), list(current))

    return update


class EMA(EMAWeightAveraging):
    """Lightning's EMAWeightAveraging with an exact update, and checkpoints whose `state_dict`
    holds the averaged weights next to the model's own metric states.

    Training steps the raw weights; after every `update_every_n_steps`-th optimizer step (from
    `update_starting_at_step` on) the average moves towards them by `1 - decay`. Validation runs
    on the average (swapped in and back), best.ckpt and last.ckpt hold it in `state_dict` (the raw
    weights in `current_model_state`, for resuming), and at the end of training the average is
    copied into the model, so testing, eval and predict use it. With `use_buffers` the BatchNorm
    running statistics are averaged the same way, so they match the averaged weights.

    Three changes to Lightning's callback: the update never waits for the device (torch's
    AveragedModel.update_parameters reads its update count back from it twice a step); testing a
    checkpoint after training (train.py tests best.ckpt) keeps its averaged `state_dict` instead
    of loading the raw weights; and metric states the model keeps in its state_dict (the
    val/*_best values), which are not weights, are saved from the model, not from the average's
    stale copy.
    """

    def __init__(
        self,
        decay: float = 0.99,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        use_buffers: bool = True,
    ) -> None:
        if not 0 <= decay < 1:
            raise ConfigError(f"callbacks.ema.decay must lie in [0, 1), got {decay}")
        if not (isinstance(update_every_n_steps, int) and update_every_n_steps >= 1):
            raise ConfigError(
                "callbacks.ema.update_every_n_steps must be a positive integer, "
                f"got {update_every_n_steps!r}"
            )
        super().__init__(
            use_buffers=use_buffers,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
        )
        # AveragedModel takes avg_fn or multi_avg_fn: the exact multi-tensor update, not Lightning's
        self._kwargs = {"multi_avg_fn": ema_update(decay)}
        self.decay = decay

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=step_idx):
            self._update_average(pl_module, first=self._latest_update_step == 0)
            self._latest_update_step = trainer.global_step

    @torch.no_grad()
    def _update_average(self, pl_module: L.LightningModule, first: bool) -> None:
        """AveragedModel.update_parameters, told by the host whether this is the first update
        (which copies the weights) instead of reading its count from the device."""
        average = self._average_model.module
        ours, theirs = list(average.parameters()), list(pl_module.parameters())
        if self._use_buffers:
            ours, theirs = ours + list(average.buffers()), theirs + list(pl_module.buffers())
        else:  # the buffers follow the model
            foreach_copy_(list(average.buffers()), list(pl_module.buffers()))
        if first:
            foreach_copy_(ours, theirs)
        else:
            by_kind: dict[bool, list[tuple[Tensor, Tensor]]] = {}  # floats and counters
            for pair in zip(ours, theirs, strict=True):
                by_kind.setdefault(pair[0].is_floating_point(), []).append(pair)
            for pairs in by_kind.values():
                averaged, current = zip(*pairs, strict=True)
                ema_update(self.decay)(averaged, current, None)
        self._average_model.n_averaged += 1  # kept in checkpoints, as AveragedModel keeps it

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Lightning's callback would load the raw weights (current_model_state) into the model
        # for a test after training too: only a resumed fit needs them
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if "current_model_state" not in checkpoint:
            return
        averaged = {name for name, _ in pl_module.named_parameters()}
        averaged |= {name for name, _ in pl_module.named_buffers()}
        state = checkpoint["state_dict"]
        for name, value in checkpoint["current_model_state"].items():
            if name not in averaged:
                state[name] = value
