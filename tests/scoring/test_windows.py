from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import json
from services.common.partitioned import Table
from services.scoring.rows import TABLES, Bucket, WindowMeta
from services.scoring.windows import LateEvent, WindowCounter, minute_of
from tests.scoring.factories import T0

RETENTION = timedelta(hours=8)
GRACE = timedelta(minutes=10)

Store = tuple[Table[Bucket], Table[WindowMeta]]


def _store(changelog: bool = False) -> Store:
    return TABLES["buckets"](changelog=changelog), TABLES["windows-meta"](changelog=changelog)


@pytest.fixture
def store() -> Store:
    return _store()


@pytest.fixture
def counter(store: Store) -> WindowCounter:
    buckets, meta = store
    return WindowCounter(buckets, meta, retention=RETENTION, grace=GRACE)


M0 = minute_of(T0)


def test_minute_of() -> None:
    assert minute_of(T0 + timedelta(seconds=59)) == M0
    assert minute_of(T0 + timedelta(seconds=60)) == M0 + 1


@pytest.mark.parametrize("window", [120, 240, 480])
def test_amount_inside_window_until_its_last_minute(counter: WindowCounter, window: int) -> None:
    counter.add("g", T0, "weibo", 7)
    assert counter.totals("g", M0, window) == {"weibo": 7}
    assert counter.totals("g", M0 + window - 1, window) == {"weibo": 7}
    assert counter.totals("g", M0 + window, window) == {}
    assert counter.totals("g", M0 - 1, window) == {}


def test_windows_sum_exactly_the_right_buckets(counter: WindowCounter) -> None:
    counter.add("g", T0, "weibo", 1)
    counter.add("g", T0 + timedelta(minutes=100), "weibo", 10)
    counter.add("g", T0 + timedelta(minutes=200), "douyin", 100)
    counter.add("g", T0 + timedelta(minutes=400), "weibo", 1000)
    until = M0 + 400
    assert counter.totals("g", until, 120) == {"weibo": 1000}
    assert counter.totals("g", until, 240) == {"weibo": 1000, "douyin": 100}
    assert counter.totals("g", until, 480) == {"weibo": 1011, "douyin": 100}


def test_same_minute_and_platform_accumulate(counter: WindowCounter) -> None:
    counter.add("g", T0, "weibo", 3)
    counter.add("g", T0 + timedelta(seconds=30), "weibo", 4)
    counter.add("g", T0, "zhihu", 5)
    assert counter.totals("g", M0, 1) == {"weibo": 7, "zhihu": 5}


def test_groups_are_separate(counter: WindowCounter) -> None:
    counter.add("a", T0, "weibo", 3)
    counter.add("b", T0, "weibo", 4)
    assert counter.totals("a", M0, 120) == {"weibo": 3}
    assert counter.totals("b", M0, 120) == {"weibo": 4}


def test_newest_tracks_the_newest_event_of_any_group(counter: WindowCounter) -> None:
    assert counter.newest() is None
    counter.add("g", T0, "weibo", 1)
    counter.add("g", T0 + timedelta(minutes=30), "weibo", 1)
    counter.add("h", T0 + timedelta(minutes=25), "weibo", 1)
    assert counter.newest() == T0 + timedelta(minutes=30)


def test_late_event_inside_the_longest_window_counted(counter: WindowCounter) -> None:
    counter.add("g", T0, "weibo", 1)
    counter.add("g", T0 + timedelta(hours=7, minutes=30), "weibo", 1)
    counter.add("g", T0 + timedelta(minutes=20), "weibo", 5)  # 7 h 10 min behind the newest
    counter.add("g", T0 + timedelta(minutes=25), "weibo", 2)
    assert counter.totals("g", M0 + 450, 480) == {"weibo": 9}


def test_late_by_exactly_the_longest_window_plus_grace_still_counts(counter: WindowCounter) -> None:
    counter.add("g", T0 + timedelta(minutes=490), "weibo", 1)
    counter.add("g", T0, "weibo", 5)
    assert counter.totals("g", M0 + 490, 491) == {"weibo": 6}


def test_late_event_beyond_the_longest_window_plus_grace_raises(counter: WindowCounter, store: Store) -> None:
    counter.add("g", T0, "weibo", 1)
    counter.add("g", T0 + timedelta(minutes=491), "weibo", 1)
    with pytest.raises(LateEvent) as info:
        counter.add("g", T0, "weibo", 5)
    assert info.value.lateness == timedelta(minutes=491)
    assert info.value.allowed == timedelta(minutes=490)
    assert "8 h 11 min behind" in str(info.value)
    buckets, _ = store
    assert buckets[f"g|{M0}"].spread == (("weibo", 1),)


