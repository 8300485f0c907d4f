"""The `openremix` command: serve, api, worker, keys, remix."""

from __future__ import annotations

import base64
import mimetypes
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from openremix.config import Settings

app = typer.Typer(help="openremix: a self-hosted image remix API.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
models_app = typer.Typer(help="Manage diffusion models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
db_app = typer.Typer(help="The job store's schema (versioned migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(stderr=True, soft_wrap=True)

DEV_KEY_FILE = "dev-api-key"

HostOpt = typer.Option(None, "--host", help="Bind address [env OPENREMIX_HOST, default 127.0.0.1]")
PortOpt = typer.Option(None, "--port", help="Port [env OPENREMIX_PORT, default 8000]")
DataOpt = typer.Option(
    None, "--data-dir", help="Data folder [env OPENREMIX_DATA_DIR, default ./openremix-data]"
)


def _settings(host: str | None = None, port: int | None = None,
              data_dir: Path | None = None) -> Settings:
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**overrides)


def _dev_key(settings: Settings, store: Any) -> str:
    """The development key of this data folder: made on first start, shown at every start."""
    path = settings.data_dir / DEV_KEY_FILE
    if path.is_file():
        secret = path.read_text().strip()
        if store.find_api_key(secret) is not None:
            return secret
    _, secret = store.create_api_key("dev", settings.default_credits)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def _start_webhooks(settings: Settings, store: Any) -> Any:
    """The webhook dispatcher of this API process, started; says where its secret lives."""
    from openremix.webhooks import WebhookDispatcher, load_secret

    try:
        secret, path = load_secret(settings)
    except ValueError as exc:
        console.print(f"error: OPENREMIX_WEBHOOK_SECRET: {exc}")
        raise typer.Exit(2) from None
    where = path.resolve() if path is not None else "OPENREMIX_WEBHOOK_SECRET"
    console.print(f"webhooks are signed with the secret in {where}")
    return WebhookDispatcher(
        store,
        secret,
        allow_private=settings.allow_private_urls,
        timeout=settings.fetch_timeout_seconds,
        retry_base_seconds=settings.webhook_retry_base_seconds,
    ).start()


def _run_api(settings: Settings, store: Any, storage: Any, on_enqueue: Any = None,
             readiness: Any = None) -> None:
    import uvicorn

    from openremix.api.app import create_app

    api = create_app(settings, store, storage, on_enqueue=on_enqueue, readiness=readiness)
    uvicorn.run(api, host=settings.host, port=settings.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=10)


@app.command()
def serve(host: str | None = HostOpt, port: int | None = PortOpt,
          data_dir: Path | None = DataOpt) -> None:
    """API and worker in one process, on the embedded defaults (SQLite + local outputs)."""
    from openremix.engine.base import EngineError
    from openremix.runtime import build_worker, configure_logging, open_output_storage, open_store

    settings = _settings(host, port, data_dir)
    configure_logging(settings.log_level)
    store = open_store(settings)
    storage = open_output_storage(settings)
    key = _dev_key(settings, store)
    wake = threading.Event()
    try:
        workers = [build_worker(settings, store, storage, wake=wake)
                   for _ in range(settings.workers)]
    except EngineError as exc:
        console.print(f"error: {exc}")
        raise typer.Exit(2) from None
    webhooks = _start_webhooks(settings, store)
    threads = [threading.Thread(target=w.run_forever, name=f"worker-{i}", daemon=True)
               for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{shown_host}:{settings.port}"
    console.print(f"[bold]openremix[/bold] serving on {url}  (engine: {settings.engine}, "
                  f"data: {settings.data_dir})")
    console.print(f"development API key: [bold]{key}[/bold]")
    console.print(f'try: segmind.SegmindClient(api_key="{key}", base_url="{url}/v1")')
    sys.stderr.flush()
    def readiness() -> str | None:
        if not workers or any(w.ready.is_set() for w in workers):
            return None
        errors = [w.load_error for w in workers if w.load_error]
        return errors[0] if errors else "model loading"

    try:
        _run_api(settings, store, storage, on_enqueue=wake.set, readiness=readiness)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(timeout=30)
        webhooks.stop()
        store.close()


@app.command("api")
def api_command(host: str | None = HostOpt, port: int | None = PortOpt,
                data_dir: Path | None = DataOpt) -> None:
    """Only the HTTP API (run `openremix worker` processes beside it)."""
    from openremix.runtime import configure_logging, open_output_storage, open_store

    settings = _settings(host, port, data_dir)
    configure_logging(settings.log_level)
    store = open_store(settings)
    webhooks = _start_webhooks(settings, store)
    try:
        _run_api(settings, store, open_output_storage(settings))
    finally:
        webhooks.stop()
        store.close()


@app.command()
def worker(
    data_dir: Path | None = DataOpt,
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve this worker's Prometheus metrics on this port."
    ),
) -> None:
    """One worker process: claims jobs and runs the engine until SIGTERM/SIGINT."""
    from openremix.engine.base import EngineError
    from openremix.runtime import build_worker, configure_logging, open_output_storage, open_store

    settings = _settings(data_dir=data_dir)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.host)
    configure_logging(settings.log_level)
    store = open_store(settings)
    try:
        runner = build_worker(settings, store, open_output_storage(settings))
    except EngineError as exc:
        console.print(f"error: {exc}")
        raise typer.Exit(2) from None

    def on_signal(signum: int, frame: Any) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runner.run_forever()
    finally:
        store.close()
    if runner.load_error:
        console.print(f"error: {runner.load_error}")
        raise typer.Exit(3)


@keys_app.command("create")
def keys_create(
    name: str = typer.Option("default", help="A label for the key."),
    credits: float = typer.Option(1000.0, help="Paid credits to start with."),
    free_credits: float = typer.Option(0.0, "--free-credits", help="Free credits (used first)."),
    data_dir: Path | None = DataOpt,
) -> None:
    """Create a key; prints the secret once."""
    from openremix.runtime import open_store

    store = open_store(_settings(data_dir=data_dir))
    record, secret = store.create_api_key(name, credits, free_credits)
    store.close()
    console.print(f"created {record.key_id} ({name}), credits {credits:g} + free {free_credits:g}")
    print(secret)


@keys_app.command("list")
def keys_list(data_dir: Path | None = DataOpt) -> None:
    """List keys (ids, names, balances; never the secrets)."""
    from rich.table import Table

    from openremix.runtime import open_store

    store = open_store(_settings(data_dir=data_dir))
    table = Table("key id", "name", "credits", "free credits", "revoked")
    for record in store.list_api_keys():
        table.add_row(record.key_id, record.name, f"{record.credits:g}",
                      f"{record.free_credits:g}", "yes" if record.revoked else "")
    store.close()
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: Path | None = DataOpt) -> None:
    """Revoke a key by its id; requests with it answer 401 from now on."""
    from openremix.runtime import open_store

    store = open_store(_settings(data_dir=data_dir))
    ok = store.revoke_api_key(key_id)
    store.close()
    if not ok:
        console.print(f"error: no key {key_id}")
        raise typer.Exit(2)
    console.print(f"revoked {key_id}")


