"""Routing, on-call rotations, rate limits, fallback and briefings, with injected time."""

from __future__ import annotations

import os
import time as _time
from datetime import UTC, date, datetime, time, timedelta

import pytest

from schemas.events import Alert, AlertKind, Tier
from services.common.clock import FakeClock
from services.common.config import NotifierConfig
from services.common.schedule import ActiveHours, OnCall, Rotation, Route
from services.notifier.briefing import build_briefing, due_slots
from services.notifier.core import Dispatcher
from services.notifier.ratelimit import TokenBucket
from services.notifier.routing import Router

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai


def alert(
    tier: Tier = Tier.level3, group: str = "xinghe", audience: str = "responder", key: str = "k1"
) -> Alert:
    return Alert(
        event_time=T0,
        dedup_key=key,
        kind=AlertKind.incident_opened,
        group=group,
        tier=tier,
        title="t",
        body="b",
        audience=audience,
    )


class FakeChannel:
    def __init__(self, name: str, results: list[tuple[bool, str | None]] | None = None) -> None:
        self.name = name
        self.results = list(results or [])
        self.sent: list[Alert] = []

    async def send(self, a: Alert) -> tuple[bool, str | None]:
        self.sent.append(a)
        return self.results.pop(0) if self.results else (False, None)

    async def close(self) -> None:
        return None


def test_first_matching_route_wins_and_unmatched_alert_goes_nowhere():
    router = Router(
        (
            Route(name="major", tiers=(1,), channels=("phone",)),
            Route(name="leads", audiences=("group_lead", "leadership"), channels=("mail",)),
            Route(name="xinghe", groups=("xinghe",), channels=("wecom",), fallback=("mail",)),
        ),
        ("phone", "mail", "wecom"),
    )
    assert router.route(alert(Tier.level1), T0) == (("phone",), ())
    assert router.route(alert(audience="leadership"), T0) == (("mail",), ())
    assert router.route(alert(), T0) == (("wecom",), ("mail",))
    assert router.route(alert(group="other"), T0) == ((), ())
    assert Router((), ("a", "b")).route(alert(), T0) == (("a", "b"), ())


def test_active_hours_use_the_route_time_zone():
    office = ActiveHours(
        tz="Asia/Shanghai", days=("mon", "tue", "wed", "thu", "fri"), start=time(9), end=time(18)
    )
    assert office.contains(T0)  # Monday 09:00 Shanghai
    assert not office.contains(T0 - timedelta(minutes=1))
    assert not office.contains(T0 + timedelta(days=5))  # Saturday
    night = ActiveHours(start=time(22), end=time(6))
    assert night.contains(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))  # 23:00 Shanghai
    assert not night.contains(T0)


def test_unknown_time_zone_and_unknown_channel_are_config_errors():
    with pytest.raises(ValueError, match="unknown time zone"):
        ActiveHours(tz="Mars/Olympus")
    with pytest.raises(ValueError, match="unknown channel"):
        NotifierConfig(routes=(Route(name="r", channels=("nope",)),))


def test_rotation_hands_off_at_local_time():
    r = Rotation(
        people=("张三", "李四", "王五"),
        tz="Asia/Shanghai",
        start=date(2026, 11, 23),
        handoff=time(9),
        shift_days=1,
    )
    assert r.on_call(T0) == "张三"
    assert r.on_call(T0 - timedelta(seconds=1)) == "王五"  # still the previous shift
    assert r.on_call(T0 + timedelta(days=1)) == "李四"
    assert r.on_call(T0 + timedelta(days=3)) == "张三"


async def test_dispatch_names_who_is_on_call():
    ch = FakeChannel("wecom")
    oncall = OnCall(group_lead=Rotation(people=("王组长",)))
    d = Dispatcher([ch], clock=FakeClock(T0), oncall=oncall)
    await d.dispatch(alert(audience="group_lead"), {})
    assert ch.sent[0].body.endswith("@王组长")


