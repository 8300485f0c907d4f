"""What the SDK hands back: `Status` of a job, its `Result`, the key's `Credits`.

Built from the server's JSON bodies (or, for a sync call, the image answer and its headers);
`raw` always keeps what the server sent. The waiting logic shared by `Job` and `AsyncJob`
(`Waiter`) lives here too, free of I/O.
"""

from __future__ import annotations

import base64
import builtins
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from openremix.client._errors import InferenceFailed, InferenceTimeout, json_body
from openremix.contract.request import RemixRequest

if TYPE_CHECKING:
    from PIL import Image as PILImage

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED"})
_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
_MIME_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_SSE_STATES = {"queued": "QUEUED", "processing": "PROCESSING", "completed": "COMPLETED",
               "failed": "FAILED"}


@dataclass(frozen=True)
class Progress:
    """Denoising progress of a PROCESSING job: `step` of `total`."""

    step: int
    total: int

    @property
    def fraction(self) -> float:
        """step / total, from 0.0 to 1.0."""
        return self.step / self.total if self.total else 0.0


@dataclass(frozen=True)
class Status:
    """Where a job stands. `state` is QUEUED, PROCESSING, COMPLETED or FAILED;
    `queue_position` (QUEUED) and `progress` (PROCESSING) are openremix extensions, None from
    servers that do not send them; `error` says why a FAILED job failed."""

    request_id: str
    state: str
    queue_position: int | None = None
    progress: Progress | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def done(self) -> bool:
        """True once the job is COMPLETED or FAILED."""
        return self.state in TERMINAL_STATES

    @classmethod
    def from_body(cls, body: dict[str, Any], request_id: str = "", event: str = "") -> Status:
        """From a status/result body, a cancel answer, or the data of an SSE event."""
        state = str(body.get("status") or _SSE_STATES.get(event, "") or "UNKNOWN").upper()
        progress = body.get("progress")
        if not isinstance(progress, dict):  # SSE `processing` events carry step/total flat
            progress = body if "total" in body else {}
        step, total = progress.get("step"), progress.get("total")
        position = body.get("queue_position")
        return cls(
            request_id=str(body.get("request_id") or request_id),
            state=state,
            queue_position=position if isinstance(position, int) else None,
            progress=Progress(int(step), int(total))
            if isinstance(step, int) and isinstance(total, int) and total else None,
            error=body.get("error") if state == "FAILED" else None,
            raw=body,
        )


ProgressCallback = Callable[[Status], object]
"""Called with each new `Status` while waiting."""


def failure(status: Status) -> InferenceFailed:
    """The error for a FAILED status."""
    return InferenceFailed(status.error or "failed", status=422,
                           request_id=status.request_id, body=status.raw)


Downloader = Callable[[str], bytes]
"""Fetches an output URL's bytes (the client's transport)."""