def _postgres_url(settings: Settings) -> str | None:
    url = settings.database_url
    return url if url.startswith(("postgresql://", "postgres://")) else None


def _db_call(call: Any, url: str) -> Any:
    """Run a `postgres_schema` command; one line and exit 2 when it cannot."""
    try:
        import psycopg

        from openremix.jobs.postgres_schema import SchemaError
    except ImportError:
        console.print("error: PostgreSQL needs psycopg: pip install 'openremix[postgres]'")
        raise typer.Exit(2) from None
    try:
        return call(url)
    except (SchemaError, psycopg.Error) as exc:
        console.print(f"error: {str(exc).strip()}")
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade(data_dir: Path | None = DataOpt) -> None:
    """Create the job store's tables or apply its pending migrations, then exit.

    Safe to run on every deploy and from several machines at once (an advisory lock makes one
    of them apply each step). Exit codes: 0 done or nothing to do, 2 error.
    """
    settings = _settings(data_dir=data_dir)
    url = _postgres_url(settings)
    if url is None:
        from openremix.jobs.sqlite_schema import SCHEMA_VERSION
        from openremix.runtime import open_store

        open_store(settings).close()  # the SQLite store upgrades itself when opened
        print(f"SQLite job store: schema version {SCHEMA_VERSION} (up to date)")
        return
    from openremix.jobs.postgres_schema import upgrade_database

    before, after = _db_call(upgrade_database, url)
    if before == after:
        print(f"schema version {after}: already up to date, nothing to do")
    else:
        print(f"schema upgraded from version {before} to {after}")


@db_app.command("status")
def db_status(data_dir: Path | None = DataOpt) -> None:
    """Print the job store's schema version and pending migrations.

    Exit codes: 0 up to date, 1 migrations pending (or the database is newer than this
    openremix), 2 error.
    """
    settings = _settings(data_dir=data_dir)
    url = _postgres_url(settings)
    if url is None:
        from openremix.jobs.sqlite_schema import SCHEMA_VERSION
        from openremix.runtime import open_store

        open_store(settings).close()  # refuses a newer file; upgrades an older one
        print(f"SQLite job store: schema version {SCHEMA_VERSION} (upgraded whenever opened)")
        return
    from openremix.jobs.postgres_schema import database_status

    status = _db_call(database_status, url)
    print(status.describe())
    if status.version != status.known:
        raise typer.Exit(1)


