"""Time left in a running job, measured from the step changes an event stream watches.

The store records only the latest `progress_step`/`progress_total` (no timestamps), and the
event stream polls it every `POLL_SECONDS`: it sees each step change within one poll of the
moment the worker recorded it. So the stream measures the steps itself:

- a step value already there when watching began tells nothing about when it started, so the
  first *change* seen is the anchor, and the measured time per step is the time between the
  anchor and the latest change over the steps between them (the setup before the first step
  and the decode after the last are never mistaken for steps);
- until two changes are seen there is no measurement, and the ETA is None (no guesses);
- between changes it counts down with the clock (`seconds_left(now)`), so the stream can
  refresh it and a page never freezes on one number; a step slower than measured holds the ETA
  at the steps after it (never 0 while steps remain);
- once the last step is done the ETA is None again: what is left (decoding, storing) was
  never measured.
A job that goes back (re-queued after a lost worker) starts the measurement over.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Seen:
    step: int
    at: float


class StepTimer:
    """Measures one job's step times from the progress an event stream observes."""

    def __init__(self) -> None:
        self._step: int | None = None
        """The step value last observed (None before the first observation)."""
        self._total = 0
        self._anchor: _Seen | None = None
        self._latest: _Seen | None = None

    def observe(self, step: int, total: int, now: float) -> None:
        """The progress the stream read at `now` (monotonic seconds)."""
        self._total = total
        if self._step is None or step == self._step:
            self._step = step
            return
        if step < self._step:  # the job started over: earlier timings say nothing
            self._step, self._anchor, self._latest = step, None, None
            return
        self._step = step
        seen = _Seen(step, now)
        if self._anchor is None:
            self._anchor = seen
        self._latest = seen

    @property
    def seconds_per_step(self) -> float | None:
        """The measured mean step time, or None before two step changes were seen."""
        anchor, latest = self._anchor, self._latest
        if anchor is None or latest is None or latest.step <= anchor.step:
            return None
        return (latest.at - anchor.at) / (latest.step - anchor.step)

    def seconds_left(self, now: float) -> float | None:
        """Seconds until the last step is done, counting down from the latest change; None
        before it can be measured and once no step is left."""
        per_step = self.seconds_per_step
        if per_step is None or self._latest is None or self._step is None:
            return None
        steps_left = self._total - self._step
        if steps_left <= 0:
            return None
        since = max(0.0, now - self._latest.at)
        # A late step: hold at the steps after it, plus a sliver so the ETA never reads 0.
        floor = (steps_left - 1) * per_step + min(per_step, 0.1) * 0.5
        return max(steps_left * per_step - since, floor)
