"""Errors and typed outcomes of the scoring service."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.common.exceptions import YuqingError

__all__ = ["BadSeries", "FutureEvent", "LateEvent"]


class LateEvent(YuqingError):
    """A hit older than every window it could still count in; a typed outcome, dead-lettered as late_event."""

    def __init__(self, lateness: timedelta, allowed: timedelta) -> None:
        super().__init__(
            f"event is {_minutes(lateness)} behind the group's newest; only observations within the longest "
            f"window plus tiers.grace_minutes ({_minutes(allowed)}) count"
        )
        self.lateness = lateness
        self.allowed = allowed


class FutureEvent(YuqingError):
    """An observation dated ahead of the worker's clock by more than the allowed skew; dead-lettered as
    future_event. Counted, it would become its group's newest time, and every real observation after it would
    be "late" and dropped until the wall clock caught up with it (for a year-9999 time: never)."""

    def __init__(self, at: datetime, now: datetime, allowed: timedelta) -> None:
        super().__init__(
            f"event_time {at.isoformat()} is ahead of this worker's clock ({now.isoformat()}) by more than "
            f"the allowed clock skew ({_minutes(allowed)}; YUQING_MAX_CLOCK_SKEW_SECONDS)"
        )
        self.at = at
        self.allowed = allowed


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


class BadSeries(YuqingError, ValueError):
    """A per-minute spread handed to the forecast is not a count (negative, fractional, absurdly large)."""
