"""Sliding event-time windows from one-minute buckets.

Buckets and each group's bookkeeping are rows of two tables (services/scoring/rows.py): one row per (group,
minute) keeps changelog records small and recovery fast. The bookkeeping row keeps a running sum per window;
a bucket is subtracted once as it slides out, so a hit costs O(1) whatever the window length.

Late observations: one that lies within the longest window plus grace of the group's newest minute is counted
in its own minute bucket. Buckets are kept for twice the longest window plus grace, so that every window such
an observation falls in, including those that ended before the evaluation point, can be summed again exactly
(`back`, `walk`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from msgspec.structs import replace

from services.common.partitioned import Table
from services.scoring.exceptions import LateEvent
from services.scoring.rows import Bucket, WindowMeta

__all__ = ["LateEvent", "Move", "WindowCounter", "minute_of"]

_EMPTY = Bucket(())


def minute_of(t: datetime) -> int:
    return int(t.timestamp() // 60)


class Move(NamedTuple):
    """What moving a group's evaluation point did."""

    previous: int  # the evaluation minute before the move (the new one for a group seen first now)
    until: int  # the evaluation minute now
    sums: dict[int, int]  # spread per window length in the windows ending with `until`
    before: dict[int, int] | None  # the same at `previous`, when the point moved by more than a minute


