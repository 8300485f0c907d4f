"""A stand-in engine for load runs: resizes the input, so the run measures the API and queue.

Named as what it is: a test double, selected with
`OPENREMIX_ENGINE=tests.support.noop_engine:ResizeEngine`. `SteppedResizeEngine` does the same
in steps of a known length (`STEPPED_ENGINE_STEPS` steps of `STEPPED_ENGINE_SECONDS` each), so
a test can hold what a server says about time against the truth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineInput, EngineOutput, StepCallback


class ResizeEngine:
    name = "resize"
    supports_batching = True

    def load(self) -> None:
        pass

    def batch_key(self, params: RemixRequest) -> tuple[Any, ...]:
        return (params.resolution,)

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        on_step(1, 1)
        return [EngineOutput(i.image.resize(i.params.size), i.params.prompt, i.params.seed or 0)
                for i in inputs]


class SteppedResizeEngine(ResizeEngine):
    name = "stepped-resize"
    supports_batching = False

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        steps = int(os.environ.get("STEPPED_ENGINE_STEPS", "5"))
        seconds = float(os.environ.get("STEPPED_ENGINE_SECONDS", "0.5"))
        for step in range(1, steps + 1):
            time.sleep(seconds)
            on_step(step, steps)
        return [EngineOutput(i.image.resize(i.params.size), i.params.prompt, i.params.seed or 0)
                for i in inputs]
