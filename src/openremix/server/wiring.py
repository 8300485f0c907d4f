"""Putting the parts together from `Settings`: the store, output storage, engine and workers.

The only place that chooses backends; `server.processes` runs what it builds.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openremix import metrics
from openremix.config import Settings
from openremix.engine.base import Engine
from openremix.engine.registry import load_engine
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.jobs.store import JobStore
from openremix.media.images import ImageLoader
from openremix.media.storage import BlobStorage, LocalStorage
from openremix.worker.loop import Worker


@dataclass(frozen=True)
class StoreLocation:
    """Where the job store is: a PostgreSQL URL, or an SQLite file (exactly one is set)."""

    postgres_url: str | None = None
    sqlite_path: Path | None = None


def store_location(settings: Settings) -> StoreLocation:
    """The job store `database_url` names: PostgreSQL, an SQLite file, or (empty) the data
    folder's SQLite file. The one rule every command that opens a store follows; exits with
    one sentence on a scheme it does not know."""
    url = settings.database_url
    if url.startswith(("postgresql://", "postgres://")):
        return StoreLocation(postgres_url=url)
    if url.startswith("sqlite:///"):
        return StoreLocation(sqlite_path=Path(url.removeprefix("sqlite:///")))
    if url:
        raise SystemExit(f"OPENREMIX_DATABASE_URL: unsupported scheme in {url!r}")
    return StoreLocation(sqlite_path=settings.sqlite_path)


def open_store(settings: Settings) -> JobStore:
    """The job store of `store_location`, opened (an SQLite one created or upgraded). Exits
    with one sentence when it cannot be opened."""
    location = store_location(settings)
    if location.sqlite_path is None:
        return _open_postgres(settings)
    path = location.sqlite_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteJobStore(
            path, retention_seconds=settings.retention_seconds,
            max_attempts=settings.max_attempts,
            max_running_per_key=settings.max_running_per_key,
        )
    except (sqlite3.Error, OSError) as exc:  # read-only folder, not a database, truncated
        raise SystemExit(
            f"SQLite job store {str(path)!r} cannot be opened: {exc} (check that the data "
            f"folder is writable and the file is an openremix database, or restore a backup)"
        ) from None


def _open_postgres(settings: Settings) -> JobStore:
    try:
        import psycopg

        from openremix.jobs.postgres.schema import SchemaError
        from openremix.jobs.postgres.store import PostgresJobStore
    except ImportError:
        raise SystemExit(
            "OPENREMIX_DATABASE_URL is a PostgreSQL URL but psycopg is not installed: "
            "pip install 'openremix[postgres]'"
        ) from None
    try:
        return PostgresJobStore(
            settings.database_url,
            retention_seconds=settings.retention_seconds,
            max_attempts=settings.max_attempts,
            auto_migrate=settings.auto_migrate,
            max_running_per_key=settings.max_running_per_key,
        )
    except SchemaError as exc:
        raise SystemExit(str(exc)) from None
    except psycopg.Error as exc:
        raise SystemExit(f"PostgreSQL job store: cannot connect: {exc}") from None


def open_output_storage(settings: Settings) -> BlobStorage:
    """The storage `storage_url` names (empty: `outputs` in the data folder), checked now.

    A wrong bucket, endpoint or credentials stops the process at start with one sentence,
    instead of failing every job later.
    """
    from openremix.media.storage import open_storage

    location = settings.storage_url or settings.outputs_dir
    try:
        storage = open_storage(location, endpoint_url=settings.s3_endpoint_url or None)
        if isinstance(storage, LocalStorage):
            storage.root.mkdir(parents=True, exist_ok=True)
        check = getattr(storage, "check", None)  # S3Storage: can the bucket be reached?
        if callable(check):
            check()
    except (ValueError, ImportError, OSError) as exc:
        raise SystemExit(f"output storage {str(location)!r}: {exc}") from None
    return storage


def diffusers_options(settings: Settings) -> dict[str, Any]:
    """The diffusion engine's arguments, from the settings only (the engine reads no environment).

    A model pulled into the data folder is used from there; empty values are passed as they
    are: the engine picks the device and dtype, and refuses an empty model with a sentence.
    """
    return {"model": settings.resolved_model(), "device": settings.device,
            "dtype": settings.dtype, "ip_adapter": settings.ip_adapter,
            "max_side": settings.max_side, "cpu_offload": settings.cpu_offload,
            "variant": settings.model_variant,
            "enhancer_max_tokens": settings.enhancer_max_tokens}


def build_engine(settings: Settings) -> Engine:
    """The engine `settings.engine` names, behind the image safety screen unless it is off."""
    engine = load_engine(settings.engine, diffusers_options(settings))
    if not settings.image_safety:
        return engine
    from openremix.engine.image_safety import NsfwClassifier
    from openremix.engine.screen import ScreenedEngine

    return ScreenedEngine(
        engine, NsfwClassifier(threads=settings.image_safety_threads or None),
        settings.image_safety_threshold,
        on_blocked=lambda where: metrics.images_blocked.labels(where).inc(),
    )


def build_worker(
    settings: Settings,
    store: JobStore,
    storage: BlobStorage,
    *,
    wake: threading.Event | None = None,
) -> Worker:
    return Worker(
        store,
        build_engine(settings),
        ImageLoader.from_settings(settings),
        storage,
        lease_seconds=settings.lease_seconds,
        wake=wake,
        max_batch=settings.max_batch,
        batch_window=settings.batch_window_ms / 1000,
        job_timeout=settings.job_timeout_seconds,
        preview_seconds=settings.preview_seconds,
    )
