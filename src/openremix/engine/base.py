"""The `Engine` protocol: what a worker needs from a model, and nothing about HTTP or queues.

An engine is loaded once per worker process (`load`), then `remix` is called with a batch of
compatible jobs. It reports progress through `on_step`, which raises `JobCancelled` when the
job was cancelled or its lease was lost: engines let that propagate and stop between steps.

Live previews are optional: an engine that can show a cheap, low-resolution look at its work
in progress sets `supports_previews = True` and accepts `remix(..., on_preview=...)`, a
`PreviewCallback` it asks before each preview (`due`) so the cost is paid only when someone
will see one. The worker passes it only to such engines; other engines and callers need not
know it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from openremix.contract.request import RemixRequest


class JobCancelled(Exception):
    """Raised by the progress callback: stop working on this batch now."""


class EngineError(Exception):
    """The engine could not run a job; the message is shown to the user as the job's error."""


StepCallback = Callable[[int, int], None]
"""`on_step(step, total)`: called after each step of the batch. May raise `JobCancelled`."""


class PreviewCallback(Protocol):
    """Where an engine sends live previews of a batch (see the module docstring)."""

    def due(self, step: int, total: int) -> bool:
        """Whether a preview of the step just finished is wanted now (the engine makes one
        only then: decoding costs time)."""
        ...

    def __call__(self, step: int, total: int, images: Mapping[int, Image.Image]) -> None:
        """Previews of step `step` of `total` (as reported to `on_step`), by the index of
        their input in the batch; any size (they are shrunk to a thumbnail when stored)."""
        ...


@dataclass
class EngineInput:
    request_id: str
    params: RemixRequest
    """Validated request; `params.seed` is always set (the API picks one when absent)."""
    image: Image.Image
    """The decoded input image, RGB, not yet cropped (engines crop to `params.size`'s aspect)."""
    style_images: list[Image.Image] = field(default_factory=list)
    """Decoded `style_reference_images`, RGB, in the order given."""


@dataclass
class EngineOutput:
    image: Image.Image | None
    """RGB image of exactly `params.size`; None when blocked (then `error` says why)."""
    prompt: str
    """The prompt actually used (after magic prompt)."""
    seed: int
    is_image_safe: bool = True
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    """Engine-specific facts returned in the result (e.g. `style_codes` applied, styles)."""


class Engine(Protocol):
    name: str
    """Short engine name reported in results (`style`, `diffusers`)."""

    def load(self) -> None:
        """Load weights; called once before the first `remix`. May take long."""
        ...

    def batch_key(self, params: RemixRequest) -> tuple[Any, ...]:
        """Jobs with equal keys may run in one `remix` call."""
        ...

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        """Run a batch; one output per input, same order. Same seed + inputs -> same bytes."""
        ...
