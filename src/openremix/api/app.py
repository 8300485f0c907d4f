"""The FastAPI app factory. The app never touches an engine: it reads and writes the job store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI

from openremix import __version__
from openremix.api.access import RateLimiter
from openremix.api.errors import install_error_handlers
from openremix.api.middleware import install_request_observer
from openremix.api.openapi import PUBLIC_ERRORS, READ_ERRORS, SUBMIT_ERRORS, build_openapi
from openremix.api.routes import (
    account,
    cancel,
    docs,
    events,
    health,
    ideogram,
    openai_images,
    outputs,
    playground,
    remix,
    requests,
)
from openremix.api.state import AppState
from openremix.config import Settings
from openremix.contract.params import MODEL_SLUGS
from openremix.jobs.store import JobStore
from openremix.jobs.store_wait import WaitLimitedStore
from openremix.media.images import ImageLoader
from openremix.media.storage import BlobStorage


def ensure_configured_keys(store: JobStore, settings: Settings) -> None:
    """Register the keys of `OPENREMIX_API_KEYS` (idempotent; credits only on first sight)."""
    for secret in (k.strip() for k in settings.api_keys.split(",")):
        if secret:
            store.create_api_key("configured", settings.default_credits, secret=secret)


def create_app(
    settings: Settings,
    store: JobStore,
    storage: BlobStorage,
    *,
    on_enqueue: Callable[[], None] | None = None,
    readiness: Callable[[], str | None] | None = None,
    load_error: Callable[[], str | None] | None = None,
) -> FastAPI:
    """Build the app over an open store and storage (their lifetime is the caller's).

    `on_enqueue` wakes in-process workers; `readiness` returns None when ready, else why not
    (e.g. "model loading"), and `/readyz` reports it.
    """
    ensure_configured_keys(store, settings)
    # A client waits for the store a few seconds, then gets 503 + Retry-After (`store_wait`).
    api_store = cast(JobStore, WaitLimitedStore(store, settings.store_wait_seconds))
    state = AppState(
        settings=settings,
        store=api_store,
        storage=storage,
        loader=ImageLoader.from_settings(settings),
        limiter=RateLimiter(settings.rate_limit_per_minute, store=api_store),
    )
    if on_enqueue is not None:
        state.on_enqueue = on_enqueue
    if readiness is not None:
        state.readiness = readiness
    if load_error is not None:
        state.load_error = load_error

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="openremix",
        version=__version__,
        description="Self-hosted image remix API: Segmind's Ideogram 3 Remix wire, Ideogram's own "
        "remix API (3.0 and 4.0) and the OpenAI images edit API, on one queue.",
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # served from local files by routes.docs
        redoc_url=None,
    )
    app.state.openremix = state
    install_error_handlers(app)
    install_request_observer(app)
    # The two-segment wire routes first: they must never be read as a `/v1/{slug}`.
    app.include_router(ideogram.router)
    app.include_router(openai_images.router)
    app.include_router(remix.router, responses=SUBMIT_ERRORS)
    for module in (requests, cancel, events, account):
        app.include_router(module.router, responses=READ_ERRORS)
    for module in (outputs, health):  # no key needed
        app.include_router(module.router, responses=PUBLIC_ERRORS)
    app.include_router(playground.router)
    app.include_router(docs.router)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, MODEL_SLUGS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
