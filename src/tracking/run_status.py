"""A run's status in its folder's status.txt, and its hyperparameters and end in TensorBoard.

status.txt (src/core/runs.py) holds the latest status, running, finished, pruned, failed or
interrupted, with a reason: resume=auto (src/cli/resume.py) and the comparison report
(src/tracking/report.py, which shows crashed and unfinished runs as such) read it. TensorBoard's
HPARAMS tab shows one row per session: the hyperparameters come from the session's start record,
the metrics from the scalars logged beside it, and success or failure from its end record.
"""

import contextlib
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from src.core.errors import ConfigError, one_line_reason
from src.core.files import write_atomically
from src.core.runs import SLURM_JOB, STATUS_FILE
from src.tracking.hparams import HParamValue

# How each end shows in TensorBoard's HPARAMS status filter. Only the end is recorded: readers
# keep the first record of a tag, so a "running" record would stay for good.
SESSION_STATUS = {
    "finished": "STATUS_SUCCESS",
    "pruned": "STATUS_SUCCESS",
    "failed": "STATUS_FAILURE",
}
# A run a signal stopped (SIGTERM, Ctrl-C) ends without a session end: resume=auto continues it.
INTERRUPTED = "interrupted"


def _status_record(status: str) -> Summary:
    """The HPARAMS session's end and its status."""
    info = SessionEndInfo(
        status=api_pb2.Status.Value(SESSION_STATUS[status]), end_time_secs=time.time()
    )
    content = HParamsPluginData(session_end_info=info, version=metadata.PLUGIN_DATA_VERSION)
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    return Summary(
        value=[
            Summary.Value(
                tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin)
            )
        ]
    )


class TensorBoardSession:
    """Start and end records of one run, in its TensorBoard folder and (the status) in
    `run_dir`/status.txt; does nothing where neither is given, or off rank 0.

    Use as a context manager: an exception leaving the block ends the session as failed (as
    interrupted for Ctrl-C or a signal's exit), if it started (or `record_refusals` is set, as
    in a multirun, where the failed job must show). A run continued in its folder (resume=auto)
    keeps the hyperparameters its session started with.
    """

    def __init__(
        self, log_dir: Path | None, record_refusals: bool = False, run_dir: Path | None = None
    ) -> None:
        rank_zero = rank_zero_only.rank == 0
        self.log_dir = log_dir if rank_zero else None
        self.status_file = run_dir / STATUS_FILE if run_dir is not None and rank_zero else None
        self.record_refusals = record_refusals
        self.continued = self.status_file is not None and self.status_file.is_file()
        self.started = False
        self.recorded = False  # the hyperparameters
        self.hyperparameters: dict[str, HParamValue] = {}
        self.ended = False

    def _write(self, *summaries: Summary, status: str | None) -> None:
        """The status into status.txt, the summaries (if any) into a new TensorBoard file."""
        if self.status_file is not None and status is not None:
            # the SLURM job, which a requeued job keeps: resume=auto may continue a run last
            # seen running on another node, if it was this job's
            job = os.environ.get("SLURM_JOB_ID")
            text = status + "\n" + (f"{SLURM_JOB} {job}\n" if job else "")
            write_atomically(self.status_file, lambda path: path.write_text(text))
        if self.log_dir is None or not summaries:
            return
        # A writer per record: each record lands in a new event file, so TensorBoard, which
        # reads a folder's event files in order of creation, picks up the end of a live run.
        writer = SummaryWriter(str(self.log_dir))
        for summary in summaries:
            writer.file_writer.add_summary(summary)
        writer.close()

    def start(self, hyperparameters: dict[str, HParamValue]) -> None:
        """Record that the run is running (with its process, to tell a live run from a crashed
        one). The hyperparameters are recorded by record_hyperparameters, once a finder
        (tune=lr) has applied its values, or else as the run ends."""
        self.hyperparameters = hyperparameters
        self._write(status=f"running: pid {os.getpid()} on {socket.gethostname()}")
        self.started = True

    def record_hyperparameters(self, hyperparameters: dict[str, HParamValue] | None = None) -> None:
        """Record the session's hyperparameters (default: those given to start), once:
        TensorBoard keeps a folder's first record, so a continued run keeps its own."""
        if self.recorded or self.continued or not self.started:
            return
        _, start, _ = hparams_summaries(hyperparameters or self.hyperparameters, {})
        self._write(start, status=None)
        self.recorded = True

    def end(self, status: str, reason: str = "") -> None:
        """Record how the run ended: finished, pruned, failed or interrupted, with an optional
        reason."""
        if status != INTERRUPTED and status not in SESSION_STATUS:
            raise ValueError(f"unknown end status {status!r}")
        # TensorBoard keeps the first session end: an interrupted run has none until it ends.
        self.record_hyperparameters()  # a run that ended before training started
        ends = [] if status == INTERRUPTED else [_status_record(status)]
        self._write(*ends, status=f"{status}: {reason}" if reason else status)
        self.ended = True

    def __enter__(self) -> "TensorBoardSession":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Any:
        if exc is not None and not self.ended and (self.started or self.record_refusals):
            # on a full disk this record cannot be written either: the error that ended the run
            # is the one to report, not this one's
            with contextlib.suppress(ConfigError, OSError):
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    self.end(INTERRUPTED)
                else:
                    self.end("failed", one_line_reason(exc))
        return None


def tensorboard_dir(loggers: list[Logger]) -> Path | None:
    """The folder the run's TensorBoardLogger writes to, or None without one."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            return Path(logger.log_dir)
    return None


def how_fit_ended(trainer: L.Trainer) -> tuple[str, str]:
    """`finished` or `pruned`, with why training stopped before max_epochs, if it did."""
    for callback in trainer.callbacks:
        if getattr(callback, "pruned", False):
            return "pruned", callback.reason
    for callback in trainer.early_stopping_callbacks:
        if callback.stopped_epoch:
            return "finished", f"stopped early after {callback.stopped_epoch + 1} epochs"
    return "finished", ""
