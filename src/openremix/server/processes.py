"""The three openremix processes, wired from `Settings`: `serve`, `api` and `worker`.

`serve` is the embedded default: the API and `settings.workers` worker threads in one process
on one store. `api` is only the HTTP API (many replicas); `worker` is one worker process per
accelerator. Each runs until it is stopped and then shuts its parts down in order. A problem
found at start is raised as `StartupError` (one sentence and an exit code for the CLI).
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

from openremix.config import Settings
from openremix.engine.base import EngineError
from openremix.jobs.store import JobStore
from openremix.media.storage import BlobStorage
from openremix.server.log_format import configure_logging
from openremix.server.wiring import build_worker, open_output_storage, open_store
from openremix.worker.loop import Worker

console = Console(stderr=True, soft_wrap=True)


class StartupError(Exception):
    """The process cannot start; `str(self)` says why in one sentence."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def dev_key(settings: Settings, store: JobStore) -> str:
    """The development key of this data folder: made on first start, shown at every start."""
    path = settings.dev_key_path
    if path.is_file():
        secret = path.read_text().strip()
        if store.find_api_key(secret) is not None:
            return secret
    _, secret = store.create_api_key("dev", settings.default_credits)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def start_webhooks(settings: Settings, store: JobStore) -> Any:
    """The webhook dispatcher of this API process, started; says where its secret lives."""
    from openremix.webhooks.dispatcher import WebhookDispatcher
    from openremix.webhooks.signing import load_secret

    try:
        secret, path = load_secret(settings)
    except ValueError as exc:
        raise StartupError(f"OPENREMIX_WEBHOOK_SECRET: {exc}") from None
    where = path.resolve() if path is not None else "OPENREMIX_WEBHOOK_SECRET"
    console.print(f"webhooks are signed with the secret in {escape(str(where))}")
    return WebhookDispatcher(
        store,
        secret,
        allow_private=settings.allow_private_urls,
        timeout=settings.fetch_timeout_seconds,
        retry_base_seconds=settings.webhook_retry_base_seconds,
    ).start()


def _stop_on_sigterm() -> None:
    """Make SIGTERM (systemd, `docker stop`, Kubernetes) end the process the way Ctrl-C does:
    by an exception that runs every `finally:` (workers finish or hand back their jobs, the
    store is closed). uvicorn handles SIGTERM itself while it serves, then restores this
    handler and raises the signal again once it has shut down; without it that second SIGTERM
    would kill the process before the shutdown code runs."""

    def on_sigterm(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def bind_listener(settings: Settings) -> socket.socket:
    """The API's listening socket, bound and listening before anything says it serves (a
    port in use is one line and exit 2, before models load or a banner shows)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"cannot listen on {settings.host}:{settings.port}: {reason} (another program "
            "may use the port: choose another with --port or OPENREMIX_PORT)"
        ) from None
    return sock


def public_url(settings: Settings) -> str:
    """Where a person on this machine reaches the API."""
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    return f"http://{shown_host}:{settings.port}"


def print_pages(url: str) -> None:
    console.print(f"  playground  {escape(url)}/")
    console.print(f"  API docs    {escape(url)}/docs  (also /redoc, /openapi.json)")


def run_http(settings: Settings, listener: socket.socket, store: JobStore,
             storage: BlobStorage, on_enqueue: Callable[[], None] | None = None,
             readiness: Callable[[], str | None] | None = None,
             load_error: Callable[[], str | None] | None = None) -> None:
    """Serve the API with uvicorn on `listener` until it is stopped (SIGTERM or SIGINT)."""
    import uvicorn

    from openremix.api.app import create_app
    from openremix.server.draining import DrainingServer
    from openremix.server.read_deadline import read_deadline_protocol

    api = create_app(settings, store, storage, on_enqueue=on_enqueue, readiness=readiness,
                     load_error=load_error)
    config = uvicorn.Config(api, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=10,
                            # slow clients are cut off: see `read_deadline`
                            http=read_deadline_protocol(settings.request_read_timeout_seconds))
    DrainingServer(config, api.state.openremix).run(sockets=[listener])


def _build_workers(settings: Settings, store: JobStore, storage: BlobStorage,
                   count: int, wake: threading.Event | None = None) -> list[Worker]:
    try:
        return [build_worker(settings, store, storage, wake=wake) for _ in range(count)]
    except EngineError as exc:
        raise StartupError(str(exc)) from None


def serve(settings: Settings) -> None:
    """API and workers in one process, on the embedded defaults (SQLite + local outputs)."""
    configure_logging(settings.log_level)
    _stop_on_sigterm()
    listener = bind_listener(settings)
    store = open_store(settings)
    storage = open_output_storage(settings)
    key = dev_key(settings, store)
    wake = threading.Event()
    workers = _build_workers(settings, store, storage, settings.workers, wake)
    webhooks = start_webhooks(settings, store)
    threads = [threading.Thread(target=w.run_forever, name=f"worker-{i}", daemon=True)
               for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    url = public_url(settings)
    console.print(f"[bold]openremix[/bold] serving on {escape(url)}  (engine: "
                  f"{escape(settings.engine)}, data: {escape(str(settings.data_dir))})")
    print_pages(url)
    console.print(f"development API key: [bold]{escape(key)}[/bold]")
    console.print(escape(f'try: segmind.SegmindClient(api_key="{key}", base_url="{url}/v1")'))
    sys.stderr.flush()

    def readiness() -> str | None:
        """None while some worker can take jobs, else why none can."""
        if not workers or any(w.ready.is_set() and w.store_error is None for w in workers):
            return None
        for worker in workers:
            if worker.load_error:
                return worker.load_error
            if worker.store_error:
                return f"the worker cannot use the job store: {worker.store_error}"
        return "model loading"

    def load_error() -> str | None:
        """The load error once every worker has failed to load its model (none ever will)."""
        failed = [w.load_error for w in workers if w.load_error]
        return failed[0] if workers and len(failed) == len(workers) else None

    try:
        run_http(settings, listener, store, storage, on_enqueue=wake.set, readiness=readiness,
                 load_error=load_error)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(timeout=30)
        webhooks.stop()
        store.close()


def api(settings: Settings) -> None:
    """Only the HTTP API (run `openremix worker` processes beside it)."""
    configure_logging(settings.log_level)
    _stop_on_sigterm()
    listener = bind_listener(settings)
    store = open_store(settings)
    webhooks = start_webhooks(settings, store)
    url = public_url(settings)
    console.print(f"[bold]openremix[/bold] API on {escape(url)}")
    print_pages(url)
    sys.stderr.flush()
    try:
        run_http(settings, listener, store, open_output_storage(settings))
    finally:
        webhooks.stop()
        store.close()


def worker(settings: Settings, metrics_port: int | None = None) -> None:
    """One worker process: claims jobs and runs the engine until SIGTERM/SIGINT."""
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.host)
    configure_logging(settings.log_level)
    store = open_store(settings)
    try:
        (runner,) = _build_workers(settings, store, open_output_storage(settings), 1)
    except StartupError:
        store.close()
        raise

    def on_signal(signum: int, frame: Any) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runner.run_forever()
    finally:
        store.close()
    if runner.load_error:
        raise StartupError(runner.load_error, exit_code=3)
