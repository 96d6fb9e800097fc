"""Forecast warnings: one page per standing warning; another only when due much sooner, or after a lapse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import AlertKind, Tier, TierChange, TierForecast, TierForecastInputs
from services.notifier.forecasts import EARLIER_MINUTES, ForecastWarnings

T0 = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)


def forecast(minute: int, eta: float, tier: Tier = Tier.level1, group: str = "xinghe") -> TierForecast:
    """A forecast made at T0 + minute expecting the crossing `eta` minutes later."""
    now = T0 + timedelta(minutes=minute)
    expected = now + timedelta(minutes=eta)
    return TierForecast(
        event_time=now,
        group=group,
        tier=tier,
        current_tier=Tier.level2 if tier == Tier.level1 else Tier.none,
        expected_at=expected,
        earliest_at=now + timedelta(minutes=eta * 0.6),
        latest_at=now + timedelta(minutes=eta * 1.3),
        confidence=0.9,
        lead_minutes=30,
        inputs=TierForecastInputs(
            threshold=100_000,
            window_minutes=120,
            current=70_000,
            counts={"8h": 90_000, "4h": 80_000, "2h": 70_000},
            fit_start=now - timedelta(minutes=15),
            fit_minutes=15,
            active_minutes=15,
            rate=1_500.0,
            rate_low=1_200.0,
            rate_high=1_800.0,
            trend=0.0,
            outflow=3_000,
        ),
        method="test",
        detected_at=now,
    )


def rows() -> dict[str, dict[str, Any]]:
    return {}


def change(tier: Tier, minute: int, previous: Tier = Tier.level2) -> TierChange:
    at = T0 + timedelta(minutes=minute)
    return TierChange(
        event_time=at,
        group="xinghe",
        previous=previous,
        tier=tier,
        direction="up" if tier.severity > previous.severity else "down",
        reason="threshold",
        window_end=at,
        counts={"2h": 100_001},
        detected_at=at,
    )


def test_the_first_forecast_pages_in_minutes_with_a_key_of_the_warning() -> None:
    w, state = ForecastWarnings(), rows()
    alert = w.add(forecast(0, 19.4), state)
    assert alert is not None
    assert alert.kind == AlertKind.forecast
    assert alert.tier == Tier.level1
    assert alert.title == "预计 20 分钟后达到一级: xinghe"
    assert "70,000" in alert.body
    assert "100,000" in alert.body
    assert alert.dedup_key == f"forecast|xinghe|1|{T0.isoformat()}"


def test_later_forecasts_of_a_standing_warning_are_silent_and_a_repeat_is_nothing() -> None:
    w, state = ForecastWarnings(), rows()
    first = w.add(forecast(0, 20), state)
    assert first is not None
    assert w.add(forecast(0, 20), state) is None  # read again
    assert w.add(forecast(3, 25), state) is None  # later, not sooner
    assert w.add(forecast(5, 6 + EARLIER_MINUTES), state) is None  # sooner, but by less than the margin
    assert w.add(forecast(1, 5), state) is None  # older than what was seen: a replay
    sooner = w.add(forecast(8, 1), state)  # due at 9 instead of 20
    assert sooner is not None
    assert sooner.dedup_key != first.dedup_key
    assert sooner.dedup_key.startswith(f"forecast|xinghe|1|{T0.isoformat()}|")
    assert "预计 1 分钟" in sooner.title


def test_a_reached_tier_ends_the_warning_and_a_late_forecast_for_it_is_dropped() -> None:
    w, state = ForecastWarnings(), rows()
    assert w.add(forecast(0, 20), state) is not None
    w.tier_changed(change(Tier.level1, 18), state)
    assert w.add(forecast(19, 10), state) is None  # raced the tier change: the tier is held
    w.tier_changed(change(Tier.level2, 90, previous=Tier.level1), state)
    again = w.add(forecast(120, 15), state)  # down again, climbing again: a new warning
    assert again is not None
    assert again.dedup_key == f"forecast|xinghe|1|{(T0 + timedelta(minutes=120)).isoformat()}"


def test_a_warning_lapses_after_its_lead_time_without_forecasts() -> None:
    w, state = ForecastWarnings(), rows()
    assert w.add(forecast(0, 20), state) is not None
    assert w.add(forecast(30, 20), state) is None  # still standing at 30 minutes
    assert w.add(forecast(61, 20), state) is not None  # 31 minutes after the last: a new warning


def test_tiers_and_groups_are_warned_of_apart() -> None:
    w, state = ForecastWarnings(), rows()
    assert w.add(forecast(0, 20, Tier.level3), state) is not None
    assert w.add(forecast(0, 20, Tier.level1), state) is not None
    assert w.add(forecast(0, 20, Tier.level1, group="gree"), state) is not None
    w.tier_changed(change(Tier.level3, 5, previous=Tier.none), state)
    assert "xinghe|3" not in state
    assert "xinghe|1" in state
