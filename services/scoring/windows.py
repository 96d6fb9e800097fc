"""Sliding event-time windows from one-minute buckets kept in a mapping we control.

The store is any MutableMapping: a dict in tests, a changelog-backed table in the worker. One key per
(group, minute) keeps changelog records small and recovery fast. Each group's meta row keeps a running sum
per window; a bucket is subtracted once as it slides out, so a hit costs O(1) whatever the window length.

Late observations: one that lies within the longest window plus grace of the group's newest minute is counted
in its own minute bucket. Buckets are kept for twice the longest window plus grace, so that every window such
an observation falls in, including those that ended before the evaluation point, can be summed again exactly
(`back`, `walk`).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from services.scoring.exceptions import LateEvent

__all__ = ["LateEvent", "Move", "WindowCounter", "minute_of"]


_OFFSET = "_o"  # in a bucket row: the last input offset applied to it


def minute_of(t: datetime) -> int:
    return int(t.timestamp() // 60)


class Move(NamedTuple):
    """What moving a group's evaluation point did."""

    previous: int  # the evaluation minute before the move (the new one for a group seen first now)
    until: int  # the evaluation minute now
    sums: dict[int, int]  # spread per window length in the windows ending with `until`
    before: dict[int, int] | None  # the same at `previous`, when the point moved by more than a minute


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
        self._grace_min = int(grace.total_seconds() // 60)
        # How far behind the newest minute an observation still counts, and how long buckets are kept.
        self._late_min = self._retention_min + self._grace_min
        self._keep_min = self._late_min + self._retention_min
        self._windows = windows
        self._keys = sorted(str(w) for w in windows)  # the sums a meta row keeps, as _load compares them

    @property
    def lateness(self) -> timedelta:
        """The most an observation may lag the group's newest minute and still count."""
        return timedelta(minutes=self._late_min)

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

    def _total(self, group: str, minute: int) -> int:
        bucket = self._buckets.get(f"{group}|{minute}")
        if not bucket:
            return 0
        return sum(v for k, v in bucket.items() if k != _OFFSET)

    def _scan(self, group: str, lo: int, hi: int) -> int:
        return sum(self._total(group, minute) for minute in range(lo, hi + 1))

    def watermark(self, group: str) -> datetime | None:
        row = self._meta.get(group)
        return None if row is None else datetime.fromtimestamp(row["wm"] * 60, UTC)

    def newest(self) -> datetime | None:
        """The newest event minute of any group in this store (a partition's event-time clock)."""
        if not self._meta:
            return None
        return datetime.fromtimestamp(max(row["wm"] for row in self._meta.values()) * 60, UTC)

    def until(self, group: str) -> int | None:
        row = self._meta.get(group)
        return None if row is None else int(row["until"])

    def add(self, group: str, at: datetime, platform: str, amount: int, offset: int | None = None) -> None:
        """Count `amount` at event time `at`; LateEvent when it lags the group's newest minute by more than
        the longest window plus grace.

        `offset` is the input message's offset: a row that already applied it is left alone, so replaying
        a message after a crash is harmless whichever of the rows' writes survived.
        """
        minute = minute_of(at)
        m = self._load(group)
        if m is not None and offset is not None and m.get("o", -1) >= offset:
            return
        if m is not None:
            behind = max(m["wm"], m["until"]) - minute
            if behind > self._late_min:
                raise LateEvent(timedelta(minutes=behind), self.lateness)
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
        # An out-of-order event may be older than every bucket so far: expiry starts there.
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
        move = self.move(group, now)
        self.expire(group)
        return move.until, move.sums

    def move(self, group: str, now: datetime) -> Move:
        """Move the evaluation point like `advance`, without expiring: `walk` may still read the buckets
        that slid out. Call `expire` once done."""
        m = self._load(group)
        if m is None:
            start = minute_of(now)
            return Move(start, start, dict.fromkeys(self._windows, 0), None)
        previous = m["until"]
        until = max(m["wm"], previous, minute_of(now))
        before = None
        if until - previous > 1:
            # Exact sums at `previous`: the running sums also hold every minute after it.
            ahead = self._scan(group, previous + 1, m["wm"]) if m["wm"] > previous else 0
            before = {w: m["sums"][str(w)] - ahead for w in self._windows}
        if until != previous:
            for w in self._windows:
                # Buckets only exist in [old, wm]: subtract those that slid out of this window.
                lo, hi = max(previous - w + 1, m["old"]), min(until - w, m["wm"])
                if lo <= hi:
                    m["sums"][str(w)] -= self._scan(group, lo, hi)
            m["until"] = until
            self._meta[group] = m
        elif self._meta[group].get("sums") != m["sums"]:  # rebuilt by _load for a new set of windows
            self._meta[group] = m
        return Move(previous, until, {int(w): v for w, v in m["sums"].items()}, before)

    def expire(self, group: str) -> None:
        """Drop buckets no late observation can reach any more: older than twice the longest window plus
        grace behind the evaluation point."""
        row = self._meta.get(group)
        if row is None:
            return
        cutoff = row["until"] - self._keep_min
        if row["old"] < cutoff:
            for minute in range(row["old"], min(cutoff, row["wm"] + 1)):
                self._buckets.pop(f"{group}|{minute}", None)
            self._meta[group] = {**row, "old": cutoff}

    def walk(
        self, group: str, start: int, sums: dict[int, int], hi: int
    ) -> Iterator[tuple[int, dict[int, int]]]:
        """Spread per window length for each window end start+1 … hi, from the exact `sums` at `start`.

        Stops early once every window is empty and no bucket lies ahead: the rest of the range is all 0.
        """
        row = self._meta.get(group)
        wm = row["wm"] if row is not None else start
        current = dict(sums)
        for end in range(start + 1, hi + 1):
            entering = self._total(group, end) if end <= wm else 0
            current = {w: s + entering - self._total(group, end - w) for w, s in current.items()}
            yield end, current
            if end >= wm and not any(current.values()):
                return

    def back(self, group: str, lo: int) -> list[dict[int, int]]:
        """Spread per window length for each window end lo … until (the evaluation point), in that order.

        Walked back from the running sums, so it costs (until - lo) x (windows + 1) bucket reads: cheap for
        the slightly late observations a live feed has, bounded for the latest. Call after `move`.
        """
        row = self._meta[group]
        until = row["until"]
        current = {int(w): v for w, v in row["sums"].items()}
        out = [current]
        totals: dict[int, int] = {}

        def total(minute: int) -> int:
            value = totals.get(minute)
            if value is None:
                value = totals[minute] = self._total(group, minute)
            return value

        for end in range(until, lo, -1):
            leaving = total(end)  # in the window ending at `end`, not in the one ending a minute earlier
            current = {w: s - leaving + total(end - w) for w, s in current.items()}
            out.append(current)
        out.reverse()
        return out

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

    def series(self, group: str, lo: int, hi: int) -> dict[int, int]:
        """Spread per minute lo … hi (epoch minutes, inclusive); minutes without spread are left out."""
        out = {}
        for minute in range(lo, hi + 1):
            total = self._total(group, minute)
            if total:
                out[minute] = total
        return out

    def groups(self) -> list[str]:
        return list(self._meta.keys())
