"""Stop an Optuna trial early when the study's pruner finds it hopeless."""

import lightning as L
from optuna.study import StudyDirection

from src.core.errors import ConfigError
from src.core.metrics import metric_mode
from src.sweepers.optuna_trial import PRUNED_ATTR, trial_of_this_job


class OptunaPruning(L.Callback):
    """After each validation, report `metric` (the search's optimized_metric) to this job's
    trial; when the pruner says so, stop training like early stopping does and mark the trial
    pruned.

    Does nothing outside a `hparams_search=optuna` multirun.
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.trial = None
        self.pruned = False
        self.reason = ""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        self.trial = trial_of_this_job()
        if self.trial is None:
            return
        if not self.metric.startswith("val/"):
            raise ConfigError(
                f"optimized_metric={self.metric}: a search prunes on a metric logged after each "
                "validation: name a val/ metric, or turn pruning off with ~callbacks.optuna_pruning"
            )
        maximize = metric_mode(self.metric) == "max"
        if (self.trial.study.direction == StudyDirection.MAXIMIZE) != maximize:
            raise ConfigError(
                f"the study is to {self.trial.study.direction.name.lower()} but "
                f"{self.metric} improves the other way: drop the hydra.sweeper.direction override"
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        value = trainer.callback_metrics.get(self.metric)
        if self.trial is not None and value is not None:
            epoch = trainer.current_epoch
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.reason = f"after {epoch + 1} epochs, {self.metric}={float(value):.4f}"
                self.trial.set_user_attr(PRUNED_ATTR, self.reason)
        # every DDP process stops together, on rank zero's word
        if trainer.strategy.broadcast(prune, src=0):
            self.pruned = True
            trainer.should_stop = True
