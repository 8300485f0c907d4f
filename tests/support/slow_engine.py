"""A test engine: the real StyleEngine, slowed between steps so a fault test can act mid-job.

Named as a test double: it exists so a SIGKILL lands while a job is PROCESSING. Selected with
`OPENREMIX_ENGINE=tests.support.slow_engine:SlowStyleEngine` (the test servers put the
repository root on PYTHONPATH).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from openremix.engine.base import EngineInput, EngineOutput, StepCallback
from openremix.engine.style.engine import StyleEngine


class SlowStyleEngine(StyleEngine):
    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        delay = float(os.environ.get("SLOW_ENGINE_STEP_SECONDS", "0.5"))

        def slow_step(step: int, total: int) -> None:
            time.sleep(delay)
            on_step(step, total)

        return super().remix(inputs, slow_step)


def slow_diffusers_engine() -> Any:
    """The real `DiffusersEngine`, configured from the settings as `serve` configures it, slowed
    between denoising steps so a test can watch its live previews and ETAs arrive (a test
    double; `OPENREMIX_ENGINE=tests.support.slow_engine:slow_diffusers_engine`)."""
    from openremix.config import Settings
    from openremix.engine.diffusion.engine import DiffusersEngine
    from openremix.server.wiring import diffusers_options

    class SlowDiffusersEngine(DiffusersEngine):
        def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback,
                  on_preview: Any = None) -> list[EngineOutput]:
            delay = float(os.environ.get("SLOW_ENGINE_STEP_SECONDS", "0.5"))

            def slow_step(step: int, total: int) -> None:
                time.sleep(delay)
                on_step(step, total)

            return super().remix(inputs, slow_step, on_preview)

    return SlowDiffusersEngine(**diffusers_options(Settings()), threads=1)
