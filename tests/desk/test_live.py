"""Live spread on the desk without a broker: the read model, /v1/tiers, the board fragment and the gauges."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from schemas.events import (
    IncidentAction,
    Platform,
    SpreadPost,
    SpreadSnapshot,
    Tier,
    TierForecast,
    TierForecastInputs,
    TierOverride,
)
from services.common.config import load_config
from services.desk.readmodel import ReadModel
from services.desk.settings import DeskSettings
from services.desk.store import open_store
from tests.desk.world import TOKEN, desk_app
from tests.factories import T0, tier_change

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def snapshot(
    at: datetime, two_hours: int, *, tier: Tier = Tier.level3, group: str = "xinghe"
) -> SpreadSnapshot:
    series = tuple([0] * 100 + [two_hours // 20] * 20)
    return SpreadSnapshot(
        event_time=at,
        group=group,
        tier=tier,
        counts={"8h": two_hours + 5_000, "4h": two_hours + 1_000, "2h": two_hours},
        series_start=at - timedelta(minutes=119),
        series=series,
        top_posts=(
            SpreadPost(post="weibo:p1", platform=Platform.weibo, spread=9_000, excerpt=HOSTILE, url=None),
        ),
        detected_at=at,
    )


def forecast(at: datetime, eta: int, tier: Tier = Tier.level1) -> TierForecast:
    return TierForecast(
        event_time=at,
        group="xinghe",
        tier=tier,
        current_tier=Tier.level2,
        expected_at=at + timedelta(minutes=eta),
        earliest_at=at + timedelta(minutes=eta - 5),
        latest_at=at + timedelta(minutes=eta + 5),
        confidence=0.8,
        lead_minutes=30,
        inputs=TierForecastInputs(
            threshold=100_000,
            window_minutes=120,
            current=80_000,
            counts={"2h": 80_000},
            fit_start=at - timedelta(minutes=15),
            fit_minutes=15,
            active_minutes=15,
            rate=1_000,
            rate_low=900,
            rate_high=1_100,
            trend=0,
            outflow=0,
        ),
        method="test",
        detected_at=at,
    )


class Publisher:
    async def action(self, group: str, action: IncidentAction) -> None:
        raise AssertionError("not used")

    async def override(self, group: str, command: TierOverride) -> None:
        raise AssertionError("not used")


def _model() -> ReadModel:
    return ReadModel(open_store(DeskSettings(database_url="sqlite://")))


@pytest.fixture
def app() -> Iterator[tuple[TestClient, ReadModel]]:
    app = desk_app(load_config(), Publisher())
    with TestClient(app, follow_redirects=False) as client:
        yield client, app.state.desk.model


def test_counts_follow_the_newest_snapshot_not_the_last_tier_change() -> None:
    m = _model()
    m.apply(tier_change(Tier.level3, Tier.none, {"2h": 9_000, "4h": 10_500, "8h": 10_500}, at=T0))
    m.apply_live(snapshot(T0 + timedelta(minutes=5), 20_000))
    m.apply_live(snapshot(T0 + timedelta(minutes=3), 15_000))  # older, arriving late: not shown
    (row,) = m.tier_board()
    assert row["tier"] == 3
    assert row["counts"]["2h"] == 20_000
    assert row["counts_at"] == T0 + timedelta(minutes=5)
    assert row["live"]["top_posts"][0]["post"] == "weibo:p1"
    # A tier change newer than the snapshot wins until the next snapshot.
    m.apply(
        tier_change(
            Tier.level2, Tier.level3, {"2h": 30_000, "4h": 50_001, "8h": 60_000}, at=T0 + timedelta(minutes=6)
        )
    )
    assert m.tier_board()[0]["counts"]["4h"] == 50_001


def test_a_forecast_stands_until_the_tier_is_reached_or_it_is_due() -> None:
    m = _model()
    m.apply(tier_change(Tier.level2, Tier.none, {"2h": 60_000}, at=T0))
    m.apply_live(forecast(T0 + timedelta(minutes=1), 20))
    m.apply_live(snapshot(T0 + timedelta(minutes=4), 85_000, tier=Tier.level2))
    fc = m.tier_board()[0]["forecast"]
    assert (fc["tier"], fc["minutes"]) == (1, 17)  # from the newest scoring time the desk has seen
    m.apply_live(snapshot(T0 + timedelta(minutes=30), 95_000, tier=Tier.level2))
    assert m.tier_board()[0]["forecast"] is None  # its crossing was due 9 minutes ago
    m.apply_live(forecast(T0 + timedelta(minutes=31), 10))
    assert m.tier_board()[0]["forecast"] is not None
    m.apply(tier_change(Tier.level1, Tier.level2, {"2h": 100_001}, at=T0 + timedelta(minutes=33)))
    assert m.tier_board()[0]["forecast"] is None
    assert m.forecasts["xinghe"] == {}


def test_v1_tiers_shows_live_counts_and_the_estimate(app) -> None:
    client, m = app
    m.apply(tier_change(Tier.level2, Tier.none, {"2h": 60_000, "4h": 60_000, "8h": 60_000}, at=T0))
    m.apply_live(snapshot(T0 + timedelta(minutes=2), 70_000, tier=Tier.level2))
    m.apply_live(forecast(T0 + timedelta(minutes=2), 25))
    body = client.get("/v1/tiers", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    (row,) = body["groups"]
    assert row["counts"] == {"8h": 75_000, "4h": 71_000, "2h": 70_000}
    assert row["live"]["series"][-1] == 3_500
    assert row["forecast"]["minutes"] == 25
    assert row["forecast"]["tier"] == 1


def test_the_board_shows_the_minute_sparkline_the_estimate_and_inert_linked_posts(app) -> None:
    client, m = app
    m.apply(tier_change(Tier.level2, Tier.none, {"2h": 60_000}, at=T0))
    m.apply_live(snapshot(T0 + timedelta(minutes=2), 70_000, tier=Tier.level2))
    m.apply_live(forecast(T0 + timedelta(minutes=2), 25))
    client.post("/console/login", data={"actor": "张三", "token": TOKEN, "next": ""})
    page = client.get("/console/board").text
    assert 'data-spark="minutes"' in page
    assert "预计 25 分钟后达到一级" in page
    assert "70,000" in page
    assert 'href="/console/ledger?group=xinghe&amp;post=weibo%3Ap1"' in page
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page


def test_spread_gauges_carry_configured_groups_only(app) -> None:
    client, m = app
    m.apply_live(snapshot(T0, 42_000))
    m.apply_live(snapshot(T0, 1, group=HOSTILE))  # a name on a topic that is no configured group
    m.apply_live(forecast(T0, 20))
    text = generate_latest(client.app.state.process.registry).decode()
    assert 'yuqing_spread_interactions{group="xinghe",window="2h"} 42000.0' in text
    assert 'yuqing_tier_forecast_seconds{group="xinghe",tier="1"} 1200.0' in text
    assert "script" not in text


def test_a_snapshot_read_in_the_minute_of_a_change_after_it_is_newer() -> None:
    m = _model()
    change = tier_change(Tier.level3, Tier.none, {"2h": 11_000}, at=T0 + timedelta(minutes=1))
    m.apply(change.model_copy(update={"detected_at": T0 + timedelta(seconds=10)}))  # window_end: minute's end
    m.apply_live(snapshot(T0 + timedelta(seconds=20), 18_000))
    assert m.tier_board()[0]["counts"]["2h"] == 18_000
