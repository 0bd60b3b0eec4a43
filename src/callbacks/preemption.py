"""Stop cleanly on SIGTERM or Ctrl-C: finish the step, save last.ckpt, say how to resume.

Lightning's signal connector already turns SIGTERM into a stop at the end of the current step
(its loops raise SIGTERMException there, and LastCheckpoint saves last.ckpt on it); on SLURM it
also saves an hpc checkpoint and requeues the job on the warning signal (`--signal=SIGUSR1@90`).
This callback sends Ctrl-C (SIGINT) the same way, which would otherwise interrupt Python
wherever it is, remembers which signal stopped the run, and `exit_when_stopped` records the run
as interrupted, prints the command that resumes it and exits with 128 + the signal's number.
"""

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.cli.resume import resume_command
from src.tracking.run_status import INTERRUPTED, TensorBoardSession

log = logging.getLogger(__name__)


@dataclass
class Stop:
    """Which signal stopped the run, and where ("in epoch 3 at step 250"; empty: not known)."""

    signal: str
    where: str = ""

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process a signal ended."""
        return 128 + int(signal.Signals[self.signal])


class StopOnSignal(L.Callback):
    """While training, stop on SIGTERM or Ctrl-C (SIGINT) at the next safe point with last.ckpt
    saved: the end of the current step, or, during validation, its end (the epoch's end, where
    last.ckpt is the epoch's; Lightning would stop mid-validation, from where a resume does
    not validate that epoch). A second Ctrl-C stops at once, without saving."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._stop: Callable[[int, FrameType | None], Any] | None = None  # Lightning's handler
        self._pending = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signal, self._pending = None, False
        stop = signal.getsignal(signal.SIGTERM)  # Lightning's: notes the stop for its loops
        if not callable(stop) or threading.current_thread() is not threading.main_thread():
            return
        self._stop = stop
        pid = os.getpid()

        def handle(signum: int, frame: FrameType | None) -> None:
            if os.getpid() != pid:
                return  # a data loader worker forked since: the training process decides
            name = signal.Signals(signum).name
            if self.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
            validating = trainer.validating and not trainer.sanity_checking
            wait = _validation_comes_first(trainer)
            if self.signal is None:
                self.signal = name
                when = (
                    "after this validation"
                    if validating
                    else "after this epoch's validation"
                    if wait
                    else "at the end of this step"
                )
                again = (
                    " (Ctrl-C again to stop at once, without saving)" if name == "SIGINT" else ""
                )
                log.warning(f"{name} received: stopping {when} and saving last.ckpt{again}")
            if wait:
                self._pending = True  # passed on when the validation or the epoch ends
            else:
                stop(signal.SIGTERM, frame)

        # Lightning's teardown puts back the handlers it found, these two included.
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pass_on()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pass_on()  # an epoch that did not validate

    def _pass_on(self) -> None:
        if self._pending and self._stop is not None:
            self._pending = False
            self._stop(signal.SIGTERM, None)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException | KeyboardInterrupt):
            name = self.signal or (
                "SIGINT" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
            )
            # Lightning raises the same exception on (a KeyboardInterrupt as the context of its
            # SystemExit): exit_when_stopped reads the stop from it.
            exception.stop = Stop(name, _where(trainer))  # type: ignore[attr-defined]


def _validation_comes_first(trainer: L.Trainer) -> bool:
    """Whether Lightning would run a validation before it next looks for a stop: during the
    epoch's validation, its last step, or between the step before and the last one. A stop
    noted there would cut that validation short (Lightning's loop raises at its first batch)."""
    epochs = trainer.fit_loop.epoch_progress.current
    if trainer.sanity_checking or epochs.started <= epochs.processed:
        return False  # before training or between epochs: the next step's end is safe
    batches = trainer.fit_loop.epoch_loop.batch_progress
    done = batches.current.completed
    next_is_last = done == batches.current.ready == trainer.num_training_batches - 1
    return trainer.validating or batches.is_last_batch or next_is_last


def _where(trainer: L.Trainer) -> str:
    """Where training is, as a person counts epochs (from 1)."""
    if trainer.state.fn != TrainerFn.FITTING:
        return f"while running {trainer.state.fn.value}"
    if trainer.sanity_checking:
        return "before training (in the sanity check)"
    epochs = trainer.fit_loop.epoch_progress.current
    inside = epochs.started > epochs.completed
    where = f"in epoch {epochs.completed + 1}" if inside else f"after epoch {epochs.completed}"
    return f"{where} at step {trainer.global_step}"


def _stop_of(exc: BaseException) -> Stop | None:
    """The Stop a signal left on exc, or one for a Ctrl-C outside training; None for others."""
    for candidate in (exc, exc.__context__):
        stop = getattr(candidate, "stop", None)
        if isinstance(stop, Stop):
            return stop
    if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__context__, KeyboardInterrupt):
        return Stop("SIGINT")
    if isinstance(exc, SIGTERMException):
        return Stop("SIGTERM")
    return None


@contextmanager
def exit_when_stopped(session: TensorBoardSession) -> Iterator[None]:
    """A run a signal stopped: record it as interrupted, log the command that resumes it and
    exit with 128 + the signal's number (SIGTERMException alone would exit with 0)."""
    try:
        yield
    except (SIGTERMException, KeyboardInterrupt, SystemExit) as exc:
        stop = _stop_of(exc)
        if stop is None:
            raise
        reason = f"{stop.signal} {stop.where}".strip()
        session.end(INTERRUPTED, reason)
        log.warning(f"Interrupted by {reason}. Resume with:\n  {resume_command()}")
        raise SystemExit(stop.exit_code) from None
