"""Scoring's state rows: each table's rows survive their changelog, and a partition restored from rows the
previous version wrote holds exactly what this version builds from the same input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.clock import FakeClock
from services.common.partitioned import Table
from services.scoring.core import HitStage, ScoringState, TierStage
from services.scoring.forecast import ForecastTrack
from services.scoring.matcher import RuleMatcher
from services.scoring.rows import TABLES, TrackedPost, from_micros, micros
from tests.scoring.factories import STILL_CLOCK, T0, XINGHE_CONFIG, make_post

TEXT = "星河电器空调起火了，要求退款"

# What the worker before typed rows wrote for _feed() below, table by table (key -> changelog value).
VERSION_1: dict[str, dict[str, str]] = {
    "snapshots": {
        "weibo:p0": '[10001,0,0,"2024-05-01T08:00:00.000007+00:00",["xinghe"]]',
        "weibo:p1": '[2000,0,0,"2024-05-01T08:03:00.000007+00:00",["xinghe"]]',
        "weibo:p2": '[5,0,0,"2024-05-01T11:20:00.000007+00:00",["xinghe"]]',
    },
    "buckets": {
        "xinghe|28575840": '{"weibo":10001,"_o":40}',
        "xinghe|28575843": '{"weibo":2000,"_o":41}',
        "xinghe|28576040": '{"weibo":5,"_o":42}',
    },
    "windows-meta": {
        "xinghe": '{"wm":28576040,"old":28575840,"until":28576380,"sums":{"120":0,"240":0,"480":5},"o":42}'
    },
    "tiers": {
        "xinghe": '{"tier":0,"below_since":null,"override":null,"override_by":null,'
        '"since":"2024-05-01T16:15:00+00:00"}'
    },
    "top-posts": {
        "xinghe": f'[[28575840,"weibo:p0","weibo",10001,"{TEXT}",null],'
        f'[28575843,"weibo:p1","weibo",2000,"{TEXT}",null],[28576040,"weibo:p2","weibo",5,"{TEXT}",null]]'
    },
    "counted": {
        "xinghe|weibo:p0": '"2024-05-01T08:00:00.000007+00:00"',
        "xinghe|weibo:p1": '"2024-05-01T08:03:00.000007+00:00"',
        "xinghe|weibo:p2": '"2024-05-01T11:20:00.000007+00:00"',
    },
}


def _feed(state: ScoringState) -> None:
    clock = FakeClock(T0)
    hits = HitStage(XINGHE_CONFIG, RuleMatcher(XINGHE_CONFIG.rules), clock=clock, max_skew=STILL_CLOCK)
    tiers = TierStage(XINGHE_CONFIG, clock=clock, max_skew=STILL_CLOCK)
    for i, (minute, spread) in enumerate([(0, 10_001), (3, 2_000), (200, 5)]):
        at = T0 + timedelta(minutes=minute, microseconds=7)
        for hit in hits.process(make_post(post_id=f"p{i}", event_time=at, reposts=spread), state):
            tiers.process(hit, state, offset=40 + i)
    clock.set(T0 + timedelta(hours=9, minutes=1))
    tiers.tick(state)


def _tables(state: ScoringState) -> dict[str, Table[Any]]:
    return {
        "snapshots": state.snapshots,
        "buckets": state.buckets,
        "windows-meta": state.windows_meta,
        "tiers": state.tiers,
        "top-posts": state.top,
        "counted": state.counted,
    }


def _rows(state: ScoringState) -> dict[str, dict[str, Any]]:
    return {name: dict(table.items()) for name, table in _tables(state).items()}


def test_a_partition_restored_from_version_1_rows_holds_what_this_version_builds() -> None:
    built = ScoringState.in_memory()
    _feed(built)
    tables = {name: make(changelog=False) for name, make in TABLES.items()}
    for name, rows in VERSION_1.items():
        tables[name].restore({key: value.encode() for key, value in rows.items()})
    assert _rows(ScoringState.of(tables)) == _rows(built)


@pytest.mark.parametrize("name", sorted(VERSION_1))
def test_every_row_comes_back_from_its_changelog_as_it_was(name: str) -> None:
    state = ScoringState.in_memory()
    _feed(state)
    table = _tables(state)[name]
    written = TABLES[name]()
    for key, row in table.items():
        written.set(key, row)
    changes = {key: value for key, value in written.take_changes() if value is not None}
    assert len(changes) == len(table)
    assert all(value.startswith(b'["2",') for value in changes.values())  # version 2, and it says so
    restored = TABLES[name]()
    restored.restore(changes)
    assert dict(restored.items()) == dict(table.items())


def test_times_are_exact_to_the_microsecond() -> None:
    at = T0 + timedelta(microseconds=1)
    assert micros(at) - micros(T0) == 1
    assert from_micros(micros(at)) == at
    row = TrackedPost(1, 2, 3, micros(at), ("xinghe",))
    assert TABLES["snapshots"]().codec.encode(row) == b'["2",1,2,3,1714550400000001,["xinghe"]]'
    counted = TABLES["counted"]().codec  # a float in memory, an integer on the changelog
    assert counted.encode(float(micros(at))) == b'["2",1714550400000001]'
    assert counted.decode(b'["2",1714550400000001]') == micros(at)
    late = micros(datetime(2255, 1, 1, tzinfo=UTC)) + 1  # still exact
    assert counted.decode(counted.encode(float(late))) == late


def test_forecast_rows_of_the_previous_version_are_read_and_each_row_round_trips() -> None:
    table = TABLES["forecasts"]()
    table.restore({"xinghe|1": b"[29000074,29000110.5,null]", "xinghe|2": b"[29000080,29000090.25,29000085]"})
    assert dict(table.items()) == {
        "xinghe|1": ForecastTrack(29000074, 29000110.5),
        "xinghe|2": ForecastTrack(29000080, 29000090.25, 29000085),
    }
    for key, row in list(table.items()):
        table.set(key, row)
    changes = dict(table.take_changes())
    assert changes["xinghe|1"] == b'["2",29000074,29000110.5,null]'
    again = TABLES["forecasts"]()
    again.restore({k: v for k, v in changes.items() if v is not None})
    assert dict(again.items()) == dict(table.items())