@models_app.command("pull")
def models_pull(
    model_id: str = typer.Argument(..., help="A hub model id, e.g. stabilityai/sdxl-turbo."),
    revision: str | None = typer.Option(None, help="A branch, tag or commit."),
    data_dir: Path | None = DataOpt,
) -> None:
    """Download a diffusers model into the data folder (needs a reachable model hub).

    Then run with OPENREMIX_ENGINE=diffusers OPENREMIX_MODEL=<the same id>.
    """
    settings = _settings(data_dir=data_dir)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        console.print("error: pulling models needs `pip install openremix[diffusers]`")
        raise typer.Exit(2) from None
    target = settings.models_dir / model_id.replace("/", "--")
    console.print(f"pulling {model_id} into {target}")
    try:
        snapshot_download(
            repo_id=model_id,
            revision=revision,
            local_dir=target,
            allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "*.md"],
        )
    except Exception as exc:  # the hub client raises many kinds; report one line
        reason = (str(exc).splitlines() or [""])[0]
        console.print(f"error: cannot download {model_id}: {type(exc).__name__}: {reason}")
        raise typer.Exit(4) from None
    console.print(f"done: OPENREMIX_ENGINE=diffusers OPENREMIX_MODEL={model_id} "
                  f"OPENREMIX_DATA_DIR={settings.data_dir} openremix serve")


def image_argument(value: str) -> str:
    """A URL as is; a local file as a data URI."""
    if value.startswith(("http://", "https://", "data:")):
        return value
    path = Path(value)
    if not path.is_file():
        raise typer.BadParameter(f"{value}: no such file and not a URL")
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


@app.command()
def remix(
    image: str = typer.Argument(..., help="Input image: a local file or an http(s) URL."),
    prompt: str = typer.Argument(..., help="What the remix should look like."),
    output: Path = typer.Option(Path("remix.jpg"), "-o", "--output", help="Where to save."),
    url: str = typer.Option("http://127.0.0.1:8000", "--url", envvar="OPENREMIX_BASE_URL",
                            help="Server base URL."),
    api_key: str = typer.Option("", "--api-key", envvar="OPENREMIX_API_KEY", help="API key."),
    seed: int | None = typer.Option(None, "--seed"),
    image_weight: int | None = typer.Option(None, "--image-weight"),
    resolution: str | None = typer.Option(None, "--resolution"),
    aspect_ratio: str | None = typer.Option(None, "--aspect-ratio"),
    speed: str | None = typer.Option(None, "--speed", help="TURBO, DEFAULT or QUALITY."),
    style_type: str | None = typer.Option(None, "--style-type"),
    palette: str | None = typer.Option(None, "--palette", help="A preset name, e.g. EMBER."),
    negative: str | None = typer.Option(None, "--negative", help="Negative prompt."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Send one remix to a running server, with a progress bar, and save the image.

    Exit codes: 0 saved, 1 the job failed, 2 bad request, 3 auth, 4 unreachable/timeout/5xx,
    5 rate limited.
    """
    from openremix.remix_command import run_remix

    params: dict[str, Any] = {
        "image": image_argument(image), "prompt": prompt, "seed": seed,
        "image_weight": image_weight, "resolution": resolution, "aspect_ratio": aspect_ratio,
        "rendering_speed": speed, "style_type": style_type, "negative_prompt": negative,
        "color_palette": {"name": palette} if palette else None,
    }
    params = {k: v for k, v in params.items() if v is not None}
    key = api_key or _local_dev_key()
    code = run_remix(url, key, params, output, console, as_json=as_json)
    raise typer.Exit(code)


UrlOpt = typer.Option("http://127.0.0.1:8000", "--url", envvar="OPENREMIX_BASE_URL",
                      help="Server base URL.")
KeyOpt = typer.Option("", "--api-key", envvar="OPENREMIX_API_KEY", help="API key.")
JsonOpt = typer.Option(False, "--json", help="Print the status body as JSON.")


@app.command()
def status(request_id: str, url: str = UrlOpt, api_key: str = KeyOpt,
           as_json: bool = JsonOpt) -> None:
    """Show a request's status (exit 1 when it FAILED)."""
    from openremix.remix_command import show_status

    raise typer.Exit(show_status(url, api_key or _local_dev_key(), request_id, console,
                                 as_json=as_json))


@app.command()
def cancel(request_id: str, url: str = UrlOpt, api_key: str = KeyOpt,
           as_json: bool = JsonOpt) -> None:
    """Cancel a queued or running request (its credits are refunded)."""
    from openremix.remix_command import cancel as cancel_request

    raise typer.Exit(cancel_request(url, api_key or _local_dev_key(), request_id, console,
                                    as_json=as_json))


def _local_dev_key() -> str:
    path = Path(os.environ.get("OPENREMIX_DATA_DIR", "openremix-data")) / DEV_KEY_FILE
    return path.read_text().strip() if path.is_file() else ""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
