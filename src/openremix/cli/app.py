"""The `openremix` command: its options, sub-commands and exit codes (the work is done by
`server.processes`, `cli.admin` and `cli.remix`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from openremix import __version__
from openremix.cli.inputs import InputError, api_key_for, check_output_path, image_argument
from openremix.config import Settings

app = typer.Typer(help="openremix: a self-hosted image remix API.", no_args_is_help=True,
                  rich_markup_mode=None)
# Messages carry what users and servers wrote ("[/]", "openremix[diffusers]"): printed as
# they are, never read as rich markup.
console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)

HostOpt = typer.Option(None, "--host", help="Bind address [env OPENREMIX_HOST, default 127.0.0.1]")
PortOpt = typer.Option(None, "--port", help="Port [env OPENREMIX_PORT, default 8000]")
DataOpt = typer.Option(
    None, "--data-dir",
    help="Data folder [env OPENREMIX_DATA_DIR, default ~/.local/share/openremix]",
)


def _show_version(value: bool) -> None:
    if value:
        print(f"openremix {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """openremix: a self-hosted image remix API."""


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
    try:
        return Settings(**overrides)
    except ValidationError as exc:  # a bad OPENREMIX_* value: say which, not a traceback
        for error in exc.errors():
            name = "OPENREMIX_" + "_".join(str(part) for part in error["loc"]).upper()
            console.print(f"error: {name}={error.get('input')!r}: {error['msg']}")
        raise typer.Exit(2) from None


def _start(run: Any, *args: Any) -> None:
    """Run a `server.processes` entry point; its start-up problem becomes one line + exit code."""
    from openremix.server.processes import StartupError

    try:
        run(*args)
    except StartupError as exc:
        console.print(f"error: {exc}")
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


def _fail(error: InputError) -> NoReturn:
    console.print(f"error: {error}")
    raise typer.Exit(error.exit_code)


def _api_key(api_key: str, data_dir: Path | None) -> str:
    try:
        return api_key_for(api_key, settings_for(data_dir=data_dir))
    except InputError as error:
        _fail(error)


@app.command()
def remix(
    image: str = typer.Argument(..., help="Input image: a local file, an http(s) URL or a "
                                "data URI."),
    prompt: str = typer.Argument(..., help="What the remix should look like."),
    output: Path = typer.Option(Path("remix.jpg"), "-o", "--output",
                                help="Where to save; the suffix picks the format."),
    url: str = typer.Option("http://127.0.0.1:8000", "--url", envvar="OPENREMIX_BASE_URL",
                            help="Server base URL."),
    api_key: str = typer.Option("", "--api-key", envvar="OPENREMIX_API_KEY",
                                help="API key [default: the development key of the data "
                                "folder]."),
    seed: int | None = typer.Option(None, "--seed"),
    image_weight: int | None = typer.Option(None, "--image-weight", help="1..100."),
    resolution: str | None = typer.Option(None, "--resolution",
                                          help="WxH, one of `openremix sizes`."),
    aspect_ratio: str | None = typer.Option(None, "--aspect-ratio",
                                            help="WxH, one of `openremix sizes`."),
    speed: str | None = typer.Option(None, "--speed", help="TURBO, DEFAULT or QUALITY."),
    magic_prompt: str | None = typer.Option(None, "--magic-prompt", help="AUTO, ON or OFF."),
    style_type: str | None = typer.Option(
        None, "--style-type", help="AUTO, GENERAL, REALISTIC, DESIGN, FICTION or STYLIZED."),
    style_codes: list[str] | None = typer.Option(
        None, "--style-code", help="An 8-hex-digit style code (repeat for several)."),
    style_references: list[str] | None = typer.Option(
        None, "--style-ref", help="A style reference image: file or URL (repeat for several)."),
    palette: str | None = typer.Option(None, "--palette", help="A preset name, e.g. EMBER."),
    negative: str | None = typer.Option(None, "--negative", help="Negative prompt."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    data_dir: Path | None = DataOpt,
) -> None:
    """Send one remix to a running server, with a progress bar, and save the image.

    Ctrl-C cancels the request (its credits are refunded). Exit codes: 0 saved, 1 the job
    failed, 2 bad request, 3 auth, 4 unreachable/timeout/5xx, 5 rate limited, 130 interrupted.
    """
    from openremix.cli.remix import run_remix

    try:
        check_output_path(output)
        params: dict[str, Any] = {
            "image": image_argument(image), "prompt": prompt, "seed": seed,
            "image_weight": image_weight, "resolution": resolution,
            "aspect_ratio": aspect_ratio, "rendering_speed": speed,
            "magic_prompt": magic_prompt, "style_type": style_type,
            "style_codes": style_codes or None,
            "style_reference_images": [image_argument(ref) for ref in style_references or ()]
            or None,
            "negative_prompt": negative,
            "color_palette": {"name": palette} if palette else None,
        }
    except InputError as error:
        _fail(error)
    params = {k: v for k, v in params.items() if v is not None}
    key = _api_key(api_key, data_dir)
    code = run_remix(url, key, params, output, console, as_json=as_json)
    raise typer.Exit(code)


@app.command()
def sizes(as_json: bool = typer.Option(False, "--json", help="Print them as JSON.")) -> None:
    """List the output resolutions and the aspect ratios (and the resolution each picks)."""
    from openremix.contract.params import ASPECT_RATIOS, RESOLUTIONS

    if as_json:
        print(json.dumps({"resolutions": list(RESOLUTIONS), "aspect_ratios": ASPECT_RATIOS},
                         indent=2))
        return
    print(f"resolutions ({len(RESOLUTIONS)}, --resolution):")
    for start in range(0, len(RESOLUTIONS), 8):
        print("  " + "  ".join(f"{r:<9}" for r in RESOLUTIONS[start:start + 8]).rstrip())
    print(f"aspect ratios ({len(ASPECT_RATIOS)}, --aspect-ratio):")
    for name, size in ASPECT_RATIOS.items():
        print(f"  {name:<5} -> {size}")


UrlOpt = typer.Option("http://127.0.0.1:8000", "--url", envvar="OPENREMIX_BASE_URL",
                      help="Server base URL.")
KeyOpt = typer.Option("", "--api-key", envvar="OPENREMIX_API_KEY", help="API key.")
JsonOpt = typer.Option(False, "--json", help="Print the status body as JSON.")


@app.command()
def status(request_id: str, url: str = UrlOpt, api_key: str = KeyOpt,
           as_json: bool = JsonOpt, data_dir: Path | None = DataOpt) -> None:
    """Show a request's status (exit 1 when it FAILED)."""
    from openremix.cli.remix import show_status

    raise typer.Exit(show_status(url, _api_key(api_key, data_dir), request_id, console,
                                 as_json=as_json))


@app.command()
def cancel(request_id: str, url: str = UrlOpt, api_key: str = KeyOpt,
           as_json: bool = JsonOpt, data_dir: Path | None = DataOpt) -> None:
    """Cancel a queued or running request (its credits are refunded)."""
    from openremix.cli.remix import cancel as cancel_request

    raise typer.Exit(cancel_request(url, _api_key(api_key, data_dir), request_id, console,
                                    as_json=as_json))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