class WindowCounter:
    """Per-group minute buckets of spread per platform, running sums per window length, and expiry."""

    def __init__(
        self,
        buckets: Table[Bucket],
        meta: Table[WindowMeta],
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
        self._windows = tuple(sorted(windows))

    @property
    def lateness(self) -> timedelta:
        """The most an observation may lag the group's newest minute and still count."""
        return timedelta(minutes=self._late_min)

    def _load(self, group: str) -> WindowMeta | None:
        row = self._meta.get(group)
        if row is None or row.windows == self._windows:
            return row
        # The windows changed (a new config): rebuild the sums once from the buckets.
        top = max(row.until, row.newest)
        sums = tuple(self._scan(group, row.until - w + 1, top) for w in self._windows)
        return replace(row, windows=self._windows, sums=sums)

    def _total(self, group: str, minute: int) -> int:
        bucket = self._buckets.get(f"{group}|{minute}")
        return 0 if bucket is None else bucket.total

    def _scan(self, group: str, lo: int, hi: int) -> int:
        return sum(self._total(group, minute) for minute in range(lo, hi + 1))

    def newest(self) -> datetime | None:
        """The newest event minute of any group in this store (a partition's event-time clock)."""
        newest = max((row.newest for _, row in self._meta.items()), default=None)
        return None if newest is None else datetime.fromtimestamp(newest * 60, UTC)

    def add(self, group: str, at: datetime, platform: str, amount: int, offset: int | None = None) -> None:
        """Count `amount` at event time `at`; LateEvent when it lags the group's newest minute by more than
        the longest window plus grace.

        `offset` is the input message's offset: a row that already applied it is left alone, so replaying
        a message after a crash is harmless whichever of the rows' writes survived.
        """
        minute = minute_of(at)
        row = self._load(group)
        if row is None:
            row = WindowMeta(minute, minute, minute, self._windows, (0,) * len(self._windows))
        else:
            if offset is not None and row.offset is not None and row.offset >= offset:
                return
            behind = max(row.newest, row.until) - minute
            if behind > self._late_min:
                raise LateEvent(timedelta(minutes=behind), self.lateness)
        sums = row.sums
        if amount > 0:
            key = f"{group}|{minute}"
            bucket = self._buckets.get(key) or _EMPTY
            if offset is None or bucket.offset is None or bucket.offset < offset:
                self._buckets.set(key, bucket.plus(platform, amount, offset))
            until = row.until
            sums = tuple(
                s + amount if minute > until - w else s for w, s in zip(row.windows, sums, strict=True)
            )
        # An out-of-order event may be older than every bucket so far: expiry starts there.
        self._meta.set(
            group,
            WindowMeta(
                newest=max(row.newest, minute),
                oldest=min(row.oldest, minute),
                until=row.until,
                windows=row.windows,
                sums=sums,
                offset=row.offset if offset is None else offset,
            ),
        )

    def advance(self, group: str, now: datetime) -> int:
        """Move the evaluation point to max(newest minute, previous point, now) and expire old buckets.

        Returns the evaluation minute. Monotonic, so a tier computed at one point never goes back in time.
        """
        move = self.move(group, now)
        self.expire(group)
        return move.until

    def move(self, group: str, now: datetime) -> Move:
        """Move the evaluation point like `advance`, without expiring: `walk` may still read the buckets
        that slid out. Call `expire` once done."""
        row = self._load(group)
        if row is None:
            start = minute_of(now)
            return Move(start, start, dict.fromkeys(self._windows, 0), None)
        previous = row.until
        until = max(row.newest, previous, minute_of(now))
        before = None
        if until - previous > 1:
            # Exact sums at `previous`: the running sums also hold every minute after it.
            ahead = self._scan(group, previous + 1, row.newest) if row.newest > previous else 0
            before = {w: s - ahead for w, s in zip(row.windows, row.sums, strict=True)}
        if until != previous:
            sums = []
            for w, s in zip(row.windows, row.sums, strict=True):
                # Buckets only exist in [oldest, newest]: subtract those that slid out of this window.
                lo, hi = max(previous - w + 1, row.oldest), min(until - w, row.newest)
                sums.append(s - self._scan(group, lo, hi) if lo <= hi else s)
            row = replace(row, until=until, sums=tuple(sums))
            self._meta.set(group, row)
        elif self._meta.get(group) is not row:  # rebuilt by _load for a new set of windows
            self._meta.set(group, row)
        return Move(previous, until, dict(zip(row.windows, row.sums, strict=True)), before)

    def expire(self, group: str) -> None:
        """Drop buckets no late observation can reach any more: older than twice the longest window plus
        grace behind the evaluation point."""
        row = self._meta.get(group)
        if row is None:
            return
        cutoff = row.until - self._keep_min
        if row.oldest < cutoff:
            for minute in range(row.oldest, min(cutoff, row.newest + 1)):
                self._buckets.delete(f"{group}|{minute}")
            self._meta.set(group, replace(row, oldest=cutoff))

    def drop_stale(self) -> int:
        """Delete every bucket behind its group's oldest minute: nothing reads it again, and expiry never
        looks there. A changelog written by a release whose expiry wrote no tombstone holds such buckets,
        and a restore brings them back. Returns how many."""
        stale = []
        for key in self._buckets.keys():
            group, _, minute = key.rpartition("|")
            row = self._meta.get(group)
            if row is not None and int(minute) < row.oldest:
                stale.append(key)
        for key in stale:
            self._buckets.delete(key)
        return len(stale)

    def walk(
        self, group: str, start: int, sums: dict[int, int], hi: int
    ) -> Iterator[tuple[int, dict[int, int]]]:
        """Spread per window length for each window end start+1 … hi, from the exact `sums` at `start`.

        Stops early once every window is empty and no bucket lies ahead: the rest of the range is all 0.
        """
        row = self._meta.get(group)
        newest = row.newest if row is not None else start
        current = dict(sums)
        for end in range(start + 1, hi + 1):
            entering = self._total(group, end) if end <= newest else 0
            current = {w: s + entering - self._total(group, end - w) for w, s in current.items()}
            yield end, current
            if end >= newest and not any(current.values()):
                return

    def back(self, group: str, lo: int) -> list[dict[int, int]]:
        """Spread per window length for each window end lo … until (the evaluation point), in that order.

        Walked back from the running sums, so it costs (until - lo) x (windows + 1) bucket reads: cheap for
        the slightly late observations a live feed has, bounded for the latest. Call after `move`.
        """
        row = self._meta.get(group)
        if row is None:
            raise KeyError(group)
        current = dict(zip(row.windows, row.sums, strict=True))
        out = [current]
        totals: dict[int, int] = {}

        def total(minute: int) -> int:
            value = totals.get(minute)
            if value is None:
                value = totals[minute] = self._total(group, minute)
            return value

        for end in range(row.until, lo, -1):
            leaving = total(end)  # in the window ending at `end`, not in the one ending a minute earlier
            current = {w: s - leaving + total(end - w) for w, s in current.items()}
            out.append(current)
        out.reverse()
        return out

    def sums(self, group: str) -> dict[int, int]:
        """Spread per window length at the evaluation point (after `advance`)."""
        row = self._load(group)
        if row is None:
            return dict.fromkeys(self._windows, 0)
        return dict(zip(row.windows, row.sums, strict=True))

    def totals(self, group: str, until_minute: int, minutes: int) -> dict[str, int]:
        """Spread per platform in the `minutes` buckets ending with `until_minute` (inclusive); a scan."""
        out: dict[str, int] = {}
        for m in range(until_minute - minutes + 1, until_minute + 1):
            bucket = self._buckets.get(f"{group}|{m}")
            if bucket is not None:
                for platform, n in bucket.spread:
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
