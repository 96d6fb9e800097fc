"""Scoring's state tables: their typed rows, how each is written on its changelog, and how rows of the
previous version (version 1, written before these records existed) are read.

Every row goes on its changelog as a JSON array whose first item is the version, "2" for all rows here.
Version 1 rows are plain JSON (positional lists, or objects with short keys) and are converted as they are
restored; the next change of a row writes it in version 2. Times a row keeps per post are integers (epoch
microseconds), which keep an observation's exact order and cost a third of an ISO string.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from msgspec import Struct

from schemas.events import Tier
from services.common import json
from services.common.partitioned import CompactTable, StructCodec, Table
from services.scoring.forecast import ForecastTrack
from services.scoring.tiers import TierState

__all__ = [
    "TABLES",
    "Bucket",
    "TopPost",
    "TopPosts",
    "TrackedPost",
    "WindowMeta",
    "from_micros",
    "micros",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(t: datetime) -> int:
    """Epoch microseconds of an aware datetime: exact, and ordered as the times are."""
    return (t - _EPOCH) // _MICROSECOND


def from_micros(n: int) -> datetime:
    return _EPOCH + timedelta(microseconds=n)


class TrackedPost(Struct, frozen=True, array_like=True, gc=False, tag="2"):
    """What scoring keeps of a post between its snapshots ("snapshots" table, keyed platform:post_id).

    `groups` are the rule groups a hit was emitted for, so a later snapshot is not first_seen for them again;
    for a root post they are also the groups its reposts count for.
    """

    reposts: int
    comments: int
    likes: int
    observed_at: int  # epoch µs of the newest snapshot seen; the counts are the highest seen
    groups: tuple[str, ...] = ()


class Bucket(Struct, frozen=True, array_like=True, gc=False, tag="2"):
    """One minute of a rule group's spread ("buckets" table, keyed group|minute)."""

    spread: tuple[tuple[str, int], ...]  # (platform, spread), in the order the platforms first came
    offset: int | None = None  # the last input offset added to it: a replayed input is not added again

    @property
    def total(self) -> int:
        return sum(n for _, n in self.spread)

    def plus(self, platform: str, amount: int, offset: int | None) -> Bucket:
        spread = dict(self.spread)
        spread[platform] = spread.get(platform, 0) + amount
        return Bucket(tuple(spread.items()), self.offset if offset is None else offset)


class WindowMeta(Struct, frozen=True, array_like=True, gc=False, tag="2"):
    """A rule group's window bookkeeping ("windows-meta" table, keyed by group); minutes are epoch minutes."""

    newest: int  # the newest event minute counted
    oldest: int  # the oldest minute that may still have a bucket
    until: int  # the evaluation point
    windows: tuple[int, ...]  # the window lengths in minutes, ascending
    sums: tuple[int, ...]  # per window: spread in (until - window, until], plus any minute after until
    offset: int | None = None  # the last input offset applied


class TopPost(Struct, frozen=True, array_like=True, gc=False):
    minute: int  # the newest event minute it spread in
    post: str  # platform:post_id
    platform: str
    spread: int
    excerpt: str
    url: str | None


class TopPosts(Struct, frozen=True, array_like=True, gc=False, tag="2"):
    """A rule group's posts that spread most, most first ("top-posts" table, keyed by group)."""

    posts: tuple[TopPost, ...]


class _Counted(Struct, frozen=True, array_like=True, gc=False, tag="2"):
    at: int


class _CountedCodec:
    """ "counted" rows (keyed group|platform:post_id): the event time in epoch µs of the post's newest hit
    counted in the group's windows. In memory it is a bare float (the row per post on this side): a float
    holds every epoch µs exactly until the year 2255 and takes 24 bytes, the integer 32."""

    def __init__(self) -> None:
        self._codec = StructCodec(_Counted, lambda iso: _Counted(micros(datetime.fromisoformat(iso))))

    def encode(self, at: float) -> bytes:
        return json.dumps_row(_Counted(int(at)))

    def decode(self, data: bytes) -> float:
        return float(self._codec.decode(data).at)


# -- version 1 ---------------------------------------------------------------------------------------------


def _iso_micros(value: str) -> int:
    return micros(datetime.fromisoformat(value))


def _tracked_post_v1(row: list[Any]) -> TrackedPost:
    """[reposts, comments, likes, observed_at ISO] and, once the hit marks moved there, [..., [groups]]."""
    groups = tuple(row[4]) if len(row) > 4 else ()
    return TrackedPost(int(row[0]), int(row[1]), int(row[2]), _iso_micros(row[3]), groups)


def _bucket_v1(row: dict[str, int]) -> Bucket:
    """{platform: spread, "_o": offset}."""
    spread = tuple((p, int(n)) for p, n in row.items() if p != "_o")
    return Bucket(spread, row.get("_o"))


def _window_meta_v1(row: dict[str, Any]) -> WindowMeta:
    """{"wm": newest, "old": oldest, "until": until, "sums": {"120": spread, ...}, "o": offset}."""
    sums = sorted((int(w), int(n)) for w, n in row["sums"].items())
    return WindowMeta(
        newest=int(row["wm"]),
        oldest=int(row["old"]),
        until=int(row["until"]),
        windows=tuple(w for w, _ in sums),
        sums=tuple(n for _, n in sums),
        offset=row.get("o"),
    )


def _tier_state_v1(row: dict[str, Any]) -> TierState:
    """{"tier", "below_since", "override", "override_by", "since"} with ISO times; `since` may be absent."""

    def time(name: str) -> datetime | None:
        value = row.get(name)
        return datetime.fromisoformat(value).astimezone(UTC) if value else None

    override = row.get("override")
    return TierState(
        tier=Tier(row["tier"]),
        below_since=time("below_since"),
        override=None if override is None else Tier(override),
        override_by=row.get("override_by"),
        since=time("since"),
    )


def _top_posts_v1(row: list[list[Any]]) -> TopPosts:
    """[[minute, post, platform, spread, excerpt, url], ...]."""
    return TopPosts(tuple(TopPost(int(e[0]), e[1], e[2], int(e[3]), e[4], e[5]) for e in row))


def _forecast_track_v1(row: list[Any]) -> ForecastTrack:
    """[last, expected, quiet_since]."""
    last, expected, quiet = row[:3]
    return ForecastTrack(int(last), float(expected), None if quiet is None else int(quiet))


# name -> a function making an empty table of a partition (changelog=False: one that lives only in memory)
TABLES: dict[str, Callable[..., Table[Any]]] = {
    # A row per tracked post: kept as its JSON bytes (docs/benchmarks.md).
    "snapshots": partial(CompactTable, StructCodec(TrackedPost, _tracked_post_v1)),
    "buckets": partial(Table, StructCodec(Bucket, _bucket_v1)),
    "windows-meta": partial(Table, StructCodec(WindowMeta, _window_meta_v1)),
    "tiers": partial(Table, StructCodec(TierState, _tier_state_v1)),
    "top-posts": partial(Table, StructCodec(TopPosts, _top_posts_v1)),
    "counted": partial(Table, _CountedCodec()),
    "forecasts": partial(Table, StructCodec(ForecastTrack, _forecast_track_v1)),
}
