"""Errors and typed outcomes of the scoring service."""

from __future__ import annotations

from datetime import timedelta

from services.common.exceptions import YuqingError

__all__ = ["BadSeries", "LateEvent"]


class LateEvent(YuqingError):
    """A hit older than every window it could still count in; a typed outcome, dead-lettered as late_event."""

    def __init__(self, lateness: timedelta, allowed: timedelta) -> None:
        super().__init__(
            f"event is {_minutes(lateness)} behind the group's newest; only observations within the longest "
            f"window plus tiers.grace_minutes ({_minutes(allowed)}) count"
        )
        self.lateness = lateness
        self.allowed = allowed


def _minutes(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


class BadSeries(YuqingError, ValueError):
    """A per-minute spread handed to the forecast is not a count (negative, fractional, absurdly large)."""
