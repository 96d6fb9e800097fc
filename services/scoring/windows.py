"""Sliding event-time windows from one-minute buckets kept in a mapping we control.

The store is any MutableMapping: a dict in tests, a changelog-backed faust Table in the worker.
One key per (group, minute) keeps changelog records small and recovery fast.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta

__all__ = ["LateEvent", "WindowCounter", "minute_of"]


def minute_of(t: datetime) -> int:
    return int(t.timestamp() // 60)


class LateEvent(Exception):
    def __init__(self, lateness: timedelta) -> None:
        super().__init__(
            f"event is {lateness.total_seconds():.0f}s behind the watermark, past the grace period"
        )
        self.lateness = lateness


class WindowCounter:
    """Per-group minute buckets of {platform: spread}, a watermark, and expiry past the longest window."""

    def __init__(
        self,
        buckets: MutableMapping[str, dict[str, int]],
        meta: MutableMapping[str, list[int]],
        retention: timedelta,
        grace: timedelta,
    ) -> None:
        self._buckets = buckets
        self._meta = meta  # group -> [watermark_minute, oldest_live_minute, evaluated_until_minute]
        self._retention_min = int(retention.total_seconds() // 60)
        self._grace = grace

    def watermark(self, group: str) -> datetime | None:
        meta = self._meta.get(group)
        return None if meta is None else datetime.fromtimestamp(meta[0] * 60, UTC)

    def add(self, group: str, at: datetime, platform: str, amount: int) -> None:
        """Count `amount` at event time `at`; raises LateEvent when older than watermark - grace."""
        minute = minute_of(at)
        meta = self._meta.get(group)
        if meta is not None:
            lateness = timedelta(minutes=meta[0] - minute)
            if lateness > self._grace:
                raise LateEvent(lateness)
            # Windows were already evaluated (and expired) past this minute: it can no longer count.
            if minute < meta[2] - self._retention_min - int(self._grace.total_seconds() // 60):
                raise LateEvent(timedelta(minutes=meta[2] - minute))
        if amount > 0:
            key = f"{group}|{minute}"
            bucket = dict(self._buckets.get(key) or {})
            bucket[platform] = bucket.get(platform, 0) + amount
            self._buckets[key] = bucket
        if meta is None:
            self._meta[group] = [minute, minute, minute]
        elif minute > meta[0] or minute < meta[1]:
            # An out-of-order event within grace may be older than every bucket so far: expiry starts there.
            self._meta[group] = [max(meta[0], minute), min(meta[1], minute), max(meta[2], minute)]

    def advance(self, group: str, now: datetime) -> int:
        """Move the evaluation point to max(watermark, previous point, now); expire old buckets.

        Returns the evaluation minute. Monotonic, so a tier computed at one point never goes back in time.
        """
        meta = self._meta.get(group)
        if meta is None:
            return minute_of(now)
        until = max(meta[0], meta[2], minute_of(now))
        cutoff = until - self._retention_min - int(self._grace.total_seconds() // 60)
        oldest = meta[1]
        while oldest < cutoff:
            self._buckets.pop(f"{group}|{oldest}", None)
            oldest += 1
        if [meta[0], oldest, until] != meta:
            self._meta[group] = [meta[0], oldest, until]
        return until

    def totals(self, group: str, until_minute: int, minutes: int) -> dict[str, int]:
        """Spread per platform in the `minutes` buckets ending with `until_minute` (inclusive)."""
        out: dict[str, int] = {}
        for m in range(until_minute - minutes + 1, until_minute + 1):
            bucket = self._buckets.get(f"{group}|{m}")
            if bucket:
                for platform, n in bucket.items():
                    out[platform] = out.get(platform, 0) + n
        return out

    def groups(self) -> list[str]:
        return list(self._meta.keys())
