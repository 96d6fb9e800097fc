"""Poison on every input topic of every worker, on one stack: each is dead-lettered with its precise reason
and origin, counted in the worker's dead-letter metric, and the valid message after it is processed; the
ingest API's read model, which follows keyword-hits, reads past it too.

Includes the reproduction of issue 20's finding 1: `b"garbage"` with the header `yuqing-origin: nopipes` on
posts.raw made scoring exit on every restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from pydantic import ValidationError

from schemas.events import (
    Alert,
    AlertKind,
    DeadLetterRecord,
    Delivery,
    IncidentAction,
    IncidentActionKind,
    IncidentEvent,
    KeywordHit,
    Post,
    Tier,
    TierOverride,
)
from schemas.topics import Topics
from services.common import json
from services.common.stream import MAX_VALUE_BYTES, ORIGIN_HEADER
from services.common.unreadable import install as read_unreadable_records
from tests.common.test_unreadable import RawHeaderKey
from tests.conftest import collect, write_config
from tests.factories import hit, tier_change
from tests.reliability.harness import record_row

pytestmark = pytest.mark.kafka

Headers = list[tuple[str, bytes]]
HUGE = 1_000_000


Valid = Callable[[str], tuple[bytes, bytes]]  # a valid (key, value) for a topic, distinct for each name


@dataclass
class Poison:
    name: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    reason: str | None = None  # None: not poison at all, the message is processed
    origin: str | None = None  # the topic the dead letter must name, when not the one it was written to
    header_key: bytes | None = None  # a header key written as these raw bytes (no Python client would)


def _poisons(topic: str, valid: Valid, keyed: bool) -> list[Poison]:
    """Every kind of poison for one topic. On posts.raw (`keyed` false) a message under another key is not
    poison: it is forwarded to scoring.threads under its thread key."""
    key, value = valid("template")
    n = topic.rsplit(".", 1)[-1].encode()
    return [
        Poison("bad body", key, b"garbage " + n, reason="invalid_json"),
        Poison("body not UTF-8", key, b"\xff\xfe\xfa not utf-8 " + n, reason="invalid_json"),
        Poison(  # the reproduction
            "origin header without pipes", key, b"garbage", [(ORIGIN_HEADER, b"nopipes")], "invalid_json"
        ),
        Poison(
            "header values not UTF-8",
            key,
            b"garbage, odd headers " + n,
            [(ORIGIN_HEADER, b"\xff\xfe|-1|x"), ("x-other", b"\xff" * 300)],
            "invalid_json",
        ),
        Poison(
            "origin header with huge numbers",
            key,
            b"garbage, huge origin " + n,
            [(ORIGIN_HEADER, f"{topic}|99999999999|{'9' * 400}".encode())],
            "invalid_json",
        ),
        # Just under the broker's 1 MB limit: its dead letter, bytes in base64, would not be.
        Poison("huge value", key, b'{"x":"' + b"a" * (HUGE - 8) + b'"}', reason="too_large"),
        Poison("wrong schema", key, b'{"schema_version":1,"hello":"' + n + b'"}', reason="invalid_schema"),
        Poison(
            "future schema version",
            key,
            value.replace(b'"schema_version":1', b'"schema_version":2'),
            reason="unsupported_schema_version",
        ),
        Poison("tombstone", key, None, reason="empty"),
        Poison("header key not UTF-8", key, value, reason="unreadable", header_key=b"\xff\xfe"),
        Poison("key not UTF-8", b"\xff\xfe", valid("bad-key")[1], reason="wrong_key" if keyed else None),
        Poison("no key", None, valid("no-key")[1], reason="wrong_key" if keyed else None),
    ]


def _post(i: str, now: datetime) -> Post:
    return Post.model_validate(
        {
            "platform": "weibo",
            "post_id": f"ok-{i}",
            "text": f"#星河空调起火# 第{i}位网友：家里的星河空调起火了，售后推诿，要求退款！",
            "published_at": now.isoformat(),
            "event_time": now.isoformat(),
            "engagement": {"reposts": 10, "comments": 10, "likes": 10},
        }
    )


def _alert(i: str) -> Alert:
    return Alert(
        event_time=datetime.now(UTC),
        dedup_key=f"poison-test|ok-{i}",
        kind=AlertKind.tier_change,
        group="xinghe",
        tier=Tier.level3,
        title=f"test alert ok-{i}",
        body="body",
    )


async def _produce(bootstrap: str, topic: str, items: list[Poison]) -> None:
    """Write `items` in order; one with a raw header key alone in its producer batch (the producer would
    append the next messages to that batch, and they would be as unreadable as the poison)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 << 20)
    await producer.start()
    try:
        sent = []
        for item in items:
            if item.header_key is None:
                headers = item.headers or None
                sent.append(await producer.send(topic, key=item.key, value=item.value, headers=headers))
                continue
            await asyncio.gather(*sent)
            batch = producer.create_batch()
            batch._builder = _DefaultRecordBatchBuilderPy(
                2,
                0,
                is_transactional=0,
                producer_id=-1,
                producer_epoch=-1,
                base_sequence=0,
                batch_size=1 << 20,
            )
            headers = [(RawHeaderKey(item.header_key), b"v")]
            batch.append(timestamp=None, key=item.key, value=item.value, headers=headers)
            sent = [await producer.send_batch(batch, topic, partition=0)]
            await asyncio.gather(*sent)
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _short(counter: Counter[tuple[str, str, str, bytes | None]]) -> list[str]:
    return [f"{s} {t} {r} {(v or b'')[:60]!r} x{n}" for (s, t, r, v), n in counter.items()]


