"""The notifier's briefings: what the book keeps from the events, when a slot is published, and the whole
path over a real broker (topics in, the briefing on the alerts topic)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer

from schemas.events import Alert, AlertKind, Deadline, IncidentState, KeywordHit, Platform, Tier
from services.common import json
from services.common.clock import FakeClock
from services.common.config import NotifierConfig
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings
from services.desk.readmodel import ReadModel
from services.desk.settings import DeskSettings
from services.desk.store import open_store
from services.notifier.briefer import BriefingBook, publish_briefings, run_briefings
from services.notifier.briefing import build_briefing
from tests.conftest import collect, produce
from tests.factories import T0, hit, incident_event, tier_change

SHANGHAI = ZoneInfo("Asia/Shanghai")
SLOT = datetime(2026, 11, 21, 14, 0, tzinfo=SHANGHAI)  # T0 is 10:00 Shanghai the same day
SINCE = datetime(2026, 11, 21, 9, 0, tzinfo=SHANGHAI)


def snapshot(h: KeywordHit) -> KeywordHit:
    """`h` as another snapshot of its post: another snapshot id, so another event id."""
    data = h.model_dump()
    del data["event_id"]
    return KeywordHit.model_validate({**data, "snapshot_id": f"{h.snapshot_id}@{h.event_time.isoformat()}"})


def events() -> list:
    breached = incident_event(3, IncidentState.acknowledged, incident_id="inc2", group="other").model_copy(
        update={
            "deadlines": (
                Deadline(
                    name="facts_verified",
                    due_at=T0 + timedelta(minutes=60),
                    breached_at=T0 + timedelta(minutes=61),
                ),
            )
        }
    )
    return [
        hit("a", 500),
        hit("b", 9000, platform=Platform.douyin),
        snapshot(hit("a", 700, at=T0 + timedelta(minutes=30))),  # a later snapshot of a: its spread grows
        hit("old", 50_000, at=T0 - timedelta(hours=3)),  # first seen before the period
        hit("c", 7, group="other"),
        tier_change(Tier.level3, Tier.none, {"2h": 5_000, "4h": 9_000, "8h": 12_000}),
        tier_change(
            Tier.level2, Tier.level3, {"2h": 20_000, "4h": 50_001, "8h": 60_000}, at=T0 + timedelta(1)
        ),
        tier_change(Tier.level3, Tier.none, {"2h": 1, "4h": 1, "8h": 11_000}, group="other"),
        incident_event(1, IncidentState.opened),
        incident_event(2, IncidentState.acknowledged),
        incident_event(1, IncidentState.opened, incident_id="inc2", group="other"),
        breached,
        incident_event(1, IncidentState.opened, incident_id="inc3", group="gone").model_copy(
            update={"state": IncidentState.closed}
        ),
    ]


def test_the_book_gives_the_briefing_the_desks_read_model_gave():
    """Ingest built briefings from its read model before the notifier did: same rows, same text."""
    book, model = BriefingBook(), ReadModel(open_store(DeskSettings(database_url="sqlite://")))
    for event in events():
        book.apply(event)
        model.apply(event)
    expected = build_briefing(SLOT, SINCE, model.tier_board(), model.ledger_rows(), model.incident_list())
    got = book.briefing(SLOT, SINCE)
    assert got == expected
    assert "新增负面 New negative items: 3" in got.body  # a, b, c; "old" came before 09:00
    assert "inc2: facts_verified" in got.body
    assert (got.kind, got.group, got.tier, got.dedup_key) == (
        AlertKind.briefing,
        "*",
        Tier.level2,
        f"briefing|{SLOT.isoformat()}",
    )


def test_the_book_forgets_posts_and_closed_incidents_no_briefing_needs():
    book = BriefingBook(keep=timedelta(hours=6), max_posts=3)
    for event in events():
        book.apply(event)
    later = SLOT + timedelta(hours=20)  # 10:00 the next day: everything is older than 6 h
    body = book.briefing(later, later - timedelta(hours=14)).body
    assert "New negative items: 0" in body
    assert "Open incidents: 2" in body  # inc1 and inc2 are still open, whatever their age
    assert not book._posts
    assert set(book._incidents) == {"inc1", "inc2"}
    for i in range(5):
        book.apply(hit(f"n{i}", 10, at=later))
    assert list(book._posts) == [f"weibo:n{i}|xinghe" for i in (2, 3, 4)]  # at most max_posts, oldest out


def _config(*times: time) -> NotifierConfig:
    return NotifierConfig(briefing_times=times, briefing_tz="Asia/Shanghai")


async def _run(task: asyncio.Task[None], rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)  # let the publisher take its turns (poll_seconds=0): no timers
    assert not task.done() or task.cancelled(), task


async def test_a_slot_is_published_once_the_book_is_ready_and_again_after_a_failed_send():
    clock = FakeClock(datetime(2026, 11, 21, 8, 58, 30, tzinfo=SHANGHAI))
    book, ready = BriefingBook(), asyncio.Event()
    sent: list[Alert] = []
    failures = [RuntimeError("no broker")]

    async def publish(alert: Alert) -> None:
        if failures:
            raise failures.pop()
        sent.append(alert)

    config = _config(time(9), time(14), time(20))
    task = asyncio.create_task(publish_briefings(config, book, publish, ready, clock=clock, poll_seconds=0))
    try:
        clock.advance(minutes=2)  # 09:00:30: due, but the book has not caught up with the topics
        await _run(task)
        assert sent == []
        ready.set()
        await _run(task)  # the first send fails; the slot is tried again at the next poll
        assert [a.event_time for a in sent] == [datetime(2026, 11, 21, 9, 0, tzinfo=SHANGHAI)]
        clock.advance(hours=4, minutes=58)  # 13:58:30
        await _run(task)
        assert len(sent) == 1
        clock.advance(minutes=2)
        await _run(task)
        assert [a.event_time.astimezone(SHANGHAI).hour for a in sent] == [9, 14]
        assert sent[1].dedup_key == f"briefing|{datetime(2026, 11, 21, 14, 0, tzinfo=SHANGHAI).isoformat()}"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.kafka
async def test_the_briefing_of_a_due_slot_reaches_the_alerts_topic(kafka, prefix, topics):
    settings = CommonSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=2)
    await ensure_topics(settings)
    now = datetime.now(UTC)
    an_hour_ago = now - timedelta(hours=1)
    await produce(
        kafka,
        topics.keyword_hits,
        [(b"xinghe", json.dumps(hit(str(i), 1000 * i, at=an_hour_ago))) for i in range(1, 5)],
    )
    await produce(
        kafka, topics.tier_changes, [(b"xinghe", json.dumps(tier_change(Tier.level3, Tier.none, {})))]
    )
    # Once a day, at the minute that just began: due as soon as the book has read the topics.
    slot = now.astimezone(SHANGHAI).replace(second=0, microsecond=0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()

    async def publish(alert: Alert) -> None:
        await producer.send_and_wait(topics.alerts, key=alert.group.encode(), value=json.dumps(alert))

    task = asyncio.create_task(run_briefings(settings, _config(slot.time()), publish, poll_seconds=0.5))
    try:
        values = await collect(kafka, topics.alerts, lambda v: len(v) >= 1, within=60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
    (briefing,) = [Alert.model_validate_json(v) for v in values]
    assert briefing.kind == AlertKind.briefing
    assert briefing.event_time == slot  # an instant: the same whatever its zone
    assert "新增负面 New negative items: 4" in briefing.body  # the book had read every hit before it wrote
    assert "xinghe 三级" in briefing.body
