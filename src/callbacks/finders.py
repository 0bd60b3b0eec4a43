"""Lightning's learning-rate and batch-size finders, run once before training (tune=lr,
tune=batch_size), without shifting the run's random draws."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BatchSizeFinder as LightningBatchSizeFinder
from lightning.pytorch.callbacks import LearningRateFinder as LightningLearningRateFinder
from lightning.pytorch.strategies import ParallelStrategy
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.seed import isolate_rng

from src.callbacks.run_config import record_applied
from src.callbacks.tensorboard import tensorboard_writer
from src.compat import forget_train_loader
from src.core.errors import ConfigError
from src.tracking.figures import save_figure  # also: matplotlib's file-only backend

log = logging.getLogger(__name__)


@contextmanager
def without_trace(trainer: L.Trainer) -> Iterator[None]:
    """Undo what a search leaves behind beyond the weights, optimizer and loops (which Lightning
    restores), so training goes on as if there had been none.

    Random draws: the global generators (Lightning's isolate_rng), the data module's own (the
    batched pipeline's augmentation generator) and the training loader's. A data module's
    generator that existed before is set back to its state; one made during the search is
    dropped, so the data module seeds it anew when training first asks for it. The training
    loader the search leaves behind is dropped too: fit makes it anew, drawing its shuffle from
    the restored generator as it would have without the search. And trainer.ckpt_path, which
    would name the search's deleted temporary checkpoint.
    """
    datamodule = trainer.datamodule
    attributes = vars(datamodule) if datamodule is not None else {}
    before = {
        name: (value, value.get_state())
        for name, value in attributes.items()
        if isinstance(value, torch.Generator)
    }
    with isolate_rng():
        yield
    for name, value in list(attributes.items()):
        if not isinstance(value, torch.Generator):
            continue
        if name in before:
            generator, state = before[name]
            generator.set_state(state)
            setattr(datamodule, name, generator)
        else:
            setattr(datamodule, name, None)
    forget_train_loader(trainer)
    trainer.ckpt_path = None  # searches run on fresh runs only, never on a resume


def record_learning_rate(trainer: L.Trainer, model: L.LightningModule, lr: float) -> None:
    """Put `lr` into the model's optimizer config and the run config (checkpoints and the
    HPARAMS record hold them), and into scheduler settings that held the old lr (one-cycle's
    max_lr, read from optimizer.lr)."""
    optimizer, scheduler = model.hparams.optimizer, model.hparams.get("scheduler") or {}
    old = optimizer.get("lr")
    optimizer["lr"] = lr
    applied = {"optimizer.lr": lr}
    for key, value in scheduler.items():
        if "lr" in key and old is not None and value == old:
            scheduler[key] = lr
            applied[f"scheduler.{key}"] = lr
    record_applied(trainer, applied)


def apply_learning_rate(trainer: L.Trainer, model: L.LightningModule, lr: float) -> None:
    """Make `lr` the run's learning rate: recorded in the model's settings, and in a newly built
    optimizer and scheduler (as fresh as the ones the search started from)."""
    record_learning_rate(trainer, model, lr)
    trainer.strategy.setup_optimizers(trainer)


class LearningRateFinder(LightningLearningRateFinder):
    """Lightning's learning-rate range test before training: it trains `num_training_steps`
    batches with the lr rising from `min_lr` to `max_lr`, suggests the lr where the loss falls
    fastest, then restores the weights, optimizer and loops. The plot goes to `plot_path` and to
    TensorBoard (tune/lr_finder); with `apply` the run trains with the suggestion.

    A resumed run (ckpt_path) does not search again: its optimizer state holds the lr it had.
    """

    def __init__(
        self,
        min_lr: float = 1e-6,
        max_lr: float = 1.0,
        num_training_steps: int = 100,
        mode: str = "exponential",
        early_stop_threshold: float | None = 4.0,
        apply: bool = True,
        plot_path: str | None = None,
    ) -> None:
        if not 0 < min_lr < max_lr:
            raise ConfigError(f"tune.min_lr={min_lr} and tune.max_lr={max_lr}: need 0 < min < max")
        if mode not in self.SUPPORTED_MODES:
            raise ConfigError(f"tune.mode={mode!r}: use exponential or linear")
        super().__init__(
            min_lr=min_lr,
            max_lr=max_lr,
            num_training_steps=num_training_steps,
            mode=mode,
            early_stop_threshold=early_stop_threshold,
            update_attr=False,  # the lr lives in hparams.optimizer: apply_learning_rate sets it
        )
        self.apply = apply
        self.plot_path = Path(plot_path) if plot_path else None
        self.suggestion: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "applied": self.apply}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.suggestion = state_dict.get("suggestion")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path:
            if self.suggestion is not None and self.apply:  # the checkpoint's search
                record_learning_rate(trainer, pl_module, self.suggestion)
            log.info("Learning-rate finder skipped: a resumed run keeps its optimizer's lr")
            return
        with without_trace(trainer):
            self.lr_find(trainer, pl_module)
        if self.optimal_lr is None:  # fast_dev_run: Lightning skips the search
            return
        self.suggestion = self.optimal_lr.suggestion()
        self._plot(trainer)
        if self.suggestion is None:
            log.warning(
                "Learning-rate finder: too few steps for a suggestion (raise "
                "tune.num_training_steps); training with the configured lr"
            )
            return
        if self.apply:
            apply_learning_rate(trainer, pl_module, self.suggestion)
        what = "applied" if self.apply else "not applied (tune.apply=false)"
        log.info(f"Learning-rate finder: suggested lr {self.suggestion:.4g}, {what}")

    @rank_zero_only
    def _plot(self, trainer: L.Trainer) -> None:
        """The loss against the lr, the suggestion marked: to plot_path and TensorBoard."""
        assert self.optimal_lr is not None
        figure = self.optimal_lr.plot(suggest=True)
        title = f"suggested lr {self.suggestion:.3g}" if self.suggestion else "no suggestion"
        figure.axes[0].set_title(f"learning-rate finder: {title}")
        if self.plot_path is not None:
            save_figure(figure, self.plot_path, dpi=100)
        if (writer := tensorboard_writer(trainer)) is not None:
            writer.add_figure("tune/lr_finder", figure, global_step=0)  # closes the figure
            writer.flush()


class BatchSizeFinder(LightningBatchSizeFinder):
    """Lightning's batch-size finder before training: from `init_val`, it doubles data.batch_size
    (mode power), or also bisects after the first failure (binsearch), running
    `steps_per_trial` training steps each, until a batch no longer fits in memory, `max_trials`
    sizes were tried, the batch covers the training set or reaches `max_val`. The run then
    trains (and tests) with the largest batch that worked. Without a memory limit to hit (the
    CPU, mostly), max_trials or max_val decide. One process only (not under DDP). A resumed run
    does not search again: it trains with the size in its checkpoint.
    """

    def __init__(
        self,
        mode: str = "power",
        steps_per_trial: int = 3,
        init_val: int = 2,
        max_trials: int = 25,
        margin: float = 0.05,
        max_val: int = 8192,
    ) -> None:
        if mode not in self.SUPPORTED_MODES:
            raise ConfigError(f"tune.mode={mode!r}: use power or binsearch")
        if not 0 <= margin < 1:
            raise ConfigError(f"tune.margin={margin} must lie in [0, 1)")
        super().__init__(mode, steps_per_trial, init_val, max_trials, "batch_size", margin, max_val)
        self.found: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"batch_size": self.found}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.found = state_dict.get("batch_size")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if isinstance(trainer.strategy, ParallelStrategy):
            raise ConfigError(
                "tune=batch_size searches in one process: run it without trainer=ddp, then "
                "train under DDP with data.batch_size set to what it found"
            )
        super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if trainer.ckpt_path:
            if self.found is not None:  # the batch size the interrupted run trained with
                datamodule.batch_size = self.found
                record_applied(trainer, {"data.batch_size": self.found})
            log.info(f"Batch-size finder skipped on resume: batch size {datamodule.batch_size}")
            return
        with without_trace(trainer):
            self.scale_batch_size(trainer, pl_module)
        if self.optimal_batch_size is None:  # fast_dev_run: Lightning skips the search
            return
        self.found = datamodule.batch_size
        record_applied(trainer, {"data.batch_size": self.found})
        log.info(f"Batch-size finder: training with batch size {self.found}")

    # only before training: testing and predicting keep the batch size training found
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass
