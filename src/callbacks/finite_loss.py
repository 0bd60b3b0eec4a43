"""Stop at once when training diverges, keeping the last good checkpoint."""

from pathlib import Path
from typing import Any

import lightning as L
import torch

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
    """Stop training at the first step whose loss is NaN or infinite, before its backward pass
    reaches the weights, and refuse to save weights that are not finite, so last.ckpt stays the
    last good state. The error is one line: where it happened, that checkpoint, and what to try
    (a lower lr, gradient clipping, anomaly detection). With trainer.detect_anomaly=true the loss
    is left to autograd, whose error names the operation that made the NaN.

    The check reads the loss on the host: one wait for the device per step.
    """

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if torch.is_anomaly_enabled():
            return  # trainer.detect_anomaly=true: autograd names the operation in the backward
        if not bool(torch.isfinite(loss).all()):
            raise NonFiniteLoss(self._message(trainer, f"the training loss became {loss.item()}"))

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        for name, value in pl_module.named_parameters():  # (metric buffers may hold inf)
            if not bool(torch.isfinite(value).all()):
                raise NonFiniteLoss(
                    self._message(trainer, f"the weights became non-finite ({name})")
                )

    @staticmethod
    def _message(trainer: L.Trainer, what: str) -> str:
        last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
        path = Path(last.format_checkpoint_name({})) if last and last.dirpath else None
        if path is not None and path.is_file():
            good = f"the last good checkpoint is {path}{_saved_at(path)}"
        else:
            good = "no checkpoint was saved before it"
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        lower = f" (optimizer.lr={lr:g} now)" if lr is not None else ""
        return (
            f"{what} in epoch {trainer.current_epoch + 1} after {trainer.global_step} steps; "
            f"{good}: lower the learning rate{lower}, clip gradients with "
            "trainer.gradient_clip_val=1.0, or find the operation that made it with "
            "trainer.detect_anomaly=true"
        )
