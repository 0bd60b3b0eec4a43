"""Store the composed run config in every checkpoint, so eval and predict need nothing else."""

from collections.abc import Mapping
from typing import Any

import lightning as L

from src.models.checkpoint import RUN_CONFIG_KEY


class RunConfigCheckpoint(L.Callback):
    """Put `config` (plain, resolved values) into each checkpoint under `run_config`."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[RUN_CONFIG_KEY] = self.config
