"""`openremix remix | status | cancel`: the CLI's client side, built on `openremix.client`.

Exit codes (documented in the README): 0 done; 1 the job FAILED; 2 bad request (400, 404, 406,
409, 413, or a local validation error); 3 authentication (401, 403); 4 server unreachable,
timeout or 5xx; 5 rate limited (after the SDK's retries); 130 interrupted (Ctrl-C; the request is
cancelled).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from openremix.client import (
    APIError,
    AuthenticationError,
    Client,
    Conflict,
    InferenceFailed,
    InferenceTimeout,
    Job,
    OpenRemixError,
    RateLimited,
    Result,
    ServerError,
    Status,
)
from openremix.client import ConnectionError as ClientConnectionError

EXIT_OK, EXIT_FAILED, EXIT_BAD_REQUEST, EXIT_AUTH, EXIT_UNAVAILABLE, EXIT_RATE_LIMITED = range(6)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def exit_code_for(error: OpenRemixError) -> int:
    if isinstance(error, InferenceFailed):
        return EXIT_FAILED
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH
    if isinstance(error, RateLimited):
        return EXIT_RATE_LIMITED
    if isinstance(error, (ServerError, InferenceTimeout, ClientConnectionError)):
        return EXIT_UNAVAILABLE
    return EXIT_BAD_REQUEST


def _describe(error: OpenRemixError, base_url: str) -> str:
    if isinstance(error, ClientConnectionError):
        return f"cannot reach {base_url}: {error}"
    if isinstance(error, InferenceFailed):
        return f"remix failed: {error.error} (request {error.request_id})"
    if isinstance(error, APIError) and error.status is not None:
        return f"HTTP {error.status}: {error.error}"
    return str(error)


def _emit_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _status_line(status: Status) -> str:
    if status.state == "QUEUED":
        where = status.queue_position
        return "queued" if where is None else f"queued ({where} ahead)"
    if status.progress:
        return f"remixing (step {status.progress.step}/{status.progress.total})"
    return status.state.lower()


def run_remix(base_url: str, api_key: str, params: dict[str, Any], output: Path,
              console: Console, *, as_json: bool = False, timeout: float = 600.0) -> int:
    """Submit, follow with a progress bar, save the image. Returns the exit code; Ctrl-C
    cancels the submitted request (130)."""
    image, prompt = params.pop("image"), params.pop("prompt")
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    job: Job | None = None
    result: Result | None = None
    try:
        with Client(api_key=api_key or None, base_url=base_url) as client, Progress(
            *columns, console=console, transient=True, disable=as_json
        ) as progress:
            task = progress.add_task("submitting", total=None)

            def on_progress(status: Status) -> None:
                total = status.progress.total if status.progress else None
                done = status.progress.step if status.progress else 0
                progress.update(task, description=_status_line(status), total=total,
                                completed=done)

            job = client.submit(image, prompt, **params)
            result = job.wait(timeout=timeout, on_progress=on_progress)
            result.save(output)
    except KeyboardInterrupt:
        return _interrupted(base_url, api_key, job, console)
    except OpenRemixError as error:
        console.print(f"error: {_describe(error, base_url)}")
        return exit_code_for(error)
    except OSError as error:  # checked before submitting, but a disk can fill meanwhile
        kept = f"; the image stays at {result.output_url} for a while" if result else ""
        console.print(f"error: cannot save {output}: {error.strerror or error}{kept}")
        return EXIT_BAD_REQUEST
    assert result is not None
    if as_json:
        _emit_json({**result.raw, "saved_to": str(output)})
    else:
        seconds = (result.metrics or {}).get("inference_time", 0.0)
        console.print(f"saved {output} (seed {result.seed}, {seconds:.2f} s, "
                      f"request {result.request_id})")
    return EXIT_OK


def _interrupted(base_url: str, api_key: str, job: Job | None, console: Console) -> int:
    """Ctrl-C: cancel the request that was submitted, or say how to."""
    if job is None:
        console.print("interrupted before the request was accepted")
        return EXIT_INTERRUPTED
    try:
        with Client(api_key=api_key or None, base_url=base_url, timeout=10.0,
                    max_retries=0) as client:
            client.job(job.request_id).cancel()
    except Conflict:
        console.print(f"interrupted: request {job.request_id} had already completed; "
                      f"`openremix status {job.request_id}` shows it")
    except OpenRemixError as error:
        console.print(f"interrupted: request {job.request_id} goes on (cancelling failed: "
                      f"{_describe(error, base_url)}); cancel it with "
                      f"`openremix cancel {job.request_id}`")
    else:
        console.print(f"interrupted: cancelled request {job.request_id} (its credits are "
                      "refunded)")
    return EXIT_INTERRUPTED


def _job_call(base_url: str, api_key: str, request_id: str, console: Console,
              action: Callable[[Job], Status]) -> Status | int:
    """Run one call on a request's `Job`; an exit code instead when it fails."""
    try:
        with Client(api_key=api_key or None, base_url=base_url) as client:
            return action(client.job(request_id))
    except OpenRemixError as error:
        console.print(f"error: {_describe(error, base_url)}")
        return exit_code_for(error)


def show_status(base_url: str, api_key: str, request_id: str, console: Console, *,
                as_json: bool = False) -> int:
    status = _job_call(base_url, api_key, request_id, console, lambda job: job.status())
    if isinstance(status, int):
        return status
    if as_json:
        _emit_json(status.raw)
    else:
        line = f"{request_id}: {_status_line(status)}"
        print(line + (f": {status.error}" if status.error else ""))
    return EXIT_FAILED if status.state == "FAILED" else EXIT_OK


def cancel(base_url: str, api_key: str, request_id: str, console: Console, *,
           as_json: bool = False) -> int:
    status = _job_call(base_url, api_key, request_id, console, lambda job: job.cancel())
    if isinstance(status, int):
        return status
    if as_json:
        _emit_json(status.raw)
    else:
        print(f"{request_id}: cancelled")
    return EXIT_OK
