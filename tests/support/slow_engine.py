"""A test engine: the real StyleEngine, slowed between steps so a fault test can act mid-job.

Named as a test double: it exists so a SIGKILL lands while a job is PROCESSING. Selected with
`OPENREMIX_ENGINE=tests.support.slow_engine:SlowStyleEngine` (the test servers put the
repository root on PYTHONPATH).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from openremix.engine.base import EngineInput, EngineOutput, StepCallback
from openremix.engine.style.engine import StyleEngine


class SlowStyleEngine(StyleEngine):
    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        delay = float(os.environ.get("SLOW_ENGINE_STEP_SECONDS", "0.5"))

        def slow_step(step: int, total: int) -> None:
            time.sleep(delay)
            on_step(step, total)

        return super().remix(inputs, slow_step)
