"""Engine inputs and outputs for engine tests: a validated request around a real photo, a
progress callback that does nothing, and an output's pixels as floats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.base import Engine, EngineInput, EngineOutput
from tests.support.images import photo as sample_photo


def photo(name: str = "astronaut") -> Image.Image:
    """A scikit-image photo at its own size (engines crop and scale it themselves)."""
    return sample_photo(name, size=None)


def params(**kw: Any) -> RemixRequest:
    """A valid request: a cat prompt, seed 7, TURBO, no magic prompt; `kw` overrides."""
    values: dict[str, Any] = {"image": "x", "prompt": "a photo of a cat", "seed": 7,
                              "rendering_speed": "TURBO", "magic_prompt": "OFF"}
    values.update(kw)
    return RemixRequest.model_validate(values)


def item(image: Image.Image | None = None, refs: list[Image.Image] | None = None,
         **kw: Any) -> EngineInput:
    return EngineInput("req", params(**kw), image or photo(), refs or [])


def no_op(step: int, total: int) -> None:
    pass


def remix(engine: Engine, on_step: Callable[[int, int], None] = no_op,
          **kw: Any) -> EngineOutput:
    """One job through `engine.remix`; `kw` are request fields (and `image`, `refs`)."""
    return engine.remix([item(**kw)], on_step)[0]


def pixels(out: EngineOutput) -> np.ndarray:
    assert out.image is not None
    return np.asarray(out.image, dtype=np.float32) / 255.0