@dataclass
class Result:
    """A finished remix. `output_url` is where the image lives (None for a sync call, whose
    answer was the image itself); `bytes` holds the image, fetched from `output_url` on first use.
    `prompt` is the prompt actually used (after magic prompt); sync calls do not return it."""

    request_id: str
    seed: int | None
    prompt: str | None
    resolution: str | None
    style_type: str | None
    is_image_safe: bool
    metrics: dict[str, Any]
    warnings: list[str]
    output_url: str | None
    content_type: str
    raw: dict[str, Any] = field(repr=False)
    _content: builtins.bytes | None = field(default=None, repr=False)
    _download: Downloader | None = field(default=None, repr=False)

    @property
    def bytes(self) -> builtins.bytes:
        """The encoded image (JPEG unless `output_format` asked otherwise)."""
        if self._content is None:
            if self._download is None or self.output_url is None:
                raise RuntimeError("this result has no image to download")
            self._content = self._download(self.output_url)
        return self._content

    @property
    def image(self) -> PILImage.Image:
        """The image decoded with Pillow."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.bytes))
        image.load()
        return image

    def save(self, path: str | Path) -> Path:
        """Write the image to `path`; re-encoded when the suffix names another format."""
        target = Path(path)
        wanted = _FORMATS.get(target.suffix.lower())
        if wanted is None or wanted == _MIME_FORMATS.get(self.content_type):
            target.write_bytes(self.bytes)
            return target
        image = self.image
        if wanted == "JPEG" and image.mode != "RGB":
            image = image.convert("RGB")
        image.save(target, format=wanted)
        return target

    @classmethod
    def from_body(cls, body: dict[str, Any], download: Downloader | None) -> Result:
        """From a COMPLETED `GET /v2/requests/{id}` body."""
        images = body.get("images") or [{}]
        first = images[0] if isinstance(images[0], dict) else {}
        return cls(
            request_id=str(body.get("request_id", "")),
            seed=body.get("seed"),
            prompt=body.get("prompt"),
            resolution=body.get("resolution"),
            style_type=body.get("style_type"),
            is_image_safe=bool(body.get("is_image_safe", True)),
            metrics=dict(body.get("metrics") or {}),
            warnings=list(body.get("warnings") or []),
            output_url=body.get("output") or first.get("url"),
            content_type=first.get("content_type", "image/jpeg"),
            raw=body,
            _download=download,
        )

    @classmethod
    def from_sync_response(
        cls, response: httpx.Response, request: RemixRequest | None, sent: dict[str, Any]
    ) -> Result:
        """From a `POST /v1` answer: the image bytes (or the `base64: true` JSON) and headers."""
        headers = response.headers
        content_type = headers.get("content-type", "image/jpeg").split(";")[0].strip()
        content, prompt = response.content, None
        if content_type == "application/json":
            body = json_body(response)
            content = base64.b64decode(body.get("image", ""))
            content_type, prompt = body.get("content_type") or "image/jpeg", body.get("prompt")
        seed = headers.get("x-seed-value", "")
        raw = {
            "request_id": headers.get("x-request-id"),
            "seed": int(seed) if seed.isdigit() else None,
            "generation_time": _float(headers.get("x-generation-time")),
            "cost": _float(headers.get("x-cost")),
            "remaining_credits": _float(headers.get("x-remaining-credits")),
        }
        return cls(
            request_id=str(raw["request_id"] or ""),
            seed=raw["seed"],
            prompt=prompt,
            resolution=request.resolution if request else sent.get("resolution"),
            style_type=request.style_type if request else sent.get("style_type"),
            is_image_safe=True,
            metrics={"inference_time": raw["generation_time"], "cost": raw["cost"]},
            warnings=[],
            output_url=None,
            content_type=content_type,
            raw=raw,
            _content=content,
        )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Credits:
    """The calling key's balance (`GET /v1/get-user-credits`)."""

    credits: float
    free_credits: float
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> float:
        """credits + free_credits."""
        return self.credits + self.free_credits

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Credits:
        return cls(float(body.get("credits") or 0.0), float(body.get("free-credits") or 0.0),
                   body)


class Waiter:
    """The rules of `Job.wait`: report each new status, stop at a terminal one, give up at the
    deadline. The sync and async loops only fetch, call `observe`, and sleep `pause()`."""

    def __init__(self, request_id: str, timeout: float, interval: float,
                 on_progress: Callable[[Status], object] | None) -> None:
        self.request_id = request_id
        self.timeout = timeout
        self.interval = interval
        self.on_progress = on_progress
        self.deadline = time.monotonic() + timeout
        self._last: Status | None = None

    def observe(self, status: Status) -> bool:
        """Report `status` if new; True when COMPLETED, InferenceFailed when FAILED,
        InferenceTimeout when the deadline passed."""
        if self.on_progress is not None and status != self._last:
            self.on_progress(status)
        self._last = status
        if status.state == "COMPLETED":
            return True
        if status.state == "FAILED":
            raise failure(status)
        if time.monotonic() >= self.deadline:
            raise InferenceTimeout(
                f"not finished after {self.timeout:g} s (last status {status.state}); "
                "it goes on: wait again or cancel it",
                request_id=self.request_id, body=status.raw,
            )
        return False

    def pause(self) -> float:
        """Seconds to sleep before the next poll (never past the deadline)."""
        return max(0.0, min(self.interval, self.deadline - time.monotonic()))
