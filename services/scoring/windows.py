"""Sliding event-time windows from one-minute buckets kept in a mapping we control.

The store is any MutableMapping: a dict in tests, a changelog-backed faust Table in the worker. One key per
(group, minute) keeps changelog records small and recovery fast. Each group's meta row keeps a running sum
per window; a bucket is subtracted once as it slides out, so a hit costs O(1) whatever the window length.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from services.scoring.exceptions import LateEvent

__all__ = ["LateEvent", "WindowCounter", "minute_of"]


_OFFSET = "_o"  # in a bucket row: the last input offset applied to it


def minute_of(t: datetime) -> int:
    return int(t.timestamp() // 60)


class WindowCounter:
    """Per-group minute buckets of {platform: spread}, a watermark, running sums and expiry.

    meta[group] = {"wm": newest event minute, "old": oldest live minute, "until": evaluation minute,
                   "sums": {window minutes: spread in (until - window, until] plus any minute after until}}
    """

    def __init__(
        self,
        buckets: MutableMapping[str, dict[str, int]],
        meta: MutableMapping[str, dict[str, Any]],
        retention: timedelta,
        grace: timedelta,
        windows: tuple[int, ...] = (),
    ) -> None:
        self._buckets = buckets
        self._meta = meta
        self._retention_min = int(retention.total_seconds() // 60)
        self._grace = grace
        self._grace_min = int(grace.total_seconds() // 60)
        self._windows = windows
        self._keys = sorted(str(w) for w in windows)  # the sums a meta row keeps, as _load compares them

    def _load(self, group: str) -> dict[str, Any] | None:
        row = self._meta.get(group)
        if row is None:
            return None
        m = {"wm": row["wm"], "old": row["old"], "until": row["until"], "sums": dict(row["sums"])}
        if "o" in row:
            m["o"] = row["o"]
        if sorted(m["sums"]) != self._keys:
            # The windows changed (a new config): rebuild the sums once from the buckets.
            top = max(m["until"], m["wm"])
            m["sums"] = {str(w): self._scan(group, m["until"] - w + 1, top) for w in self._windows}
        return m

    def _scan(self, group: str, lo: int, hi: int) -> int:
        total = 0
        for minute in range(lo, hi + 1):
            bucket = self._buckets.get(f"{group}|{minute}")
            if bucket:
                total += sum(v for k, v in bucket.items() if k != _OFFSET)
        return total

    def watermark(self, group: str) -> datetime | None:
        row = self._meta.get(group)
        return None if row is None else datetime.fromtimestamp(row["wm"] * 60, UTC)

    def add(self, group: str, at: datetime, platform: str, amount: int, offset: int | None = None) -> None:
        """Count `amount` at event time `at`; LateEvent when past grace or in already-expired minutes.

        `offset` is the input message's offset: a row that already applied it is left alone, so replaying
        a message after a crash is harmless whichever of the rows' writes survived.
        """
        minute = minute_of(at)
        m = self._load(group)
        if m is not None and offset is not None and m.get("o", -1) >= offset:
            return
        if m is not None:
            lateness = timedelta(minutes=m["wm"] - minute)
            if lateness > self._grace:
                raise LateEvent(lateness)
            # Windows were already evaluated (and expired) past this minute: it can no longer count.
            if minute < m["until"] - self._retention_min - self._grace_min:
                raise LateEvent(timedelta(minutes=m["until"] - minute))
        else:
            m = {"wm": minute, "old": minute, "until": minute, "sums": {str(w): 0 for w in self._windows}}
        if amount > 0:
            key = f"{group}|{minute}"
            bucket = dict(self._buckets.get(key) or {})
            if offset is None or bucket.get(_OFFSET, -1) < offset:
                bucket[platform] = bucket.get(platform, 0) + amount
                if offset is not None:
                    bucket[_OFFSET] = offset
                self._buckets[key] = bucket
            for w in self._windows:
                if minute > m["until"] - w:
                    m["sums"][str(w)] += amount
        # An out-of-order event within grace may be older than every bucket so far: expiry starts there.
        m["wm"], m["old"] = max(m["wm"], minute), min(m["old"], minute)
        if offset is not None:
            m["o"] = offset
        self._meta[group] = m

    def advance(self, group: str, now: datetime) -> int:
        """Move the evaluation point to max(watermark, previous point, now); expire old buckets.

        Returns the evaluation minute. Monotonic, so a tier computed at one point never goes back in time.
        """
        return self.advance_sums(group, now)[0]

    def advance_sums(self, group: str, now: datetime) -> tuple[int, dict[int, int]]:
        """advance(group, now) and then sums(group), from one read of the group's row."""
        m = self._load(group)
        if m is None:
            return minute_of(now), dict.fromkeys(self._windows, 0)
        until = max(m["wm"], m["until"], minute_of(now))
        changed = until != m["until"]
        if changed:
            for w in self._windows:
                # Buckets only exist in [old, wm]: subtract those that slid out of this window.
                lo, hi = max(m["until"] - w + 1, m["old"]), min(until - w, m["wm"])
                if lo <= hi:
                    m["sums"][str(w)] -= self._scan(group, lo, hi)
        cutoff = until - self._retention_min - self._grace_min
        oldest = m["old"]
        if oldest < cutoff:
            for minute in range(oldest, min(cutoff, m["wm"] + 1)):
                self._buckets.pop(f"{group}|{minute}", None)
            m["old"] = cutoff
            changed = True
        if changed or self._meta.get(group, {}).get("sums") != m["sums"]:
            m["until"] = until
            self._meta[group] = m
        # What sums() would read back: the row is m now, written or already equal.
        return until, {int(w): v for w, v in m["sums"].items()}

    def sums(self, group: str) -> dict[int, int]:
        """Spread per window length at the evaluation point (after `advance`)."""
        m = self._load(group)
        if m is None:
            return dict.fromkeys(self._windows, 0)
        return {int(w): v for w, v in m["sums"].items()}

    def totals(self, group: str, until_minute: int, minutes: int) -> dict[str, int]:
        """Spread per platform in the `minutes` buckets ending with `until_minute` (inclusive); a scan."""
        out: dict[str, int] = {}
        for m in range(until_minute - minutes + 1, until_minute + 1):
            bucket = self._buckets.get(f"{group}|{m}")
            if bucket:
                for platform, n in bucket.items():
                    if platform != _OFFSET:
                        out[platform] = out.get(platform, 0) + n
        return out

    def groups(self) -> list[str]:
        return list(self._meta.keys())
