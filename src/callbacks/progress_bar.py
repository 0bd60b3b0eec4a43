"""A rich progress bar that costs the training loop next to nothing; elsewhere a line an epoch."""

import logging
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from rich.console import Console

log = logging.getLogger(__name__)


class LeanProgressBar(RichProgressBar):
    """Lightning's RichProgressBar, redrawn at most every `min_interval` seconds instead of after
    every batch (each redraw reads the logged metrics back from the device).

    Where the output is not a terminal (a log file, a batch job) it draws nothing and logs one line
    per epoch with the progress-bar metrics instead.
    """

    def __init__(self, min_interval: float = 0.25, refresh_rate: int = 4, **kwargs: Any) -> None:
        # refresh_rate: redraws a second of rich's own refresh thread (Lightning's default, 100,
        # takes the interpreter from the training loop 100 times a second)
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.min_interval = min_interval
        self._last_draw = 0.0
        self.lines_only = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        console = Console(**self._console_kwargs)
        if not (console.is_terminal or console.is_jupyter):
            self.disable()
            self.lines_only = True
        super().setup(trainer, pl_module, stage)

    def _due(self, batch_idx: int, total: str) -> bool:
        """Whether to draw after this batch: the last of its loader, or enough time has passed."""
        if self.is_disabled:
            return False
        now = time.monotonic()
        if batch_idx + 1 >= getattr(self, total) or now - self._last_draw >= self.min_interval:
            self._last_draw = now
            return True
        return False

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._due(batch_idx, "total_train_batches"):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due(batch_idx, "total_val_batches_current_dataloader"):
            super().on_validation_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due(batch_idx, "total_test_batches_current_dataloader"):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due(batch_idx, "total_predict_batches_current_dataloader"):
            super().on_predict_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )

    # An epoch's numbers are all final once the next epoch starts, or training ends.
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        if trainer.current_epoch > 0:
            self._log_epoch(trainer, pl_module, trainer.current_epoch - 1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._log_epoch(trainer, pl_module, trainer.current_epoch - 1)

    def _log_epoch(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        if not self.lines_only or epoch < 0:
            return
        shown = self.get_metrics(trainer, pl_module)
        metrics = ", ".join(
            f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
            for name, value in shown.items()
            if name != "v_num"
        )
        log.info(f"epoch {epoch}: {metrics}")
