"""The `openremix` command: its options, sub-commands and exit codes (the work is done by
`server.processes`, `cli.admin` and `cli.remix`)."""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from openremix.config import Settings

app = typer.Typer(help="openremix: a self-hosted image remix API.", no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)

HostOpt = typer.Option(None, "--host", help="Bind address [env OPENREMIX_HOST, default 127.0.0.1]")
PortOpt = typer.Option(None, "--port", help="Port [env OPENREMIX_PORT, default 8000]")
DataOpt = typer.Option(
    None, "--data-dir", help="Data folder [env OPENREMIX_DATA_DIR, default ./openremix-data]"
)


def settings_for(host: str | None = None, port: int | None = None,
                 data_dir: Path | None = None) -> Settings:
    """`Settings` from the environment, with the command line's options on top."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**overrides)


def _start(run: Any, *args: Any) -> None:
    """Run a `server.processes` entry point; its start-up problem becomes one line + exit code."""
    from openremix.server.processes import StartupError

    try:
        run(*args)
    except StartupError as exc:
        console.print(f"error: {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None


@app.command()
def serve(host: str | None = HostOpt, port: int | None = PortOpt,
          data_dir: Path | None = DataOpt) -> None:
    """API and worker in one process, on the embedded defaults (SQLite + local outputs)."""
    from openremix.server import processes

    _start(processes.serve, settings_for(host, port, data_dir))


@app.command("api")
def api_command(host: str | None = HostOpt, port: int | None = PortOpt,
                data_dir: Path | None = DataOpt) -> None:
    """Only the HTTP API (run `openremix worker` processes beside it)."""
    from openremix.server import processes

    _start(processes.api, settings_for(host, port, data_dir))


@app.command()
def worker(
    data_dir: Path | None = DataOpt,
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve this worker's Prometheus metrics on this port."
    ),
) -> None:
    """One worker process: claims jobs and runs the engine until SIGTERM/SIGINT."""
    from openremix.server import processes

    _start(processes.worker, settings_for(data_dir=data_dir), metrics_port)


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
    from openremix.cli.remix import run_remix

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
    from openremix.cli.remix import show_status

    raise typer.Exit(show_status(url, api_key or _local_dev_key(), request_id, console,
                                 as_json=as_json))


@app.command()
def cancel(request_id: str, url: str = UrlOpt, api_key: str = KeyOpt,
           as_json: bool = JsonOpt) -> None:
    """Cancel a queued or running request (its credits are refunded)."""
    from openremix.cli.remix import cancel as cancel_request

    raise typer.Exit(cancel_request(url, api_key or _local_dev_key(), request_id, console,
                                    as_json=as_json))


def _local_dev_key() -> str:
    path = Settings().dev_key_path
    return path.read_text().strip() if path.is_file() else ""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
