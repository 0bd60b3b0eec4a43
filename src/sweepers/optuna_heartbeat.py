"""Heartbeats of the trials a search runs, in Optuna's own storage, so that a later search can
tell a trial whose search is gone (its heartbeat stopped) from one another search still runs.

Optuna records heartbeats itself only inside `study.optimize`; a Hydra search asks and tells
trials around its launcher instead, so the search process records them while the jobs run.
"""

import logging
import threading
from collections.abc import Sequence
from types import TracebackType

import optuna

log = logging.getLogger(__name__)


class Heartbeats:
    """While in the `with` block, record a heartbeat of each trial every `interval` seconds (the
    first at once), from a thread of this process."""

    def __init__(
        self, storage: optuna.storages.RDBStorage, trial_ids: Sequence[int], interval: int
    ) -> None:
        self.storage = storage
        self.trial_ids = list(trial_ids)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeats", daemon=True)

    def _record(self) -> None:
        for trial_id in self.trial_ids:
            self.storage.record_heartbeat(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._record()
            except Exception as error:  # a busy database: the next beat may get through
                log.warning(f"Could not record the trials' heartbeat: {error}")

    def __enter__(self) -> "Heartbeats":
        self._record()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
