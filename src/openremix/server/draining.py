"""`DrainingServer`: uvicorn, telling the app when its shutdown begins.

uvicorn's graceful shutdown stops accepting connections, then waits (10 s here) for the open
ones to end before it cuts them off. An event stream or a sync call waiting for its job would
hold that wait to its end and then see a reset. Told at the first SIGTERM or Ctrl-C
(`AppState.begin_drain`), they end on their own: event streams close (clients resume on
another replica with Last-Event-ID) and sync calls answer 503 with their poll URL.
"""

from __future__ import annotations

from types import FrameType

import uvicorn

from openremix.api.state import AppState


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self.app_state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.app_state.begin_drain()
        super().handle_exit(sig, frame)
