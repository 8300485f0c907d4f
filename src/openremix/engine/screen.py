"""`ScreenedEngine`: any engine, with every input and output image screened for safety.

The screen wraps the engine, so neither the worker nor the wires learn a new concept: a blocked
image comes back from `remix` the way a blocked prompt does (`engine.safety`), as
`EngineOutput(image=None, is_image_safe=False, error=<a content-policy sentence>)`, which the
worker turns into a FAILED job with its credits refunded.

Order, per batch:
1. the prompt word list stays the first gate: a job whose prompt the inner engine will refuse
   is not scored (the inner engine answers it, without running a model);
2. the input image and the style reference images of every other job are scored in one batch;
   a job with a blocked image gets the blocked output and costs no inference, while the other
   jobs of the batch still run;
3. the inner engine runs the jobs left;
4. every output image is scored; a blocked one is dropped here, so it is never encoded or
   stored anywhere a URL could reach.

Live previews (engines with `supports_previews`) are screened like outputs: each preview is
scored before it is passed on, an unsafe one is dropped, and the previews keep the indexes of
the caller's batch although blocked jobs never reach the inner engine.

A threshold of 0 blocks every image (the score is never below 0), which tests use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.base import (
    Engine,
    EngineInput,
    EngineOutput,
    PreviewCallback,
    StepCallback,
)
from openremix.engine.safety import DEFAULT_BLOCKLIST, blocked_term

log = logging.getLogger(__name__)

INPUT_BLOCKED = "the input image was blocked by the content filter (unsafe content)"
REFERENCE_BLOCKED = "a style reference image was blocked by the content filter (unsafe content)"
OUTPUT_BLOCKED = "the generated image was blocked by the content filter (unsafe content)"


class ImageScorer(Protocol):
    """What the screen needs from a classifier (`image_safety.NsfwClassifier`)."""

    def load(self) -> None: ...

    def scores(self, images: Sequence[Image.Image]) -> list[float]: ...


BlockedCallback = Callable[[str], None]
"""`on_blocked(where)`: called once for each job an image blocks, `where` is `input` (its input
or a style reference) or `output` (the server counts them in a metric; the engine layer imports
no metrics)."""


class ScreenedEngine:
    """Wraps `inner`: images scoring at or above `threshold` are blocked (see the module)."""

    def __init__(self, inner: Engine, scorer: ImageScorer, threshold: float,
                 on_blocked: BlockedCallback | None = None) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"image safety threshold must be within 0..1, not {threshold}")
        self.inner = inner
        self.scorer = scorer
        self.threshold = threshold
        self.on_blocked = on_blocked or (lambda where: None)

    # The worker reads these from its engine; anything else is the inner engine's own.
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def supports_batching(self) -> bool:
        return bool(getattr(self.inner, "supports_batching", False))

    @property
    def supports_previews(self) -> bool:
        return bool(getattr(self.inner, "supports_previews", False))

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "inner":  # not set yet (during unpickling or a failed __init__)
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def load(self) -> None:
        """Load the inner engine, then the classifier."""
        self.inner.load()
        self.scorer.load()

    def batch_key(self, params: RemixRequest) -> tuple[Any, ...]:
        return self.inner.batch_key(params)

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback,
              on_preview: PreviewCallback | None = None) -> list[EngineOutput]:
        blocked = self._screen_inputs(inputs)
        positions = [index for index in range(len(inputs)) if index not in blocked]
        to_run = [inputs[index] for index in positions]
        extra: dict[str, Any] = {}
        if on_preview is not None and self.supports_previews:
            extra["on_preview"] = _ScreenedPreviews(self, on_preview, positions)
        ran = iter(self.inner.remix(to_run, on_step, **extra) if to_run else [])
        outputs = [blocked[index] if index in blocked else next(ran)
                   for index in range(len(inputs))]
        return self._screen_outputs(inputs, outputs, blocked)

    # -- the two screens ------------------------------------------------------------------------

    def _screen_inputs(self, inputs: Sequence[EngineInput]) -> dict[int, EngineOutput]:
        """Blocked outputs by input index, for jobs whose input or reference image is unsafe."""
        blocklist = getattr(self.inner, "blocklist", DEFAULT_BLOCKLIST)
        owners: list[tuple[int, str]] = []  # (input index, INPUT_BLOCKED | REFERENCE_BLOCKED)
        images: list[Image.Image] = []
        for index, item in enumerate(inputs):
            if blocked_term(item.params.prompt, blocklist) is not None:
                continue  # the word list answers first, without scoring anything
            owners.append((index, INPUT_BLOCKED))
            images.append(item.image)
            owners.extend((index, REFERENCE_BLOCKED) for _ in item.style_images)
            images.extend(item.style_images)
        blocked: dict[int, EngineOutput] = {}
        for (index, error), score in zip(owners, self.scorer.scores(images), strict=True):
            if score < self.threshold or index in blocked:
                continue
            params = inputs[index].params
            log.info("image safety: %s (score %.3f >= %.3f)", error, score, self.threshold,
                     extra={"request_id": inputs[index].request_id})
            self.on_blocked("input")
            blocked[index] = EngineOutput(image=None, prompt=params.prompt,
                                          seed=int(params.seed or 0), is_image_safe=False,
                                          error=error)
        return blocked

    def _screen_outputs(self, inputs: Sequence[EngineInput], outputs: list[EngineOutput],
                        already: dict[int, EngineOutput]) -> list[EngineOutput]:
        """`outputs` with every unsafe image dropped (and marked unsafe)."""
        made = [index for index, output in enumerate(outputs)
                if index not in already and output.image is not None]
        scores = self.scorer.scores([outputs[index].image for index in made])  # type: ignore[misc]
        screened = list(outputs)
        for index, score in zip(made, scores, strict=True):
            if score < self.threshold:
                continue
            log.info("image safety: %s (score %.3f >= %.3f)", OUTPUT_BLOCKED, score,
                     self.threshold, extra={"request_id": inputs[index].request_id})
            self.on_blocked("output")
            screened[index] = replace(outputs[index], image=None, is_image_safe=False,
                                      error=OUTPUT_BLOCKED)
        return screened


class _ScreenedPreviews:
    """The inner engine's previews, screened, under the indexes of the caller's batch."""

    def __init__(self, screen: ScreenedEngine, outer: PreviewCallback,
                 positions: Sequence[int]) -> None:
        self.screen = screen
        self.outer = outer
        self.positions = list(positions)
        """The caller's index of each job the inner engine runs, in its order."""

    def due(self, step: int, total: int) -> bool:
        return self.outer.due(step, total)

    def __call__(self, step: int, total: int, images: Mapping[int, Image.Image]) -> None:
        indexed = [(self.positions[index], image) for index, image in images.items()
                   if 0 <= index < len(self.positions)]
        scores = self.screen.scorer.scores([image for _, image in indexed])
        safe = {index: image for (index, image), score in zip(indexed, scores, strict=True)
                if score < self.screen.threshold}
        if safe:
            self.outer(step, total, safe)