async def _metrics(port: int) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"http://127.0.0.1:{port}/metrics")).text


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.index("}") + 1]))
            if got == labels:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_poison_on_every_input_of_every_worker_is_dead_lettered_and_the_next_message_processed(
    kafka: str, topics: Topics, stack_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This test reads its input topics back, unreadable record included.
    monkeypatch.setattr(fetcher, "PartitionRecords", fetcher.PartitionRecords)
    read_unreadable_records()
    alerts_file = tmp_path / "alerts.jsonl"
    config = write_config(
        tmp_path / "c.yaml",
        notifier={
            "channels": [{"name": "file", "type": "file", "path": str(alerts_file)}],
            "group_wait_seconds": 1,
            "group_interval_seconds": 2,
        },
    )
    stack = stack_factory(
        config,
        services=("scoring", "escalation", "notifier", "desk"),  # the desk: its read model reads Kafka too
        partitions=1,
        extra_env={"YUQING_TICK_SECONDS": "1"},
    )
    now = datetime.now(UTC)
    t = topics

    def valid_for(topic: str, name: str) -> tuple[bytes, bytes]:
        if topic in (t.posts_raw, t.scoring_threads):
            post = _post(f"{topic.rsplit('.', 1)[-1]}-{name}", now)
            return post.thread_key.encode(), json.dumps(post)
        if topic == t.keyword_hits:
            return b"xinghe", json.dumps(hit(f"ok-{name}", 100, at=now))
        if topic == t.tier_overrides:
            override = TierOverride(event_time=now, group="xinghe", tier=Tier.level3, actor=f"ok-{name}")
            return b"xinghe", json.dumps(override)
        if topic == t.tier_changes:
            counts = {"8h": 20_000 + len(name)}
            return b"xinghe", json.dumps(tier_change(Tier.level3, Tier.none, counts, at=now))
        if topic == t.alerts:
            return b"xinghe", json.dumps(_alert(name))
        raise AssertionError(topic)

    services_of = {
        t.posts_raw: ["scoring"],
        t.scoring_threads: ["scoring"],
        # The desk's sink reads keyword-hits and tier-changes too (it stores by event id and does not check
        # keys, so a record under the wrong key is no poison to it).
        t.keyword_hits: ["scoring", "notifier", "desk"],
        t.tier_overrides: ["scoring"],
        t.tier_changes: ["escalation", "notifier", "desk"],
        t.alerts: ["notifier"],
        t.incident_actions: ["escalation"],
    }
    sent: dict[str, list[Poison]] = {}
    valid_sent: dict[str, list[bytes]] = {}

    async def inject(topic: str, valid: Valid) -> None:
        poisons = _poisons(topic, valid, keyed=topic != t.posts_raw)
        if topic == t.scoring_threads:  # the one topic where the origin header is believed
            poisons.append(
                Poison(
                    "forwarded from posts.raw",
                    b"weibo:x",
                    b"garbage, forwarded",
                    [(ORIGIN_HEADER, f"{t.posts_raw}|0|12345".encode())],
                    "invalid_json",
                    origin=t.posts_raw,
                )
            )
        # Each poison is followed by a valid message. The last one carries a malformed origin header: that
        # header only names a dead letter's origin, so it does not refuse a good message.
        items: list[Poison] = []
        good = [p.value for p in poisons if p.reason is None and p.value is not None]
        for n, poison in enumerate(poisons):
            items.append(poison)
            key, value = valid(f"after-{n}")
            items.append(Poison("valid", key, value))
            good.append(value)
        key, value = valid("bad-header")
        items.append(Poison("valid", key, value, [(ORIGIN_HEADER, b"nopipes")]))
        good.append(value)
        sent[topic], valid_sent[topic] = poisons, good
        await _produce(kafka, topic, items)

    for topic in (t.posts_raw, t.scoring_threads, t.keyword_hits, t.tier_overrides, t.tier_changes, t.alerts):
        await inject(topic, functools.partial(valid_for, topic))

    # incident-actions need an incident: the valid tier changes above open one.
    opened = await collect(kafka, t.incidents, lambda v: any(b'"opened"' in x for x in v), within=60)
    incident = next(e for e in map(IncidentEvent.model_validate_json, opened) if e.kind.value == "opened")

    def valid_action(name: str) -> tuple[bytes, bytes]:
        action = IncidentAction(
            event_time=now,
            incident_id=incident.incident_id,
            group="xinghe",
            action=IncidentActionKind.ack if name == "after-0" else IncidentActionKind.follow_up,
            actor=f"ok-{name}",
            comment="called the customer back",
        )
        return b"xinghe", json.dumps(action)

    await inject(t.incident_actions, valid_action)

    def kept(p: Poison) -> bytes | None:
        """What the dead letter keeps: nothing of a record the client could not read."""
        return None if p.value is None or p.header_key else p.value[:MAX_VALUE_BYTES]

    want = Counter(
        (service, p.origin or topic, p.reason, kept(p))
        for topic, poisons in sent.items()
        for p in poisons
        if p.reason
        for service in services_of[topic]
        if not (service == "desk" and p.reason == "wrong_key")
    )
    records: list[DeadLetterRecord] = []

    def enough(values: list[bytes]) -> bool:
        records[:] = [DeadLetterRecord.model_validate_json(v) for v in values]
        return len(records) >= sum(want.values())

    await collect(kafka, t.dead_letter, enough, within=120)
    got = Counter(
        (
            r.service,
            r.source_topic,
            r.reason,
            None if r.value_size is None else base64.b64decode(r.value_base64),
        )
        for r in records
    )
    assert got == want, f"missing {_short(want - got)}, unexpected {_short(got - want)}"
    for r in records:
        if r.reason == "too_large":  # cut to fit, with its real size
            assert r.value_size == HUGE
    forwarded = [r for r in records if r.value_base64 == base64.b64encode(b"garbage, forwarded").decode()]
    assert [(r.source_topic, r.partition, r.offset) for r in forwarded] == [(t.posts_raw, 0, 12345)]
    # The case: the header poison on posts.raw is a dead letter with its reason and real origin,
    # and the post after it is scored (below).
    (header_poison,) = [
        r for r in records if r.source_topic == t.posts_raw and base64.b64decode(r.value_base64) == b"garbage"
    ]
    at = 2 * [p.name for p in sent[t.posts_raw]].index("origin header without pipes")  # a valid one each
    assert (header_poison.reason, header_poison.partition, header_poison.offset) == ("invalid_json", 0, at)

    # The valid messages after the poison were processed: posts scored (those under another key, or none,
    # forwarded first), alerts delivered, the incident acknowledged.
    want_scored = {
        Post.model_validate_json(v).post_id
        for topic in (t.posts_raw, t.scoring_threads)
        for v in valid_sent[topic]
    }
    scored: set[str] = set()

    def all_scored(values: list[bytes]) -> bool:
        for v in values:  # the poison injected on keyword-hits is there too
            with contextlib.suppress(ValidationError):
                scored.add(KeywordHit.model_validate_json(v or b"").post_id)
        return want_scored <= scored

    await collect(kafka, t.keyword_hits, all_scored, within=60)
    assert want_scored <= scored, f"not scored: {want_scored - scored}"
    want_delivered = {Alert.model_validate_json(v).dedup_key for v in valid_sent[t.alerts]}
    delivered: set[str] = set()

    def all_delivered(values: list[bytes]) -> bool:
        delivered.update(Delivery.model_validate_json(v).dedup_key for v in values)
        return want_delivered <= delivered

    await collect(kafka, t.deliveries, all_delivered, within=60)
    assert want_delivered <= delivered, f"not delivered: {want_delivered - delivered}"
    events = await collect(kafka, t.incidents, lambda v: any(b'"acknowledged"' in x for x in v), within=30)
    assert any(IncidentEvent.model_validate_json(v).state.value == "acknowledged" for v in events)

    # The desk's read model follows keyword-hits too: it went past the unreadable record.
    ledger: set[str] = set()
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(100):
            resp = await client.get(f"http://127.0.0.1:{stack.desk_port}/v1/ledger", params={"limit": 10_000})
            ledger = {row["post_id"] for row in resp.json()["items"]} if resp.status_code == 200 else set()
            if "ok-bad-header" in ledger:
                break
            await asyncio.sleep(0.3)
    assert "ok-bad-header" in ledger, "the read model stopped at the poison on keyword-hits"

    # Every record on every input was handled, and each worker counts its dead letters by reason.
    for service, port in stack.web_ports.items():  # the stream workers
        reasons = Counter(r for s, _, r, _ in want.elements() if s == service)
        for _ in range(100):
            text = await _metrics(port)
            counted = {
                r: _sample(text, "yuqing_dead_letters_total", reason=r, service=service) for r in reasons
            }
            handled = {
                topic: _sample(text, "yuqing_messages_processed_total", service=service, topic=topic)
                for topic, services in services_of.items()
                if service in services
            }
            on_topics = {
                topic: len(await collect(kafka, topic, lambda v: False, within=0.5)) for topic in handled
            }
            if counted == reasons and handled == on_topics:
                break
            await asyncio.sleep(0.3)
        assert counted == reasons, service
        assert handled == on_topics, service
    assert stack.check() == []
    kinds = {p.name for p in sent[t.posts_raw]}
    record_row(
        f"| poison messages | {len(kinds)} kinds on each of the {len(sent)} input topics of scoring, "
        "escalation and notifier, and a forged origin on scoring.threads | injected directly on the "
        "topics | — | — | 0 | 0 | — | "
        f"{len(records)} dead letters, each with its reason, origin and original bytes (the first 512 KiB "
        "of a huge one), counted by reason in each worker's metric; the valid message after each poison "
        "processed; no worker exited |"
    )
