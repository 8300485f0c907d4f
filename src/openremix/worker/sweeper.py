"""The sweeper: periodic maintenance every worker process runs beside its loop."""

from __future__ import annotations

import logging
import time

from openremix.jobs.params import result_output_keys
from openremix.jobs.store import JobStore
from openremix.media.storage import BlobStorage

log = logging.getLogger("openremix.worker")


class Sweeper:
    """Periodic maintenance: re-queue jobs whose worker vanished, delete expired jobs + outputs.

    Safe to run in every process at once (each step is a store transaction).
    """

    def __init__(self, store: JobStore, storage: BlobStorage, interval: float = 2.0) -> None:
        self.store = store
        self.storage = storage
        self.interval = interval
        self._last = 0.0

    def sweep(self) -> None:
        requeued = self.store.requeue_expired_leases()
        if requeued:
            log.warning("re-queued or failed %d job(s) whose worker lost its lease", requeued)
        for result in self.store.expire():
            for key in result_output_keys(result):
                self.storage.delete(key)

    def maybe_sweep(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            try:
                self.sweep()
            except Exception:  # a sweep must never kill its host loop
                log.exception("sweep failed")
