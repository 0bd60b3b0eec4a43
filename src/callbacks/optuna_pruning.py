"""Stop an Optuna trial early when the study's pruner finds it hopeless."""

import lightning as L

from src.sweepers.optuna_search import PRUNED, trial_of_this_job


class OptunaPruning(L.Callback):
    """After each validation, report `monitor` to this job's trial; when the pruner says so,
    stop training like early stopping does and mark the trial pruned.

    Does nothing outside a `hparams_search=optuna` multirun.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.trial = None
        self.pruned = False
        self.reason = ""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self.trial = trial_of_this_job()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is not None and value is not None:
            epoch = trainer.current_epoch
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.reason = f"after {epoch + 1} epochs, {self.monitor}={float(value):.4f}"
                self.trial.set_user_attr(PRUNED, self.reason)
        # every DDP process stops together, on rank zero's word
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned = True
            trainer.should_stop = True
