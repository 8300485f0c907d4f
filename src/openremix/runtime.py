"""Putting the parts together from `Settings`: the store, output storage, engine and workers.

Used by the CLI (and by tests that start real servers); the only place that chooses backends.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

from openremix.config import Settings
from openremix.engine.registry import load_engine
from openremix.jobs.sqlite import SQLiteJobStore
from openremix.jobs.store import JobStore
from openremix.media.images import ImageLoader
from openremix.media.storage import BlobStorage, LocalStorage
from openremix.worker import Worker


def open_store(settings: Settings) -> JobStore:
    url = settings.database_url
    if url.startswith(("postgresql://", "postgres://")):
        raise SystemExit("PostgreSQL support is not built yet: unset OPENREMIX_DATABASE_URL")
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
    elif url:
        raise SystemExit(f"OPENREMIX_DATABASE_URL: unsupported scheme in {url!r}")
    else:
        path = settings.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteJobStore(
        path, retention_seconds=settings.retention_seconds, max_attempts=settings.max_attempts
    )


def open_output_storage(settings: Settings) -> BlobStorage:
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    return LocalStorage(settings.outputs_dir)


def build_worker(
    settings: Settings,
    store: JobStore,
    storage: BlobStorage,
    *,
    wake: threading.Event | None = None,
) -> Worker:
    loader = ImageLoader(
        max_bytes=settings.max_image_bytes,
        max_side=4096,
        allow_private=settings.allow_private_urls,
        fetch_timeout=settings.fetch_timeout_seconds,
    )
    return Worker(
        store,
        load_engine(settings.engine),
        loader,
        storage,
        lease_seconds=settings.lease_seconds,
        wake=wake,
        max_batch=settings.max_batch,
        batch_window=settings.batch_window_ms / 1000,
        job_timeout=settings.job_timeout_seconds,
    )


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = None
        return True


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line, with the request id when the line concerns a request."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            entry["request_id"] = record.request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger("openremix")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
