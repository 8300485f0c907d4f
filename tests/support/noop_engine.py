"""A stand-in engine for load runs: resizes the input, so the run measures the API and queue.

Named as what it is: a test double, selected with
`OPENREMIX_ENGINE=tests.support.noop_engine:ResizeEngine`.
"""

from __future__ import annotations

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