def test_lateness_is_measured_from_the_evaluation_point_too(counter: WindowCounter) -> None:
    counter.add("g", T0, "weibo", 1)
    counter.advance("g", T0 + timedelta(hours=9))  # a tick: the group is quiet, time went on
    with pytest.raises(LateEvent):
        counter.add("g", T0 + timedelta(minutes=29), "weibo", 1)
    counter.add("g", T0 + timedelta(minutes=50), "weibo", 1)


def test_out_of_order_first_events_within_grace_counted(counter: WindowCounter) -> None:
    counter.add("g", T0 + timedelta(minutes=5), "weibo", 5)
    counter.add("g", T0, "weibo", 7)  # 5 min behind the watermark, grace is 10 min
    assert counter.totals("g", M0 + 5, 120) == {"weibo": 12}


def test_advance_is_monotonic(counter: WindowCounter) -> None:
    counter.add("g", T0, "weibo", 1)
    assert counter.advance("g", T0 + timedelta(minutes=50)) == M0 + 50
    assert counter.advance("g", T0 + timedelta(minutes=10)) == M0 + 50
    assert counter.advance("g", T0 - timedelta(hours=1)) == M0 + 50
    # An event older than the evaluation point but newer than the watermark does not move it back.
    counter.add("g", T0 + timedelta(minutes=5), "weibo", 1)
    assert counter.advance("g", T0) == M0 + 50
    assert counter.advance("g", T0 + timedelta(minutes=51)) == M0 + 51


def test_advance_never_behind_watermark(counter: WindowCounter) -> None:
    counter.add("g", T0 + timedelta(minutes=90), "weibo", 1)
    assert counter.advance("g", T0) == M0 + 90


def test_advance_unknown_group_returns_now_minute(counter: WindowCounter) -> None:
    assert counter.advance("nobody", T0) == M0


def test_advance_expires_buckets_past_twice_the_retention_plus_grace(
    counter: WindowCounter, store: Store
) -> None:
    """A late observation may land 490 minutes back, and the windows it is in reach 480 further."""
    buckets, meta = store
    counter.add("g", T0, "weibo", 1)
    counter.add("g", T0 + timedelta(minutes=1), "weibo", 2)
    counter.add("g", T0 + timedelta(minutes=100), "weibo", 3)
    horizon = 480 + 10 + 480
    counter.advance("g", T0 + timedelta(minutes=horizon))
    assert f"g|{M0}" in buckets  # exactly retention + grace old: kept
    counter.advance("g", T0 + timedelta(minutes=horizon + 1))
    assert f"g|{M0}" not in buckets
    assert f"g|{M0 + 1}" in buckets
    counter.advance("g", T0 + timedelta(minutes=horizon + 2))
    assert f"g|{M0 + 1}" not in buckets
    assert f"g|{M0 + 100}" in buckets
    assert meta["g"].oldest == M0 + 2
    counter.advance("g", T0 + timedelta(hours=48))
    assert not any(k.startswith("g|") for k in buckets)


def test_restore_after_bucket_expiry_holds_no_expired_bucket() -> None:
    """Expiring a bucket deletes its row through the table, so the changelog gets a tombstone and a restore
    does not bring it back (where it would stay for good: expiry starts after it)."""
    buckets, meta = _store(changelog=True)
    changelog: dict[str, bytes] = {}  # what compaction leaves of the buckets changelog

    def flush() -> None:
        for key, value in buckets.take_changes():
            if value is None:
                changelog.pop(key, None)
            else:
                changelog[key] = value

    counter = WindowCounter(buckets, meta, RETENTION, GRACE, (120, 240, 480))
    counter.add("g", T0, "weibo", 5)
    counter.add("g", T0 + timedelta(minutes=600), "weibo", 7)
    flush()
    assert sorted(changelog) == [f"g|{M0}", f"g|{M0 + 600}"]
    counter.advance("g", T0 + timedelta(hours=20))  # 1,200 minutes on: the first bucket is past 970
    flush()
    restored, _ = _store()
    restored.restore(changelog)
    assert restored.keys() == [f"g|{M0 + 600}"]