async def test_fallback_is_used_only_when_every_primary_fails():
    bad, good = FakeChannel("wecom", [(False, "HTTP 400: bad key")]), FakeChannel("mail")
    router = Router((Route(name="r", channels=("wecom",), fallback=("mail",)),), ("wecom", "mail"))
    seen: list[tuple[str, str]] = []
    d = Dispatcher([bad, good], clock=FakeClock(T0), router=router, observe=lambda e, c: seen.append((e, c)))
    out = await d.dispatch(alert(), {})
    assert [(x.channel, x.outcome.value) for x in out] == [("wecom", "failed"), ("mail", "delivered")]
    assert seen == [("fallback", "mail")]
    ok = FakeChannel("wecom")
    d2 = Dispatcher([ok, FakeChannel("mail")], clock=FakeClock(T0), router=router)
    assert [x.channel for x in await d2.dispatch(alert(), {})] == ["wecom"]


async def test_rate_limit_waits_instead_of_dropping():
    clock = FakeClock(T0)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds=seconds)

    ch = FakeChannel("robot")
    d = Dispatcher([ch], clock=clock, sleep=sleep, rate_per_minute={"robot": 20})
    for i in range(25):
        await d.dispatch(alert(key=f"k{i}"), {})
    assert len(ch.sent) == 25
    assert len(waits) == 5
    assert all(w == pytest.approx(3.0) for w in waits)


def test_token_bucket_refills():
    bucket = TokenBucket(60, T0)
    assert [bucket.wait_for(T0) for _ in range(60)] == [0.0] * 60
    assert bucket.wait_for(T0) == pytest.approx(1.0)
    assert bucket.wait_for(T0 + timedelta(seconds=1)) == 0.0


async def test_retry_after_is_honoured():
    class Limited(FakeChannel):
        retry_after = 7.0

    clock = FakeClock(T0)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    ch = Limited("robot", [(True, "HTTP 429")])
    out = await Dispatcher([ch], clock=clock, sleep=sleep).dispatch(alert(), {})
    assert [x.outcome.value for x in out] == ["retrying", "delivered"]
    assert waits == [7.0]


def test_briefing_fires_at_0900_shanghai_with_the_host_in_utc(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    _time.tzset()
    try:
        times = (time(9), time(14), time(20))
        before = datetime(2026, 11, 23, 0, 59, 50, tzinfo=UTC)  # 08:59:50 Shanghai
        assert due_slots(times, "Asia/Shanghai", before, before + timedelta(seconds=5)) == []
        slots = due_slots(times, "Asia/Shanghai", before, before + timedelta(seconds=15))
        assert [s.astimezone(UTC) for s in slots] == [datetime(2026, 11, 23, 1, 0, tzinfo=UTC)]
        day = due_slots(times, "Asia/Shanghai", before, before + timedelta(hours=24))
        assert [s.hour for s in day] == [9, 14, 20]
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()
    assert "TZ" not in os.environ or os.environ["TZ"] != "UTC"


def test_briefing_summarises_items_tiers_incidents_and_breaches():
    slot = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    since = slot - timedelta(hours=13)
    tiers = [{"group": "xinghe", "tier": 2}, {"group": "other", "tier": 0}]
    ledger = [
        {
            "group": "xinghe",
            "platform": "weibo",
            "excerpt": "避雷星河",
            "spread": 900,
            "first_seen": (slot - timedelta(hours=1)).isoformat(),
        },
        {
            "group": "xinghe",
            "platform": "douyin",
            "excerpt": "旧帖",
            "spread": 5,
            "first_seen": (slot - timedelta(days=2)).isoformat(),
        },
    ]
    incidents = [
        {
            "incident_id": "i1",
            "group": "xinghe",
            "state": "opened",
            "tier": 2,
            "deadlines": [
                {"name": "ack", "status": "breached"},
                {"name": "facts_verified", "status": "pending"},
            ],
        }
    ]
    b = build_briefing(slot, since, tiers, ledger, incidents)
    assert b.kind == AlertKind.briefing
    assert b.dedup_key == f"briefing|{slot.isoformat()}"
    assert int(b.tier) == 2
    assert "New negative items: 1" in b.body
    assert "Open incidents: 1" in b.body
    assert "Missed SLAs: 1" in b.body
    assert "i1: ack" in b.body
    assert "避雷星河" in b.body
