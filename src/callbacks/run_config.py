"""Store the composed run config in every checkpoint, so eval and predict need nothing else, and
the provenance of the code that trained it."""

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L

from src.core.runs import RUN_CONFIG_KEY
from src.tracking.hparams import APPLIED
from src.tracking.provenance import PROVENANCE_KEY


class RunConfigCheckpoint(L.Callback):
    """Put `config` (plain, resolved values) into each checkpoint under `run_config`, with the
    values a finder applied before training (`apply`), and `provenance` (the code that ran, set
    as the run starts) under `provenance`; `on_train_start` receives the config as training
    starts, once the applied values are in."""

    def __init__(
        self,
        config: Mapping[str, Any],
        on_train_start: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = dict(config)
        self.settled = on_train_start
        self.provenance: dict[str, Any] = {}

    def apply(self, values: Mapping[str, Any]) -> None:
        """Set each dotted key (`optimizer.lr`) to the value applied, and note it under
        tune.applied."""
        for key, value in values.items():
            *parents, name = key.split(".")
            node = self.config
            for parent in parents:
                node = node.setdefault(parent, {})
            node[name] = value
        section, name = APPLIED.split(".")
        self.config.setdefault(section, {}).setdefault(name, {}).update(values)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.settled is not None:
            self.settled(self.config)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[RUN_CONFIG_KEY] = self.config
        checkpoint[PROVENANCE_KEY] = self.provenance


def record_applied(trainer: L.Trainer, values: Mapping[str, Any]) -> None:
    """Put what a callback applied before training into the run config the checkpoints hold."""
    for callback in trainer.callbacks:
        if isinstance(callback, RunConfigCheckpoint):
            callback.apply(values)