def test_buckets_an_earlier_release_left_behind_the_oldest_minute_are_dropped() -> None:
    """A changelog an older release wrote may hold buckets it expired without a tombstone: a restore brings
    them back behind the group's oldest minute, where expiry never looks."""
    buckets, meta = _store(changelog=True)
    counter = WindowCounter(buckets, meta, RETENTION, GRACE, (120, 240, 480))
    counter.add("g", T0 + timedelta(hours=20), "weibo", 7)
    counter.advance("g", T0 + timedelta(hours=20))
    buckets.take_changes()
    buckets.restore({f"g|{M0}": json.dumps({"weibo": 5, "_o": 3})})  # a version 1 row, never tombstoned
    assert counter.drop_stale() == 1
    assert buckets.take_changes() == [(f"g|{M0}", None)]
    assert buckets.keys() == [f"g|{M0 + 1200}"]
    assert counter.drop_stale() == 0


def test_event_in_expired_range_raises(counter: WindowCounter) -> None:
    counter.add("g", T0, "weibo", 1)
    counter.advance("g", T0 + timedelta(hours=10))
    with pytest.raises(LateEvent):
        counter.add("g", T0 + timedelta(minutes=5), "weibo", 1)


def test_zero_amount_creates_no_bucket(counter: WindowCounter, store: Store) -> None:
    buckets, meta = store
    counter.add("g", T0, "weibo", 0)
    assert len(buckets) == 0
    assert meta["g"].newest == M0


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["add", "advance"]), st.integers(-15, 600), st.integers(0, 1000)),
        min_size=1,
        max_size=60,
    )
)
def test_running_sums_equal_a_full_scan(steps: list[tuple[str, int, int]]) -> None:
    """Whatever the order of adds (in grace or late) and advances, the O(1) sums match brute force."""
    buckets, meta = _store()
    windows = (120, 240, 480)
    counter = WindowCounter(buckets, meta, RETENTION, GRACE, windows)
    clock = 0
    for op, offset, amount in steps:
        if op == "add":
            with contextlib.suppress(LateEvent):
                counter.add("g", T0 + timedelta(minutes=clock + offset // 20), "weibo", amount)
        else:
            clock += offset
            until = counter.advance("g", T0 + timedelta(minutes=clock))
            expected = {w: sum(counter.totals("g", until, w).values()) for w in windows}
            assert counter.sums("g") == expected


class _Brute:
    """Window sums straight from the bucket rows, one scan per check."""

    def __init__(self, buckets: Table[Bucket], windows: tuple[int, ...]) -> None:
        self.per_minute = {int(k.split("|")[1]): v.total for k, v in buckets.items()}
        self.windows = windows

    def __call__(self, end: int) -> dict[int, int]:
        return {
            w: sum(n for minute, n in self.per_minute.items() if end - w < minute <= end)
            for w in self.windows
        }


@settings(deadline=None, max_examples=60)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["add", "move"]), st.integers(-600, 600), st.integers(0, 1000)),
        min_size=1,
        max_size=40,
    ),
    back=st.integers(0, 500),
)
def test_back_and_walk_equal_a_full_scan(steps: list[tuple[str, int, int]], back: int) -> None:
    """Every window end behind the evaluation point (back) and across a move (walk) sums like brute force."""
    buckets, meta = _store()
    windows = (120, 240, 480)
    counter = WindowCounter(buckets, meta, RETENTION, GRACE, windows)
    clock = 0
    for op, offset, amount in steps:
        if op == "add":
            with contextlib.suppress(LateEvent):
                counter.add("g", T0 + timedelta(minutes=clock + offset), "weibo", amount)
            continue
        clock += abs(offset)
        move = counter.move("g", T0 + timedelta(minutes=clock))
        if "g" not in meta:
            continue
        last = move.previous
        brute = _Brute(buckets, windows)
        if move.before is not None:
            assert move.before == brute(move.previous)
            for end, sums in counter.walk("g", move.previous, move.before, move.until - 1):
                assert sums == brute(end)
                last = end
            for end in range(last + 1, move.until):  # the walk stopped early: all empty from here
                assert brute(end) == dict.fromkeys(windows, 0)
        counter.expire("g")
        lo = move.until - min(back, 490)
        series = counter.back("g", lo)
        assert len(series) == move.until - lo + 1
        brute = _Brute(buckets, windows)
        for i, sums in enumerate(series):
            assert sums == brute(lo + i)
