"""Where a run is, for a watcher outside it: tests/fault_injection/harness.py kills runs by it.

Only with $FAULT_INJECTION_MARKER set (nothing otherwise): at each training and validation batch
and each checkpoint save, the file it names gets one line, `phase epoch step batch saves run_dir`
(phase: train, val, val_end, save, test or sanity; epoch counted from 1; step: the global step).
While a file `<marker>.arm` exists each save first waits HOLD_ON_SAVE seconds, so a watcher can
be looking when the checkpoint's temporary file appears.
"""

import os
import time
from pathlib import Path
from typing import Any

import lightning as L

MARKER_ENV = "FAULT_INJECTION_MARKER"
HOLD_ON_SAVE = 0.25
LINE_BYTES = 4096  # each write replaces the whole line in one write, never truncating the file


class PhaseMarker(L.Callback):
    """Write the run's phase, epoch and step to the file $FAULT_INJECTION_MARKER names."""

    def __init__(self) -> None:
        path = os.environ.get(MARKER_ENV)
        self.path = Path(path) if path else None
        self.fd: int | None = None
        self.saves = 0

    def _mark(self, trainer: L.Trainer, phase: str, batch: int = -1) -> None:
        if self.path is None:
            return
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        line = f"{phase} {trainer.current_epoch + 1} {trainer.global_step} {batch} {self.saves} "
        line += f"{trainer.default_root_dir}\n"
        os.pwrite(self.fd, line.encode().ljust(LINE_BYTES), 0)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, i: int) -> None:
        self._mark(trainer, "train", i)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        self._mark(trainer, "train", args[-1])  # the step is done: global_step counts it

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: Any, batch: Any, i: int, *args: Any
    ) -> None:
        self._mark(trainer, "sanity" if trainer.sanity_checking else "val", i)

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._mark(trainer, "sanity" if trainer.sanity_checking else "val_end")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: Any, checkpoint: Any) -> None:
        self.saves += 1
        self._mark(trainer, "save")
        if self.path is not None and Path(f"{self.path}.arm").exists():
            time.sleep(HOLD_ON_SAVE)

    def on_test_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self._mark(trainer, "test")

    def teardown(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
