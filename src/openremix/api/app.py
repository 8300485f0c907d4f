"""The FastAPI app factory. The app never touches an engine: it reads and writes the job store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from openremix import __version__
from openremix.api.access import RateLimiter
from openremix.api.errors import install_error_handlers
from openremix.api.observe import install_request_observer
from openremix.api.observe import router as metrics_router
from openremix.api.openapi import READ_ERRORS, SUBMIT_ERRORS, document_model_slugs
from openremix.api.routes_control import router as control_router
from openremix.api.routes_playground import router as playground_router
from openremix.api.routes_remix import router as remix_router
from openremix.api.routes_requests import router as requests_router
from openremix.api.state import MODELS, AppState
from openremix.config import Settings
from openremix.jobs.store import JobStore
from openremix.media.storage import BlobStorage
from openremix.runtime import image_loader


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
) -> FastAPI:
    """Build the app over an open store and storage (their lifetime is the caller's).

    `on_enqueue` wakes in-process workers; `readiness` returns None when ready, else why not
    (e.g. "model loading"), and `/readyz` reports it.
    """
    ensure_configured_keys(store, settings)
    state = AppState(
        settings=settings,
        store=store,
        storage=storage,
        loader=image_loader(settings),
        limiter=RateLimiter(settings.rate_limit_per_minute),
    )
    if on_enqueue is not None:
        state.on_enqueue = on_enqueue
    if readiness is not None:
        state.readiness = readiness

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="openremix",
        version=__version__,
        description="Self-hosted image remix API, wire-compatible with Ideogram 3 Remix.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.openremix = state
    install_error_handlers(app)
    install_request_observer(app)
    app.include_router(remix_router, responses=SUBMIT_ERRORS)
    app.include_router(requests_router, responses=READ_ERRORS)
    app.include_router(control_router, responses=READ_ERRORS)
    app.include_router(metrics_router)
    app.include_router(playground_router)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_model_slugs(FastAPI.openapi(app), MODELS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
