"""checkpoints/last.ckpt: what a resume continues from, saved often enough to lose little."""

from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from src.core.errors import ConfigError

INTERVAL_EXAMPLE = 'callbacks.last_checkpoint.train_time_interval="00:00:30:00" (30 minutes)'


def parse_interval(value: str | dict | int | float | timedelta | None) -> timedelta | None:
    """A time interval as trainer.max_time takes it: "DD:HH:MM:SS", {minutes: 30} or seconds."""
    if value is None or isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, str):
            days, hours, minutes, seconds = (int(part) for part in value.strip().split(":"))
            interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        elif isinstance(value, dict | DictConfig):
            interval = timedelta(**dict(value))
        else:
            interval = timedelta(seconds=float(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"train_time_interval={value!r} is not a time: pass DD:HH:MM:SS, e.g. "
            f"{INTERVAL_EXAMPLE}"
        ) from exc
    if interval <= timedelta(0):
        raise ConfigError(f"train_time_interval={value!r} must be longer than zero")
    return interval


class LastCheckpoint(ModelCheckpoint):
    """Write last.ckpt after every epoch; within epochs every `every_n_train_steps` steps or every
    `train_time_interval` ("DD:HH:MM:SS"), if set; and when SIGTERM or Ctrl-C stops the run
    (src/callbacks/preemption.py), at the end of the step it arrived in.

    Never on an error: a run that fails (a non-finite loss, a crash) keeps its last good
    checkpoint. An interval never saves on an epoch's last step, where the epoch-end checkpoint
    (after validation, so a resume does not validate that epoch twice) follows.
    """

    def __init__(
        self,
        dirpath: str,
        filename: str = "last",
        every_n_train_steps: int | None = None,
        train_time_interval: str | dict | int | float | None = None,
    ) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ConfigError(
                f"every_n_train_steps={every_n_train_steps} must be 1 or more (null: only after "
                "each epoch)"
            )
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=None,  # no metric: the newest state replaces the file
            save_top_k=1,
            save_on_exception=True,  # only for a stop signal: see on_exception
            enable_version_counter=False,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=parse_interval(train_time_interval),
        )
        # Lightning takes a step or time interval instead of saving after each epoch; this
        # callback does both (each trigger is checked in its own hook, and a step is never
        # saved twice).
        self._every_n_epochs = 1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch-end checkpoint follows, after validation
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # Lightning raises SIGTERMException at the end of the step a stop signal arrived in:
        # a safe point. Any other exception may come from broken weights or mid-step.
        # Not mid-validation: a resume from there cannot finish that validation.
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.validating
        if isinstance(exception, SIGTERMException) and fitting:
            super().on_exception(trainer, pl_module, exception)
