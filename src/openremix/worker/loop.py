"""The worker loop: claim a job, fetch its inputs, run the engine, store the output, finish.

One `Worker` per accelerator (or per in-process thread of `openremix serve`). It holds the
engine, loaded once. While a job runs, a heartbeat thread renews its lease; if the lease is lost
(the job was re-queued or cancelled elsewhere) the engine is stopped at its next step. A worker
that dies leaves its job to be re-claimed when the lease ends (`Sweeper`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from openremix import metrics
from openremix.contract.errors import InputImageError
from openremix.contract.request import RemixRequest
from openremix.engine.base import Engine, EngineError, EngineInput, EngineOutput, JobCancelled
from openremix.jobs.model import Job
from openremix.jobs.params import queue_timeout_error, unpack_job_params
from openremix.jobs.store import JobStore
from openremix.media.images import ImageLoader, encode_image
from openremix.media.storage import BlobStorage, new_output_key
from openremix.worker.previews import PreviewPublisher
from openremix.worker.sweeper import Sweeper

log = logging.getLogger("openremix.worker")

MAX_ERROR_BACKOFF_SECONDS = 5.0
"""The longest wait between two passes of the loop while the store or storage keeps failing."""


class JobTimedOut(Exception):
    """A batch ran past the per-job execution timeout."""


@dataclass
class _Running:
    """A claimed job inside a batch: its request, inputs, and whether we still hold it."""

    job: Job
    params: RemixRequest
    warnings: list[str]
    lost: threading.Event = field(default_factory=threading.Event)
    engine_inputs: list[EngineInput] = field(default_factory=list)
    """One per image the job makes (`num_images`), with the seeds `seed, seed + 1, ...`."""


class Worker:
    """Claims and runs jobs until `stop()` is called.

    With an engine that batches (`supports_batching`), jobs arriving within `batch_window`
    seconds of the first are claimed together (up to `max_batch`), grouped by the engine's
    `batch_key`, and each group runs as one `remix` call, oldest job first.
    """

    def __init__(
        self,
        store: JobStore,
        engine: Engine,
        loader: ImageLoader,
        storage: BlobStorage,
        *,
        lease_seconds: float = 30.0,
        worker_id: str | None = None,
        wake: threading.Event | None = None,
        idle_poll_max: float = 0.5,
        max_batch: int = 4,
        batch_window: float = 0.05,
        job_timeout: float = 600.0,
        preview_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.engine = engine
        self.loader = loader
        self.storage = storage
        self.lease_seconds = lease_seconds
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake = wake or threading.Event()
        self.idle_poll_max = idle_poll_max
        batching = bool(getattr(engine, "supports_batching", False))
        self.max_batch = max(1, max_batch) if batching else 1
        self.batch_window = batch_window
        self.job_timeout = job_timeout
        self.preview_seconds = preview_seconds
        """Seconds between live previews of a running job (engines that make them); 0: none."""
        self.sweeper = Sweeper(store, storage)
        self.ready = threading.Event()
        """Set once the engine is loaded."""
        self.load_error: str | None = None
        self.store_error: str | None = None
        """Why the last pass of the loop failed (the store or storage erred); None once a pass
        succeeds. `serve`'s `/readyz` reports it."""
        self._stopping = threading.Event()

    # --- loop -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the jobs in hand, then return from `run_forever`."""
        self._stopping.set()
        self.wake.set()

    def run_forever(self) -> None:
        try:
            self.engine.load()
        except Exception as exc:  # the worker cannot run without its model: report and stop
            self.load_error = f"engine {self.engine.name!r} failed to load: {exc}"
            log.exception(self.load_error)
            return
        self.ready.set()
        log.info("worker %s ready (engine %s)", self.worker_id, self.engine.name)
        idle = 0.02
        failures = 0
        while not self._stopping.is_set():
            try:
                worked = self._pass(idle)
            except Exception as exc:  # the store or storage failed: never stop, back off
                failures += 1
                self.store_error = f"{type(exc).__name__}: {str(exc).strip()}"
                delay = min(0.1 * 2 ** (failures - 1), MAX_ERROR_BACKOFF_SECONDS)
                log.exception("worker %s: a pass failed (%d in a row); retrying in %.1f s",
                              self.worker_id, failures, delay)
                self._stopping.wait(delay)
                continue
            if failures:
                log.info("worker %s recovered after %d failed pass(es)", self.worker_id, failures)
            failures, self.store_error = 0, None
            idle = 0.02 if worked else min(idle * 2, self.idle_poll_max)
        log.info("worker %s stopped", self.worker_id)

    def _pass(self, idle: float) -> bool:
        """One turn of the loop: sweep if due, run a batch or wait for work. True when a batch
        ran. Store and storage errors propagate to `run_forever`, which backs off."""
        self.sweeper.maybe_sweep()
        if self.run_once():
            return True
        wait_for_work = getattr(self.store, "wait_for_work", None)  # jobs.store.WaitsForWork
        if wait_for_work is not None:
            # The store says when work arrives (PostgreSQL LISTEN/NOTIFY): claim then, not on a
            # timer. The timeout bounds how late stop() and sweeps are noticed; a claim every
            # 5 s anyway covers a notification lost with a silently dropped connection.
            reclaim_at = time.monotonic() + 5.0
            while not (wait_for_work(self.idle_poll_max) or self._stopping.is_set()
                       or time.monotonic() > reclaim_at):
                self.sweeper.maybe_sweep()
            return False
        self.wake.wait(idle)
        self.wake.clear()
        return False

    def run_once(self) -> bool:
        """Claim and run one batch (one job unless the engine batches). False when idle."""
        batch = self.claim_batch()
        if not batch:
            return False
        self.process(batch)
        return True

    def claim_batch(self) -> list[Job]:
        """Up to `max_batch` jobs, claimed together in one round trip (`JobStore.claim_batch`:
        fair across API keys); topped up with jobs that arrive within `batch_window`."""
        batch = self.store.claim_batch(self.worker_id, self.lease_seconds, self.max_batch)
        if not batch:
            return []
        deadline = time.monotonic() + self.batch_window
        while len(batch) < self.max_batch and time.monotonic() < deadline:
            self.wake.wait(min(deadline - time.monotonic(), 0.01))
            self.wake.clear()
            try:
                batch += self.store.claim_batch(self.worker_id, self.lease_seconds,
                                                self.max_batch - len(batch))
            except Exception:  # run what is claimed already; the loop backs off next time
                log.warning("claiming more jobs for the batch failed", exc_info=True)
                break
        return batch

    # --- a batch --------------------------------------------------------------------------
    def process(self, jobs: list[Job]) -> None:
        running = [self._prepare(job) for job in jobs]
        running = [r for r in running if r is not None]
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(running, done), daemon=True)
        beat.start()
        try:
            groups: dict[Any, list[_Running]] = {}
            for item in running:
                groups.setdefault(self.engine.batch_key(item.params), []).append(item)
            for group in groups.values():
                self._run_group(group)
        finally:
            done.set()
            beat.join(timeout=1.0)

    def _prepare(self, job: Job) -> _Running | None:
        """Decode the job's params and fetch its images; a bad input fails only this job."""
        expired = queue_timeout_error(job, time.time())
        if expired:
            self._fail(job.request_id, expired)
            metrics.jobs_finished.labels("queue_timeout").inc()
            return None
        try:
            unpacked = unpack_job_params(job.params)
            params = unpacked.request
            item = _Running(job, params, unpacked.warnings)
            image = self.loader.load(params.image, "image")
            style_images = self.loader.load_references(params.style_reference_images)
            item.engine_inputs = [
                EngineInput(job.request_id, one, image, style_images)
                for one in unpacked.image_requests()
            ]
            return item
        except InputImageError as exc:
            self._fail(job.request_id, str(exc))
            log.info("job failed: %s", exc, extra={"request_id": job.request_id})
        except Exception:
            log.exception("could not prepare job", extra={"request_id": job.request_id})
            self._fail(job.request_id, "internal error while preparing")
        return None

    def _run_group(self, group: list[_Running]) -> None:
        started = time.perf_counter()
        last_step = [started]

        def on_step(step: int, total: int) -> None:
            now = time.perf_counter()
            metrics.engine_step_seconds.observe(now - last_step[0])
            last_step[0] = now
            if now - started > self.job_timeout:
                raise JobTimedOut
            for item in group:
                if item.lost.is_set():
                    continue
                try:
                    held = self.store.set_progress(item.job.request_id, self.worker_id, step,
                                                   total)
                except Exception:  # progress is a courtesy: a store hiccup must not fail a job
                    log.warning("could not record progress", exc_info=True,
                                extra={"request_id": item.job.request_id})
                    continue
                if not held:
                    item.lost.set()
            if all(item.lost.is_set() for item in group):
                raise JobCancelled(group[0].job.request_id)

        metrics.batch_size.observe(len(group))
        # Every image of every job in one call: a job of N images is N inputs of the batch.
        inputs = [one for item in group for one in item.engine_inputs]
        owners = [item for item in group for _ in item.engine_inputs]
        previews = PreviewPublisher(self.storage, [owner.job.request_id for owner in owners],
                                    self.preview_seconds,
                                    wanted=lambda index: not owners[index].lost.is_set())
        extra: dict[str, Any] = {}
        if previews.enabled and getattr(self.engine, "supports_previews", False):
            extra["on_preview"] = previews  # engine.base.PreviewCallback
        try:
            try:
                outputs = self.engine.remix(inputs, on_step, **extra)
            finally:
                previews.clear()  # before the jobs finish: a finished job has no preview left
        except JobTimedOut:
            self._fail_group(group, f"execution timed out after {self.job_timeout:g} s")
            return
        except JobCancelled:
            log.info("batch stopped: leases lost or cancelled",
                     extra={"request_id": group[0].job.request_id})
            return
        except EngineError as exc:
            self._fail_group(group, str(exc))
            return
        except Exception:
            log.exception("engine crashed", extra={"request_id": group[0].job.request_id})
            self._fail_group(group, "internal error while processing")
            return
        # Each job in a batch is charged the batch's time: that is what it waited for.
        inference_time = time.perf_counter() - started
        if len(outputs) != len(inputs):
            self._fail_group(group, "internal error: the engine returned "
                                    f"{len(outputs)} images for {len(inputs)} inputs")
            return
        start = 0
        for item in group:
            own = outputs[start:start + len(item.engine_inputs)]
            start += len(item.engine_inputs)
            try:
                self._finish(item, own, inference_time)
            except Exception:
                request_id = item.job.request_id
                log.exception("could not store the result", extra={"request_id": request_id})
                self._fail(request_id, "internal error while saving")

    def _fail_group(self, group: list[_Running], error: str) -> None:
        for item in group:
            self._fail(item.job.request_id, error)
            metrics.jobs_finished.labels("failed").inc()
            log.info("job failed: %s", error, extra={"request_id": item.job.request_id})

    def _fail(self, request_id: str, error: str, result: dict[str, Any] | None = None) -> None:
        """FAILED (and refunded) while this worker holds the lease. When the store cannot say
        so now, the job keeps its lease until it lapses and the sweep re-queues it (its attempt
        counted): never PROCESSING without a lease, never lost."""
        try:
            self.store.fail(request_id, self.worker_id, error, result)
        except Exception:
            log.exception("could not mark the job FAILED (%s); its lease will lapse", error,
                          extra={"request_id": request_id})

    def _finish(self, item: _Running, outputs: list[EngineOutput], inference_time: float) -> None:
        """Store the job's safe images and finish it: COMPLETED with at least one image, else
        FAILED (and refunded) with the first image's error. A blocked image (`image` None) is
        listed in `images` without a key (nothing unsafe is ever stored) and not charged."""
        job, params = item.job, item.params
        first = outputs[0]
        result: dict[str, Any] = {
            "seed": first.seed,
            "prompt": first.prompt,
            "resolution": params.resolution,
            "style_type": params.style_type,
            "is_image_safe": first.is_image_safe,
            "inference_time": round(inference_time, 4),
            "warnings": [*item.warnings, *first.warnings],
            "engine": self.engine.name,
            "details": first.details,
        }
        images = [self._store_image(output, params.output_format) for output in outputs]
        if len(outputs) > 1:
            result["images"] = images
        stored = [image for image in images if image.get("output_key")]
        if not stored:
            self._fail(job.request_id, first.error or "the engine produced no image", result)
            metrics.jobs_finished.labels("blocked" if not first.is_image_safe else "failed").inc()
            return
        # The single-image fields Segmind's wire reads: those of the first stored image.
        lead = stored[0]
        result.update({key: lead[key] for key in ("seed", "prompt", "is_image_safe",
                                                   "output_key", "content_type", "file_size")})
        # Blocked images are not charged: their share of the debit goes back as the job ends.
        unbilled = (len(images) - len(stored)) / len(images)
        if not self.store.complete(job.request_id, self.worker_id, result, unbilled):
            # The lease was lost meanwhile: another worker owns the job now; drop our copies.
            for image in stored:
                self.storage.delete(image["output_key"])
            log.warning("finished a job whose lease was lost", extra={"request_id": job.request_id})
            return
        metrics.jobs_finished.labels("completed").inc()
        metrics.job_phase_seconds.labels("inference").observe(inference_time)
        if job.started_at is not None:
            metrics.job_phase_seconds.labels("queue").observe(job.started_at - job.created_at)
        metrics.job_phase_seconds.labels("total").observe(time.time() - job.created_at)

    def _store_image(self, output: EngineOutput, output_format: str) -> dict[str, Any]:
        """One image of a job's result; stored (with its key) only when there is an image."""
        image: dict[str, Any] = {"seed": output.seed, "prompt": output.prompt,
                                 "is_image_safe": output.is_image_safe}
        if output.image is None:
            image["error"] = output.error or "the engine produced no image"
            return image
        data, content_type = encode_image(output.image, output_format)
        extension = "jpg" if output_format == "jpeg" else output_format
        key = new_output_key(extension, data)  # the key carries the checksum
        self.storage.put(key, data, content_type)
        image.update(output_key=key, content_type=content_type, file_size=len(data))
        return image

    def _heartbeat(self, running: list[_Running], done: threading.Event) -> None:
        interval = max(0.05, self.lease_seconds / 3)
        while not done.wait(interval):
            for item in running:
                if item.lost.is_set():
                    continue
                try:
                    ok = self.store.heartbeat(item.job.request_id, self.worker_id,
                                              self.lease_seconds)
                except Exception:
                    log.exception("heartbeat failed", extra={"request_id": item.job.request_id})
                    continue
                if not ok:
                    item.lost.set()
