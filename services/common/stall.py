"""A stall watchdog for stream workers: input waiting, and nothing processed for too long.

faust's consumer can rejoin its group after a broker outage and then never fetch again (faust-streaming/faust
#175, #523, open). Nothing inside the process notices; the lag only grows. The worker's /healthz reports the
stall so that the orchestrator's liveness probe restarts it, which recovers (tables come back from their
changelogs, offsets from the group).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["StallWatch"]


class StallWatch:
    def __init__(self, limit_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_seconds = limit_seconds
        self._clock = clock
        self._last = clock()

    def progressed(self) -> None:
        """An input message was processed."""
        self._last = self._clock()

    def stalled(self, lag: int) -> float | None:
        """Seconds without progress while `lag` messages wait, when over the limit; else None.

        No lag counts as progress: an idle worker with nothing to read is healthy. A limit of 0 disables it.
        """
        now = self._clock()
        if lag <= 0:
            self._last = now
            return None
        idle = now - self._last
        return idle if self.limit_seconds > 0 and idle > self.limit_seconds else None
