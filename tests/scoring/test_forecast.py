"""The tier forecast's core: estimates, guards, dedup and the event, over hand-built minute series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from bench.forecast import run_sample
from schemas.events import Tier, TierForecast
from services.common.config import ForecastConfig, TiersConfig, YuqingConfig
from services.common.partitioned import Table
from services.scoring.exceptions import BadSeries
from services.scoring.forecast import ForecastStage, ForecastTrack, estimate
from services.scoring.rows import TABLES

CFG = ForecastConfig()
TIERS = TiersConfig()
L1 = next(r for r in TIERS.rules if r.tier == 1)  # more than 100,000 within 2 h
L3 = next(r for r in TIERS.rules if r.tier == 3)  # more than 10,000 within 8 h
M0 = 29_000_000  # an epoch minute (2025-02-20): series are {epoch minute: spread}


def at(minute: int) -> datetime:
    """The start of an epoch minute: evaluating here uses the minutes before it."""
    return datetime.fromtimestamp(minute * 60, UTC)


def steady(rate: int, start: int, end: int, wobble: float = 0.1) -> dict[int, int]:
    """`rate` a minute from `start` to `end` (exclusive), alternately wobble above and below it."""
    return {M0 + m: round(rate * (1 + wobble * (-1) ** m)) for m in range(start, end)}


def crossing(series: dict[int, int], window: int, threshold: int) -> float:
    """When the window sum first passes the threshold, in epoch minutes, linear within the minute."""
    for m in sorted(series):
        before = sum(series.get(k, 0) for k in range(m - window, m))
        after = before + series[m] - series.get(m - window, 0)
        if after > threshold:
            return m + (threshold - before) / (after - before)
    raise AssertionError("never crossed")


def walk(
    series: dict[int, int], start: int, end: int, current: Tier = Tier.level2, **cfg: Any
) -> list[TierForecast]:
    """Evaluate every minute boundary from start to end, feeding only the minutes already complete."""
    stage = ForecastStage(ForecastConfig(**cfg), clock=lambda: at(M0))
    state = _table()
    events = []
    for m in range(start, end):
        seen = {k: v for k, v in series.items() if k < M0 + m}
        events += stage.evaluate("xinghe", seen, at(M0 + m), TIERS, current, state)
    return events


def _table() -> Table[ForecastTrack]:
    return TABLES["forecasts"](changelog=False)


def minutes(t: datetime) -> float:
    return t.timestamp() / 60


# ---------------------------------------------------------------- a climb that crosses


def test_a_steady_climb_warns_before_the_crossing_with_the_eta_in_its_band() -> None:
    series = steady(1000, 0, 200)  # the 2 h sum passes 100,000 about 100 minutes in
    crossed = crossing(series, 120, 100_000)
    events = [e for e in walk(series, 30, 200) if e.tier == Tier.level1]
    assert events, "no warning before a steady climb crossed level 1"
    first = events[0]
    lead = crossed - minutes(first.event_time)
    assert CFG.lead_minutes - 1 <= lead <= CFG.lead_minutes  # as soon as the crossing is within the lead
    assert abs(minutes(first.expected_at) - crossed) < 1
    assert minutes(first.earliest_at) <= crossed <= minutes(first.latest_at)
    assert first.current_tier == Tier.level2
    assert first.confidence >= CFG.min_confidence
    inputs = first.inputs
    assert inputs.threshold == 100_000
    assert inputs.window_minutes == 120
    assert inputs.rate == pytest.approx(1000, rel=0.05)
    assert inputs.trend == 0
    now = minutes(first.event_time)
    assert inputs.current == sum(v for k, v in series.items() if now - 120 <= k < now)
    assert inputs.counts["2h"] == inputs.current
    assert inputs.outflow == 0


def test_the_estimate_is_a_function_of_the_complete_minutes_only() -> None:
    series = steady(1000, 0, 90)
    later = {**series, M0 + 90: 10**9}  # the minute in progress, however large, is not read
    assert estimate(series, M0 + 89, Tier.level1, L1, CFG) == estimate(later, M0 + 89, Tier.level1, L1, CFG)


# ---------------------------------------------------------------- plateaus, spikes, tiers already reached


def test_a_plateau_under_the_threshold_never_warns() -> None:
    # 800 a minute for six hours: the 2 h sum climbs to 96,000 and stays there.
    assert walk(steady(800, 0, 360, wobble=0.3), 30, 360) == []


def test_minutes_sliding_out_of_the_window_are_subtracted() -> None:
    # The same 2 h sum (90,000) and the same last 20 minutes (1,500 a minute): 10,000 short of level 1, so
    # about seven minutes away, unless the window's oldest minutes, about to leave, carry more than comes in.
    now = M0 + 300
    climbing = {m: 1500 for m in range(now - 60, now)}
    draining = {m: 4000 for m in range(now - 120, now - 105)} | {m: 1500 for m in range(now - 20, now)}
    assert sum(climbing.values()) == sum(draining.values()) == 90_000
    rising = estimate(climbing, now - 1, Tier.level1, L1, CFG)
    assert rising.qualifies
    assert rising.expected == pytest.approx(10_000 / 1500, abs=0.01)
    falling = estimate(draining, now - 1, Tier.level1, L1, CFG)
    assert falling.rate == rising.rate
    assert falling.reason == "beyond_lead"
    # 15 minutes drain 60,000 and bring 22,500; then nothing leaves until the last 20 minutes do.
    assert falling.expected == pytest.approx(15 + (100_000 - 52_500) / 1500, abs=0.01)


def test_a_single_huge_minute_never_warns() -> None:
    series = steady(10, 0, 600)  # level 3 needs more than 10,000 in 8 h; this is ~4,800
    series[M0 + 300] = 5_000
    assert walk(series, 290, 600, current=Tier.none) == []
    spiked = estimate(series, M0 + 300, Tier.level3, L3, CFG)
    assert spiked.reason == "spike"


def test_a_spike_that_dies_never_warns() -> None:
    # At level 2 with 350 a minute; then 25,000 in one minute, falling by 60% a minute: the 2 h sum peaks
    # near 84,000 and the spike slides out two hours later.
    series = steady(350, 0, 480, wobble=0.2)
    for k in range(12):
        series[M0 + 300 + k] += round(25_000 * 0.4**k)
    assert max(sum(series.get(m - k, 0) for k in range(120)) for m in series) < 100_000
    assert walk(series, 280, 480) == []


def test_a_cooling_story_is_projected_to_cool() -> None:
    # 84,000 in the 2 h window, an hour at 1,200 a minute, then 15 minutes falling from 1,500 to 100: their
    # mean (800) would cross in about 20 minutes; the falling rate does not get there.
    now = M0 + 300
    series = {m: 1200 for m in range(now - 75, now - 15)} | {now - 15 + k: 1500 - 100 * k for k in range(15)}
    est = estimate(series, now - 1, Tier.level1, L1, CFG)
    assert est.trend == pytest.approx(-100)
    assert est.rate < 100
    assert est.reason == "no_crossing"
    rising = {**series, **{now - 15 + k: 100 + 100 * k for k in range(15)}}  # the same minutes, rising
    assert estimate(rising, now - 1, Tier.level1, L1, CFG).trend == 0  # a rise is not extrapolated
    assert estimate(rising, now - 1, Tier.level1, L1, CFG).qualifies


def test_no_forecast_of_a_tier_already_reached() -> None:
    series = steady(1000, 0, 200)
    assert walk(series, 30, 200, current=Tier.level1) == []
    stage = ForecastStage(CFG)
    assert stage.estimates(series, at(M0 + 70), TIERS, Tier.level1) == []
    assert [e.tier for e in stage.estimates(series, at(M0 + 70), TIERS, Tier.level3)] == [
        Tier.level2,
        Tier.level1,
    ]
    # Over the threshold already (the tier stage has not seen it yet, or it is pinned lower): no forecast.
    assert estimate(series, M0 + 150, Tier.level1, L1, CFG).reason == "above"


def test_reaching_the_tier_ends_the_warning() -> None:
    stage = ForecastStage(CFG, clock=lambda: at(M0))
    state = _table()
    series = steady(1000, 0, 200)
    assert stage.evaluate("xinghe", series, at(M0 + 75), TIERS, Tier.level2, state)
    assert "xinghe|1" in state
    assert stage.evaluate("xinghe", series, at(M0 + 102), TIERS, Tier.level1, state) == []
    assert len(state) == 0


def test_forecasts_off() -> None:
    assert walk(steady(1000, 0, 200), 30, 200, enabled=False) == []


# ---------------------------------------------------------------- dedup


def test_one_warning_per_episode_while_the_expected_time_holds() -> None:
    series = steady(1000, 0, 200)
    events = [e for e in walk(series, 30, 200) if e.tier == Tier.level1]
    assert len(events) == 1


def test_a_second_call_in_the_same_minute_returns_nothing() -> None:
    stage = ForecastStage(CFG, clock=lambda: at(M0))
    state = _table()
    series = steady(1000, 0, 200)
    first = stage.evaluate("xinghe", series, at(M0 + 75), TIERS, Tier.level2, state)
    assert len(first) == 1
    assert (
        stage.evaluate("xinghe", series, at(M0 + 75) + timedelta(seconds=59), TIERS, Tier.level2, state) == []
    )


def test_a_replay_gives_the_same_event() -> None:
    series = steady(1000, 0, 200)

    def once() -> list[TierForecast]:
        return ForecastStage(CFG, clock=lambda: at(M0)).evaluate(
            "xinghe", series, at(M0 + 75), TIERS, Tier.level2, _table()
        )

    assert once() == once()
    assert once()[0].event_id == TierForecast.model_validate_json(once()[0].model_dump_json()).event_id


def test_a_new_forecast_when_the_expected_time_moves_by_more_than_reemit_minutes() -> None:
    # 700 a minute, then 2,000 a minute from minute 80: the crossing comes much sooner than first said.
    series = steady(700, 0, 80)
    series.update(steady(2000, 80, 200))
    events = [e for e in walk(series, 30, 200) if e.tier == Tier.level1]
    assert len(events) == 2
    first, second = events
    assert minutes(first.expected_at) - minutes(second.expected_at) > CFG.reemit_minutes
    # With a looser re-emit bound the first warning stands alone.
    assert len([e for e in walk(series, 30, 200, reemit_minutes=200) if e.tier == Tier.level1]) == 1


def test_a_warning_that_stops_qualifying_for_the_lead_time_can_come_again() -> None:
    # A climb to within reach of level 1, a quiet hour (the warning lapses, the window drains), a climb again.
    series = steady(1000, 0, 80)
    series.update(steady(1000, 200, 300))
    events = [e for e in walk(series, 30, 300) if e.tier == Tier.level1]
    assert [minutes(e.event_time) < M0 + 100 for e in events] == [True, False]


# ---------------------------------------------------------------- hostile input


def test_an_empty_series_gives_no_estimate() -> None:
    est = estimate({}, M0, Tier.level3, L3, CFG)
    assert est.reason == "sparse"
    assert est.current == 0
    assert est.expected is None
    assert walk({}, 0, 30, current=Tier.none) == []


def test_gaps_count_as_minutes_without_spread() -> None:
    # Every third minute only: too few active minutes in the fit window for a trend.
    series = {M0 + m: 3000 for m in range(0, 100, 3)}
    assert estimate(series, M0 + 80, Tier.level1, L1, CFG).reason == "sparse"


@pytest.mark.parametrize("bad", [-1, 10**12 + 1, 1.5, "7", None, True])
def test_a_value_that_is_not_a_count_is_refused_naming_the_minute(bad: object) -> None:
    series: dict[int, Any] = steady(1000, 0, 100)
    series[M0 + 60] = bad
    with pytest.raises(BadSeries, match=f"minute {M0 + 60}"):
        estimate(series, M0 + 99, Tier.level1, L1, CFG)


def test_huge_counts_stay_exact_and_valid() -> None:
    # 500 billion a minute for 100 minutes, ten such minutes short of the threshold.
    per_minute = 10**12 // 2
    rule = L1.model_copy(update={"threshold": 110 * per_minute})
    tiers = TIERS.model_copy(update={"rules": tuple(rule if r.tier == 1 else r for r in TIERS.rules)})
    series = steady(per_minute, 0, 100, wobble=0.0)
    events = ForecastStage(CFG, clock=lambda: at(M0)).evaluate(
        "xinghe", series, at(M0 + 100), tiers, Tier.level2, _table()
    )
    assert [e.tier for e in events] == [Tier.level1]
    assert events[0].inputs.current == 100 * per_minute
    assert minutes(events[0].expected_at) == pytest.approx(M0 + 110, abs=1 / 60)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        ForecastStage(CFG).evaluate("xinghe", {}, datetime(2026, 1, 1), TIERS, Tier.none, _table())  # noqa: DTZ001


# ---------------------------------------------------------------- config and event


def test_config_defaults_and_validation() -> None:
    config = YuqingConfig.model_validate({"rules": {"groups": [{"name": "x", "brands": ["星河"]}]}})
    assert config.forecast == ForecastConfig()
    assert (CFG.lead_minutes, CFG.fit_minutes, CFG.min_confidence) == (30, 15, 0.75)
    with pytest.raises(ValidationError, match="min_active_minutes"):
        ForecastConfig(fit_minutes=10, min_active_minutes=11)
    with pytest.raises(ValidationError, match="min_confidence"):
        ForecastConfig(min_confidence=0.4)
    with pytest.raises(ValidationError, match="lead_minutes"):
        ForecastConfig(lead_minutes=0)


def test_the_event_refuses_an_incoherent_band_or_tier() -> None:
    event = walk(steady(1000, 0, 200), 30, 200)[-1]
    data = event.model_dump(exclude={"event_id"})
    with pytest.raises(ValidationError, match="earliest_at <= expected_at"):
        TierForecast.model_validate({**data, "latest_at": event.earliest_at - timedelta(minutes=1)})
    with pytest.raises(ValidationError, match="more severe than current_tier"):
        TierForecast.model_validate({**data, "current_tier": event.tier})


# ---------------------------------------------------------------- the bundled sample crisis


def test_the_sample_crisis_is_warned_of_at_least_15_minutes_before_level_1() -> None:
    """The issue's goal, through the real HitStage and TierStage (bench/forecast.py, docs/quality.md)."""
    run = run_sample()
    lead = run.lead(Tier.level1)
    assert lead is not None
    assert lead >= 15
    assert run.false_warnings() == []
