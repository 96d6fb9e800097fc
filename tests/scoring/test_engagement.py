from __future__ import annotations

from datetime import timedelta

from schemas.events import Engagement
from services.common import json
from services.scoring.engagement import Snapshot, apply_snapshot, cumulative_of
from tests.scoring.factories import T0, make_post


def test_first_snapshot_counts_fully() -> None:
    delta, snap = apply_snapshot(None, make_post(reposts=10, comments=5, likes=3))
    assert delta == Engagement(reposts=10, comments=5, likes=3)
    assert snap == Snapshot(10, 5, 3, T0)


def test_growth_counts_delta() -> None:
    _, snap = apply_snapshot(None, make_post(reposts=10, comments=5, likes=3))
    later = T0 + timedelta(minutes=5)
    delta, snap2 = apply_snapshot(snap, make_post(event_time=later, reposts=15, comments=5, likes=10))
    assert delta == Engagement(reposts=5, comments=0, likes=7)
    assert delta.total == 12
    assert snap2 == Snapshot(15, 5, 10, later)


def test_equal_time_snapshot_adds_nothing() -> None:
    _, snap = apply_snapshot(None, make_post(reposts=10))
    delta, snap2 = apply_snapshot(snap, make_post(reposts=99))
    assert delta == Engagement()
    assert snap2 is snap


def test_older_snapshot_adds_nothing_and_keeps_state() -> None:
    _, snap = apply_snapshot(None, make_post(reposts=10, comments=2))
    delta, snap2 = apply_snapshot(snap, make_post(event_time=T0 - timedelta(minutes=1), reposts=50))
    assert delta.total == 0
    assert snap2 == snap


def test_drop_then_rise_back_not_double_counted() -> None:
    _, s1 = apply_snapshot(None, make_post(reposts=100, comments=50, likes=200))
    d2, s2 = apply_snapshot(
        s1, make_post(event_time=T0 + timedelta(minutes=1), reposts=80, comments=40, likes=150)
    )
    assert d2.total == 0
    assert (s2.reposts, s2.comments, s2.likes) == (100, 50, 200)
    assert s2.observed_at == T0 + timedelta(minutes=1)
    d3, s3 = apply_snapshot(
        s2, make_post(event_time=T0 + timedelta(minutes=2), reposts=100, comments=50, likes=210)
    )
    assert d3 == Engagement(reposts=0, comments=0, likes=10)
    assert (s3.reposts, s3.comments, s3.likes) == (100, 50, 210)


def test_a_count_never_reported_stays_unknown_in_the_hit() -> None:
    reported = Engagement.model_validate({"reposts": 10, "comments": None, "likes": 3})
    cumulative = cumulative_of(Snapshot(10, 0, 3, T0), reported)
    assert cumulative.unknown == {"comments"}
    assert json.loads(json.dumps(cumulative))["comments"] is None


def test_a_count_known_earlier_is_not_unknown_when_a_later_snapshot_omits_it() -> None:
    reported = Engagement.model_validate({"reposts": 10, "comments": None, "likes": 3})
    cumulative = cumulative_of(Snapshot(10, 7, 3, T0), reported)
    assert cumulative.unknown == frozenset()
    assert cumulative.comments == 7
