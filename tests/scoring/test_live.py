"""The live spread snapshot and the forecast on the tick, fed through the real scoring stages; no Kafka."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from schemas.events import Tier, TierForecast
from services.common.clock import FakeClock
from services.common.config import ForecastConfig
from services.scoring.core import HitStage, ScoringState, TierStage
from services.scoring.forecast import ForecastStage
from services.scoring.live import LiveStage
from services.scoring.matcher import RuleMatcher
from services.scoring.windows import minute_of
from tests.scoring.factories import STILL_CLOCK, T0, XINGHE_CONFIG, make_post


class World:
    def __init__(self, interval: float = 15.0) -> None:
        self.clock = FakeClock(T0)  # the wall clock: the snapshot interval
        self.hits = HitStage(
            XINGHE_CONFIG, RuleMatcher(XINGHE_CONFIG.rules), clock=self.clock, max_skew=STILL_CLOCK
        )
        self.tiers = TierStage(XINGHE_CONFIG, clock=self.clock, max_skew=STILL_CLOCK)
        self.state = ScoringState.in_memory()
        self.live = LiveStage(
            self.tiers, ForecastStage(ForecastConfig(), clock=self.clock), interval, 120, clock=self.clock
        )
        self.changes: list[Any] = []
        self.n = 0

    def post(self, likes: int, minutes: float = 0.0) -> None:
        """A new post `minutes` after T0 with `likes` likes (its whole spread)."""
        self.n += 1
        at = T0 + timedelta(minutes=minutes)
        post = make_post(post_id=f"p{self.n}", event_time=at, published_at=at, likes=likes)
        for hit in self.hits.process(post, self.state):
            self.changes += self.tiers.process(hit, self.state)

    def tick(self, minutes: float) -> tuple[list[TierForecast], list[Any]]:
        """The worker's tick at T0 + minutes (wall and scoring clock alike): tiers, then the live stage."""
        self.clock.set(T0 + timedelta(minutes=minutes))
        self.changes += self.tiers.tick(self.state)
        return self.live.tick(self.state, self.clock())


def test_a_snapshot_carries_the_tier_counts_a_series_and_the_posts_driving_it() -> None:
    w = World()
    w.post(3_000, 0.2)
    w.post(5_000, 2.5)
    _, (snap,) = w.tick(3.1)
    assert snap.group == "xinghe"
    assert snap.tier == Tier.none
    assert snap.counts == {"8h": 8_000, "4h": 8_000, "2h": 8_000}
    assert len(snap.series) == 120
    # The series ends with the tick's minute; the posts' minutes hold their spread, the others nothing.
    assert snap.series_start + timedelta(minutes=120) == T0 + timedelta(minutes=4)
    assert snap.series[-4:] == (3_000, 0, 5_000, 0)
    assert sum(snap.series) == 8_000
    assert [(p.post, p.spread) for p in snap.top_posts] == [("weibo:p2", 5_000), ("weibo:p1", 3_000)]


def test_counts_move_between_tier_changes_and_a_snapshot_follows_each_move() -> None:
    w = World(interval=15)
    w.post(11_000, 0.0)  # level 3 (more than 10,000 in 8 h)
    _, (first,) = w.tick(0.5)
    assert first.tier == Tier.level3
    changes = len(w.changes)
    w.post(20_000, 1.0)
    w.post(9_000, 1.2)
    _, (second,) = w.tick(1.5)
    assert len(w.changes) == changes  # still level 3: no tier change ...
    assert second.counts["4h"] == 40_000  # ... but the board sees the spread grow
    assert second.tier == Tier.level3
    assert second.event_time > first.event_time


def test_snapshots_are_sent_at_most_every_interval_and_only_on_a_change() -> None:
    w = World(interval=15)
    w.post(100, 0.0)
    assert len(w.tick(0.10)[1]) == 1
    w.post(200, 0.15)
    assert w.tick(0.20)[1] == []  # changed, but 6 s after the last one
    (snap,) = w.tick(0.40)[1]  # 18 s after: the change goes out
    assert snap.counts["2h"] == 300
    assert w.tick(0.70)[1] == []  # 18 s later, nothing changed
    assert w.tick(0.95)[1] == []


def test_a_quiet_group_sends_nothing_while_its_series_only_shifts_zeros() -> None:
    w = World(interval=1)
    w.post(100, 0.0)
    w.tick(0.5)
    (moved,) = w.tick(1.5)[1]  # the minute slid: the series shows the post a minute further back
    assert moved.series[-2:] == (100, 0)
    w.tick(200.0)  # 8 h later everything has left the windows: one snapshot of zeros ...
    assert w.tick(201.0)[1] == []  # ... and then silence


def climb(w: World, rate: int, start: int, end: int) -> None:
    """`rate` spread a minute, 10 % above and below in turn, from minute start to end (exclusive)."""
    for m in range(start, end):
        w.post(round(rate * (1 + 0.1 * (-1) ** m)), m + 0.5)


def test_a_steady_climb_warns_once_of_level_1_before_it_is_crossed() -> None:
    w = World()
    forecasts: list[TierForecast] = []
    for m in range(0, 110):
        climb(w, 1_000, m, m + 1)
        forecasts += w.tick(m + 1.02)[0]
        forecasts += w.tick(m + 1.5)[0]  # a second tick within the minute asks nothing again
    level1 = [f for f in forecasts if f.tier == Tier.level1]
    crossed = next(c for c in w.changes if c.tier == Tier.level1)
    assert len(level1) == 1
    (warning,) = level1
    assert crossed.window_end - warning.event_time >= timedelta(minutes=15)
    assert warning.expected_at - crossed.window_end < timedelta(minutes=5)
    assert warning.current_tier == Tier.level2
    assert len({f.event_id for f in forecasts}) == len(forecasts)


@pytest.mark.parametrize("every", [3, 7])
def test_sparse_ticks_ask_every_minute_they_skipped(every: int) -> None:
    """What is forecast does not depend on when ticks come: the minutes in between are asked too."""
    dense, sparse = World(), World()
    expected: list[TierForecast] = []
    got: list[TierForecast] = []
    for m in range(0, 95):
        climb(dense, 1_000, m, m + 1)
        climb(sparse, 1_000, m, m + 1)
        expected += dense.tick(m + 1.02)[0]
        if m >= 55 and m % every == 0:  # level 2 since minute 50: from here on the tier stays
            got += sparse.tick(m + 1.02)[0]
        elif m < 55:
            got += sparse.tick(m + 1.02)[0]
    assert [f.event_id for f in got] == [f.event_id for f in expected if f.event_time <= got[-1].event_time]
    assert any(f.tier == Tier.level1 for f in got)


def test_a_forecast_off_in_the_config_emits_nothing() -> None:
    w = World()
    w.live.forecast = ForecastStage(ForecastConfig(enabled=False), clock=w.clock)
    forecasts = []
    for m in range(0, 100):
        climb(w, 1_000, m, m + 1)
        forecasts += w.tick(m + 1.02)[0]
    assert forecasts == []
    assert minute_of(w.clock()) == minute_of(T0) + 100
