"""The sweeper: periodic maintenance every worker process runs beside its loop."""

from __future__ import annotations

import logging
import time

from openremix.jobs.params import result_output_keys
from openremix.jobs.store import JobStore
from openremix.media.previews import preview_key
from openremix.media.storage import BlobStorage

log = logging.getLogger("openremix.worker")


class Sweeper:
    """Periodic maintenance: re-queue jobs whose worker vanished, delete expired jobs and their
    blobs (outputs, and the live preview of a job whose worker was killed mid-run).

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
        for job in self.store.expire():
            keys = result_output_keys(job.result)
            if job.ran:  # a worker killed mid-run leaves its job's live preview behind
                keys.append(preview_key(job.request_id))
            for key in keys:
                self.storage.delete(key)

    def maybe_sweep(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            try:
                self.sweep()
            except Exception:  # a sweep must never kill its host loop
                log.exception("sweep failed")
