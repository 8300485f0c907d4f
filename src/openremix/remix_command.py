"""`openremix remix`: submit to a running server, show progress, save the image.

Exit codes: 0 saved; 1 the job FAILED; 2 bad request (400/404/406/409/413); 3 auth (401/403);
4 server unreachable, timeout or 5xx; 5 rate limited.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

MODEL = "ideogram-3-remix"


def _exit_code_for(status: int) -> int:
    if status in (401, 403):
        return 3
    if status == 429:
        return 5
    if status >= 500:
        return 4
    return 2


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)


def run_remix(base_url: str, api_key: str, params: dict[str, Any], output: Path,
              console: Console, timeout: float = 600.0) -> int:
    headers = {"x-api-key": api_key} if api_key else {}
    base = base_url.rstrip("/")
    try:
        with httpx.Client(headers=headers, timeout=httpx.Timeout(30.0, connect=5.0)) as http:
            submitted = http.post(f"{base}/v2/{MODEL}", json=params)
            if submitted.status_code != 200:
                console.print(f"error: HTTP {submitted.status_code}: {_error_text(submitted)}")
                return _exit_code_for(submitted.status_code)
            job = submitted.json()
            body = _wait(http, job, console, timeout)
            if body is None:
                console.print(f"error: {job['request_id']} did not finish in {timeout:g} s")
                return 4
            if body.get("status") == "FAILED":
                console.print(f"error: remix failed: {body.get('error')} "
                              f"(request {job['request_id']})")
                return 1
            result = http.get(job["response_url"]).json()
            image = http.get(result["output"])
            image.raise_for_status()
            output.write_bytes(image.content)
    except httpx.HTTPError as exc:
        console.print(f"error: cannot reach {base}: {exc}")
        return 4
    console.print(f"saved {output} (seed {result.get('seed')}, "
                  f"{result['metrics'].get('inference_time', 0):.2f} s, "
                  f"request {job['request_id']})")
    return 0


def _wait(http: httpx.Client, job: dict[str, Any], console: Console,
          timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("queued", total=None)
        while time.monotonic() < deadline:
            body = http.get(job["status_url"]).json()
            state = body.get("status")
            if state in ("COMPLETED", "FAILED"):
                return body
            step = body.get("progress") or {}
            if state == "QUEUED":
                where = body.get("queue_position")
                text = "queued" if where is None else f"queued ({where} ahead)"
                progress.update(task, description=text)
            elif step.get("total"):
                progress.update(task, description="remixing", total=step["total"],
                                completed=step["step"])
            else:
                progress.update(task, description="remixing")
            time.sleep(0.25)
    return None
