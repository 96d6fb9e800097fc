"""parse_time: every accepted form names the same instant; anything else is a ValueError that says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.timeparse import TimeBounds, parse_time

# 2026-11-21 10:00 in Beijing.
INSTANT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
EPOCH = 1795226400


@pytest.mark.parametrize(
    "value",
    [
        EPOCH,
        EPOCH * 1000,
        float(EPOCH),
        str(EPOCH),
        str(EPOCH * 1000),
        f" {EPOCH} ",
        "Sat Nov 21 10:00:00 +0800 2026",
        "Sat Nov 21 02:00:00 +0000 2026",
        "2026-11-21T10:00:00+08:00",
        "2026-11-21 10:00:00",
        "2026-11-21T02:00:00Z",
        "2026-11-21 10:00",
        "2026-11-21T10:00",
        "2026/11/21 10:00:00",
        "2026/11/21 10:00",
        "2026年11月21日 10:00",
        "2026年11月21日10:00:00",
        "2026年11月21日 10时00分",
        "2026-11-21 10:00:00.000",
        "Sat, 21 Nov 2026 10:00:00 +0800",
        "Sat, 21 Nov 2026 02:00:00 GMT",
        # CST on a Chinese server is China Standard Time (Java's Date.toString), never US Central.
        "Sat Nov 21 10:00:00 CST 2026",
        "Sat, 21 Nov 2026 10:00:00 CST",
        "Sat Nov 21 02:00:00 UTC 2026",
        "20261121100000",
        "202611211000",
        20261121100000,
        "2026-11-21   10:00",
        datetime(2026, 11, 21, 10, 0, tzinfo=timezone(timedelta(hours=8))),
    ],
)
def test_every_accepted_form_names_the_same_instant(value):
    parsed = parse_time(value)
    assert parsed == INSTANT
    assert parsed.tzinfo is UTC


def test_milliseconds_keep_their_fraction():
    assert parse_time(EPOCH * 1000 + 250) == INSTANT + timedelta(milliseconds=250)
    assert parse_time("1795226400.5") == INSTANT + timedelta(milliseconds=500)


def test_seconds_and_milliseconds_are_told_apart_by_magnitude():
    # 1e11 seconds would be the year 5138 and 1e11 milliseconds is 1973: the boundary is safe both ways.
    assert parse_time(99_999_999_999).year == 5138
    assert parse_time(100_000_000_000).year == 1973


def test_naive_times_are_beijing_time():
    assert parse_time("2026-11-21 00:30") == datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
    assert parse_time("2026-1-5 9:05") == datetime(2026, 1, 5, 1, 5, tzinfo=UTC)
    assert parse_time("2026年11月21日") == datetime(2026, 11, 20, 16, 0, tzinfo=UTC)


def test_explicit_offsets_are_honoured():
    assert parse_time("2026-11-21T10:00:00-05:00") == datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
    assert parse_time("Sat Nov 21 10:00:00 -0500 2026") == datetime(2026, 11, 21, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "yesterday",
        "3分钟前",  # relative: needs the observation time
        "昨天 10:00",
        "Sat Nov 21 10:00:00 PST 2026",
        "2026-11-21" + " " * 20_000 + "x",
        "2026-13-45",
        "2026年13月1日",
        "Sat Foo 21 10:00:00 +0800 2026",
        None,
        True,
        [],
        {},
        float("nan"),
        float("inf"),
        10**30,
        "9" * 40,
        "0001-01-01 00:00:00",  # Beijing time before the first UTC instant
        "0001-01-01T00:00:00+08:00",
        "9999-12-31T23:59:59-05:00",  # after the last
    ],
)
def test_invalid_values_are_a_value_error_naming_value_and_formats(value):
    with pytest.raises(ValueError, match="unrecognised time") as caught:
        parse_time(value)
    message = str(caught.value)
    assert repr(value)[:40] in message
    assert "Sat Nov 21 10:00:00 +0800 2026" in message
    assert "2026年11月21日 10:00" in message
    assert "Asia/Shanghai" in message


def test_a_long_value_is_shortened_in_the_message():
    with pytest.raises(ValueError, match=r"unrecognised time 'xxx") as caught:
        parse_time("x" * 5000)
    assert len(str(caught.value)) < 600


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.none(), st.booleans()))
def test_any_value_parses_to_aware_utc_or_raises_value_error(value):
    try:
        parsed = parse_time(value)
    except ValueError:
        return
    assert parsed.tzinfo is UTC


def test_compact_dates_are_dates_not_1970_epochs():
    assert parse_time("20261121") == datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
    assert parse_time(20261121) == datetime(2026, 11, 20, 16, 0, tzinfo=UTC)
    # Not a valid date at that length: still an epoch, which the bounds then refuse as 1970.
    assert parse_time("20261341").year == 1970


NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)  # 11:00 in Beijing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("刚刚", NOW),
        ("30秒前", NOW - timedelta(seconds=30)),
        ("5分钟前", NOW - timedelta(minutes=5)),
        ("2小时前", NOW - timedelta(hours=2)),
        ("3天前", NOW - timedelta(days=3)),
        ("今天 09:15", datetime(2026, 11, 22, 1, 15, tzinfo=UTC)),
        ("昨天 10:00", datetime(2026, 11, 21, 2, 0, tzinfo=UTC)),
        ("前天 23:30", datetime(2026, 11, 20, 15, 30, tzinfo=UTC)),
        ("11月21日 10:00", datetime(2026, 11, 21, 2, 0, tzinfo=UTC)),
        ("11-21 10:00", datetime(2026, 11, 21, 2, 0, tzinfo=UTC)),
        ("11月21日", datetime(2026, 11, 20, 16, 0, tzinfo=UTC)),
        # Without a year, a date ahead of today is last year's.
        ("12月30日", datetime(2025, 12, 29, 16, 0, tzinfo=UTC)),
    ],
)
def test_relative_forms_read_against_the_observation_time(value, expected):
    assert parse_time(value, NOW) == expected


def test_relative_forms_follow_the_beijing_day_not_the_utc_day():
    late = datetime(2026, 11, 21, 17, 0, tzinfo=UTC)  # already 01:00 on the 22nd in Beijing
    assert parse_time("昨天 10:00", late) == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def test_bounds_refuse_misread_times_and_say_why():
    bounds = TimeBounds()
    assert bounds.problem(datetime(2026, 11, 22, 3, 5, tzinfo=UTC), NOW) is None
    old = bounds.problem(parse_time(0), NOW)
    assert old is not None
    assert "before 2000-01-01" in old
    ahead = bounds.problem(NOW + timedelta(minutes=11), NOW)
    assert ahead is not None
    assert "in the future" in ahead
    assert "600 s" in ahead
    assert TimeBounds(max_skew=timedelta(hours=1)).problem(NOW + timedelta(minutes=11), NOW) is None
