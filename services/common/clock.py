"""Injected time: the core never calls datetime.now() itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "FakeClock", "system_clock", "utc"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """Return an aware UTC datetime; naive values are a bug here, so refuse them."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: an explicit time zone is required")
    return value.astimezone(UTC)


class FakeClock:
    """A clock for tests and replays: it only moves when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = utc(start)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, **kwargs: float) -> datetime:
        self._now += timedelta(**kwargs)
        return self._now

    def set(self, value: datetime) -> None:
        self._now = utc(value)
