"""Routing, on-call rotations, rate limits, fallback and briefings, with injected time."""

from __future__ import annotations

import os
import time as _time
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.events import Alert, AlertKind, Tier
from services.common.clock import FakeClock
from services.common.config import ChannelConfig, NotifierConfig
from services.common.schedule import ActiveHours, OnCall, Rotation, Route
from services.notifier.briefing import build_briefing, due_slots, previous_slot
from services.notifier.channels import Outcome
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
    def __init__(self, name: str, results: list[Outcome] | None = None, dedups_by_id: bool = False) -> None:
        self.name = name
        self.results = list(results or [])
        self.dedups_by_id = dedups_by_id
        self.sent: list[Alert] = []
        self.repeats: list[bool] = []

    async def send(self, a: Alert, repeat: bool = False) -> Outcome:
        self.sent.append(a)
        self.repeats.append(repeat)
        return self.results.pop(0) if self.results else Outcome(False, None)

    async def close(self) -> None:
        return None


def test_first_matching_route_wins_and_unmatched_alert_goes_to_the_unrouted_channels():
    routes = (
        Route(name="major", tiers=(1,), channels=("phone",)),
        Route(name="leads", audiences=("group_lead", "leadership"), channels=("mail",)),
        Route(name="xinghe", groups=("xinghe",), channels=("wecom",), fallback=("mail",)),
    )
    router = Router(routes, ("phone", "mail", "wecom"))
    assert router.route(alert(Tier.level1), T0) == (("phone",), (), True)
    assert router.route(alert(audience="leadership"), T0) == (("mail",), (), True)
    assert router.route(alert(), T0) == (("wecom",), ("mail",), True)
    # Matched by no route: every channel by default, never nowhere.
    assert router.route(alert(group="other"), T0) == (("phone", "mail", "wecom"), (), False)
    assert Router(routes, ("phone", "mail", "wecom"), ("mail",)).route(alert(group="*"), T0) == (
        ("mail",),
        (),
        False,
    )
    assert Router((), ("a", "b")).route(alert(), T0) == (("a", "b"), (), True)


async def test_unrouted_alert_is_delivered_and_counted():
    mail, wecom = FakeChannel("mail"), FakeChannel("wecom")
    router = Router((Route(name="x", groups=("xinghe",), channels=("wecom",)),), ("wecom", "mail"), ("mail",))
    seen: list[tuple[str, str]] = []
    d = Dispatcher(
        [mail, wecom], clock=FakeClock(T0), router=router, observe=lambda e, c: seen.append((e, c))
    )
    out = await d.dispatch(alert(group="*", key="briefing"), {})
    assert [(x.channel, x.outcome.value) for x in out] == [("mail", "delivered")]
    assert seen == [("unrouted", "mail")]
    assert wecom.sent == []


def test_unrouted_channels_must_name_a_channel():
    with pytest.raises(ValueError, match="unrouted_channels must name"):
        NotifierConfig(unrouted_channels=("nope",))
    with pytest.raises(ValueError, match="unrouted_channels must name"):
        NotifierConfig(unrouted_channels=())


def test_rate_limit_defaults_per_channel_type():
    cfg = NotifierConfig(
        channels=(
            ChannelConfig(name="w", type="wecom", url="https://qyapi.example/send?key=abcdefgh1234"),
            ChannelConfig(name="d", type="dingtalk", url="https://oapi.example/robot/send?access_token=x"),
            ChannelConfig(name="h", type="webhook", url="http://h", rate_per_minute=600),
            ChannelConfig(name="c", type="console"),
        )
    )
    assert [c.rate for c in cfg.channels] == [20, 20, 600, None]
    assert "abcdefgh1234" not in repr(cfg)  # robot URLs carry their token


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
    bad, good = FakeChannel("wecom", [Outcome(False, "HTTP 400: bad key")]), FakeChannel("mail")
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


async def test_retry_after_is_honoured_and_a_long_one_fails_over():
    clock = FakeClock(T0)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    ch = FakeChannel("robot", [Outcome(True, "HTTP 429", 7.0)])
    out = await Dispatcher([ch], clock=clock, sleep=sleep).dispatch(alert(), {})
    assert [x.outcome.value for x in out] == ["retrying", "delivered"]
    assert waits == [7.0]

    slow, mail = FakeChannel("robot", [Outcome(True, "HTTP 429", 3600.0)]), FakeChannel("mail")
    router = Router((Route(name="r", channels=("robot",), fallback=("mail",)),), ("robot", "mail"))
    log: dict[str, dict[str, str]] = {}
    out = await Dispatcher([slow, mail], clock=clock, sleep=sleep, router=router).dispatch(alert(), log)
    assert [(x.channel, x.outcome.value) for x in out] == [("robot", "failed"), ("mail", "delivered")]
    assert "asked to wait 3600 s" in out[0].error
    assert log["k1|robot"]["outcome"] == "failed"
    assert waits == [7.0]  # no hour-long stall of the partition


