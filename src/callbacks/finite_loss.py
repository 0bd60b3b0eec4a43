"""Stop at once when training diverges, keeping the last good checkpoint."""

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer

from src.callbacks.last_checkpoint import LastCheckpoint
from src.core.errors import ConfigError


class NonFiniteLoss(ConfigError):
    """Training diverged: where, which checkpoint is still good, and what to try instead."""


def _saved_at(path: Path) -> str:
    try:  # mapped, not read: only its progress counters
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return f" (saved in epoch {checkpoint['epoch'] + 1} at step {checkpoint['global_step']})"
    except Exception:  # noqa: BLE001  (a description only: the path says enough)
        return ""


class StopOnNonFiniteLoss(L.Callback):
    """Stop training once a step's loss is NaN or infinite, and never save weights that are not
    finite, so last.ckpt stays the last good state. The error is one line: where the loss first
    went wrong, that checkpoint, and what to try (a lower lr, gradient clipping, anomaly
    detection). With trainer.detect_anomaly=true the loss is left to autograd, whose error names
    the operation that made the NaN.

    The step never waits for the device: each loss is checked there, a non-finite one is noted
    (with its step and value) and its gradients are zeroed before the optimizer step, so the
    weights stay finite. The host reads the note before every checkpoint is written (after
    validation, each epoch, every n steps, on a stop signal), before each validation and at the
    end of each epoch, and stops training there.
    """

    def __init__(self) -> None:
        self._bad: Tensor | None = None  # any non-finite loss since training started
        self._bad_step: Tensor | None = None  # the first one's global step ...
        self._bad_value: Tensor | None = None  # ... and its value
        self._step_bad: Tensor | None = None  # in the optimizer step being prepared

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._bad = self._bad_step = self._bad_value = self._step_bad = None

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        if torch.is_anomaly_enabled():
            return  # trainer.detect_anomaly=true: autograd names the operation in the backward
        loss = loss.detach()
        bad = ~torch.isfinite(loss).all()
        if self._bad is None:
            self._bad = torch.zeros_like(bad)
            self._bad_step = torch.zeros((), dtype=torch.long, device=loss.device)
            self._bad_value = torch.zeros((), dtype=torch.float32, device=loss.device)
        first = bad & ~self._bad
        self._bad_step = torch.where(first, trainer.global_step, self._bad_step)
        self._bad_value = torch.where(first, loss.float(), self._bad_value)
        self._bad = self._bad | bad
        self._step_bad = bad if self._step_bad is None else self._step_bad | bad

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer
    ) -> None:
        if self._step_bad is None:
            return
        for group in optimizer.param_groups:  # a step of non-finite loss moves no weight
            for param in group["params"]:
                if param.grad is not None:
                    param.grad.masked_fill_(self._step_bad, 0.0)
        self._step_bad = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_diverged(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_diverged(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_diverged(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._stop_if_diverged(trainer)
        named = list(pl_module.named_parameters())  # (metric buffers may hold inf)
        finite = torch.stack([torch.isfinite(value).all() for _, value in named])
        if named and not bool(finite.all()):  # one wait for the device
            name = named[int(finite.long().argmin())][0]
            raise NonFiniteLoss(self._message(trainer, f"the weights became non-finite ({name})"))

    def _stop_if_diverged(self, trainer: L.Trainer) -> None:
        """Raise NonFiniteLoss if a training loss was not finite (a wait for the device). Under
        DDP every process reads whether any process saw one, so all of them stop together (the
        others' weights took the bad step's gradients through the all-reduce)."""
        if self._bad is None:
            return
        bad = trainer.strategy.reduce(self._bad.float(), reduce_op="max")
        if not bool(bad):
            return
        if not bool(self._bad):  # another process's loss
            raise NonFiniteLoss(self._message(trainer, "a training loss became non-finite"))
        what = f"the training loss became {self._bad_value.item()}"
        raise NonFiniteLoss(self._message(trainer, what, int(self._bad_step)))

    @staticmethod
    def _message(trainer: L.Trainer, what: str, step: int | None = None) -> str:
        """The error line; `step`: the global step it happened at (default: now)."""
        last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
        path = Path(last.format_checkpoint_name({})) if last and last.dirpath else None
        if path is not None and path.is_file():
            good = f"the last good checkpoint is {path}{_saved_at(path)}"
        else:
            good = "no checkpoint was saved before it"
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        lower = f" (optimizer.lr={lr:g} now)" if lr is not None else ""
        return (
            f"{what} in epoch {trainer.current_epoch + 1} after "
            f"{trainer.global_step if step is None else step} steps; "
            f"{good}: lower the learning rate{lower}, clip gradients with "
            "trainer.gradient_clip_val=1.0, or find the operation that made it with "
            "trainer.detect_anomaly=true"
        )
