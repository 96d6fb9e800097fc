"""Errors and typed outcomes of the scoring service."""

from __future__ import annotations

from datetime import timedelta

from services.common.exceptions import YuqingError

__all__ = ["BadSeries", "LateEvent"]


class LateEvent(YuqingError):
    """A hit whose minute already slid out of its windows: a typed outcome (dead-lettered as late_event)."""

    def __init__(self, lateness: timedelta) -> None:
        super().__init__(
            f"event is {lateness.total_seconds():.0f}s behind the group's windows; expected within the "
            "grace period (tiers.grace_minutes): are partitions drifting apart, or a replay unpaced?"
        )
        self.lateness = lateness


class BadSeries(YuqingError, ValueError):
    """A per-minute spread handed to the forecast is not a count (negative, fractional, absurdly large)."""