async def test_permanent_error_stops_retries_and_retryable_ones_back_off():
    clock = FakeClock(T0)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    bad = FakeChannel("robot", [Outcome(False, "errcode 93000: invalid webhook url")])
    out = await Dispatcher([bad], clock=clock, sleep=sleep).dispatch(alert(), {})
    assert [(x.attempt, x.outcome.value) for x in out] == [(1, "failed")]
    flaky = FakeChannel("robot", [Outcome(True, "HTTP 500")] * 4)
    out = await Dispatcher([flaky], clock=clock, sleep=sleep, max_attempts=3, base_delay=1.0).dispatch(
        alert(key="k2"), {}
    )
    assert [x.outcome.value for x in out] == ["retrying", "retrying", "failed"]
    assert len(waits) == 2
    assert 0 <= waits[0] <= 1.0
    assert 0 <= waits[1] <= 2.0


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
                {"name": "ack", "status": "breached", "breached_at": (slot - timedelta(hours=2)).isoformat()},
                {"name": "facts_verified", "status": "pending"},
            ],
        },
        {
            "incident_id": "i0",
            "group": "xinghe",
            "state": "closed",
            "tier": 3,
            "deadlines": [{"name": "ack", "status": "breached", "breached_at": "2026-11-01T01:00:00+00:00"}],
        },
    ]
    b = build_briefing(slot, since, tiers, ledger, incidents)
    assert b.kind == AlertKind.briefing
    assert b.dedup_key == f"briefing|{slot.isoformat()}"
    assert int(b.tier) == 2
    assert "New negative items: 1" in b.body
    assert "Open incidents: 1" in b.body
    assert "Missed SLAs: 1" in b.body  # the breach of three weeks ago is not this period's
    assert "i1: ack" in b.body
    assert "i0: ack" not in b.body
    assert "避雷星河" in b.body
    assert "旧帖" not in b.body


def _shanghai_day(times: tuple[time, ...]) -> tuple[list[dict[str, Any]], datetime, datetime]:
    sh = ZoneInfo("Asia/Shanghai")
    slot = datetime(2026, 11, 23, 14, 0, tzinfo=sh)
    since = previous_slot(times, "Asia/Shanghai", slot)
    # The read model's rows carry UTC; the slots are Shanghai time. 05:30 UTC is 13:30 Shanghai.
    ledger = [
        {"group": "g", "platform": "weibo", "excerpt": f"e{h}", "spread": 1, "first_seen": t}
        for h, t in enumerate(
            (
                "2026-11-23T05:30:00+00:00",  # 13:30 Shanghai: in (09:00, 14:00]
                "2026-11-23T01:30:00+00:00",  # 09:30 Shanghai: in
                "2026-11-23T00:30:00+00:00",  # 08:30 Shanghai: before 09:00, the morning briefing had it
                "2026-11-23T06:30:00+00:00",  # 14:30 Shanghai: the evening briefing's
            )
        )
    ]
    return ledger, slot, since


def test_afternoon_briefing_counts_the_items_since_the_morning_across_zones(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    _time.tzset()
    try:
        ledger, slot, since = _shanghai_day((time(9), time(14), time(20)))
        assert since == datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
        b = build_briefing(slot, since, [], ledger, [])
        assert "New negative items: 2" in b.body
        assert "e0" in b.body
        assert "e1" in b.body
        assert "e2" not in b.body
        assert "e3" not in b.body
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()


def test_a_single_briefing_time_covers_the_day_before():
    sh = ZoneInfo("Asia/Shanghai")
    slot = datetime(2026, 11, 23, 9, 0, tzinfo=sh)
    assert previous_slot((time(9),), "Asia/Shanghai", slot) == datetime(2026, 11, 22, 9, 0, tzinfo=sh)
    assert previous_slot((time(9), time(20)), "Asia/Shanghai", slot) == datetime(
        2026, 11, 22, 20, 0, tzinfo=sh
    )


def test_the_0900_briefing_fires_in_shanghai_and_covers_the_night_with_the_host_in_utc(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("TZ", "UTC")
    _time.tzset()
    try:
        times = (time(9), time(14), time(20))
        host_now = datetime(2026, 11, 23, 1, 0, 5, tzinfo=UTC)  # 09:00:05 in Shanghai, 01:00 on the host
        [slot] = due_slots(times, "Asia/Shanghai", host_now - timedelta(seconds=20), host_now)
        since = previous_slot(times, "Asia/Shanghai", slot)
        assert since.astimezone(UTC) == datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # 20:00 Shanghai yesterday
        rows = {
            "evening": "2026-11-22T11:30:00+00:00",  # 19:30 Shanghai: the 20:00 briefing had it
            "night": "2026-11-22T12:30:00+00:00",  # 20:30 Shanghai: this one
            "dawn": "2026-11-23T00:59:00+00:00",  # 08:59 Shanghai: this one
            "late": "2026-11-23T01:00:01+00:00",  # 09:00:01 Shanghai: the 14:00 one
        }
        ledger = [
            {"group": "g", "platform": "weibo", "excerpt": name, "spread": 1, "first_seen": t}
            for name, t in rows.items()
        ]
        incidents = [
            {
                "incident_id": "i1",
                "group": "g",
                "state": "opened",
                "tier": 1,
                "deadlines": [
                    {"name": "ack", "status": "breached", "breached_at": "2026-11-22T13:00:00+00:00"},
                    {"name": "meeting", "status": "breached", "breached_at": "2026-11-22T10:00:00+00:00"},
                ],
            }
        ]
        b = build_briefing(slot, since, [{"group": "g", "tier": 1}], ledger, incidents)
        assert b.title.startswith("舆情简报 11-23 09:00")
        assert "(since 11-22 20:00)" in b.body
        assert "New negative items: 2" in b.body
        assert [n for n in rows if f"] {n} (" in b.body] == ["night", "dawn"]
        assert "Missed SLAs: 1" in b.body
        assert "i1: ack" in b.body
        assert "g 一级" in b.body
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()
