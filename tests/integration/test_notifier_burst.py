"""A burst of 5,000 keyword hits: grouped into a handful of messages, nothing lost, no page twice, even with
the notifier SIGKILLed mid-burst; a tier change waiting as it restarts still goes out, and a tier increase
is sent at once, not held by grouping."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.events import Alert, AlertKind, KeywordHit, Tier
from services.cli.demo import WebhookReceiver
from services.common import json
from tests import factories
from tests.conftest import produce, write_config

pytestmark = pytest.mark.kafka

GROUPS = ("xinghe", "yunqi")


async def hit_offsets(bootstrap: str, topic: str, expected: int) -> dict[str, tuple[str, int, int]]:
    """event_id -> (group, partition, offset) of every record on keyword-hits."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: dict[str, tuple[str, int, int]] = {}
    try:
        deadline = time.monotonic() + 60
        while len(out) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    h = json.loads(r.value)
                    out[h["event_id"]] = (h["group"], r.partition, r.offset)
    finally:
        await consumer.stop()
    return out


def hit(i: int) -> KeywordHit:
    return factories.hit(f"b{i}", 1, group=GROUPS[i % 2], excerpt=f"避雷 {i}", at=datetime.now(UTC))


def tier_alert(key: str, group: str, tier: Tier) -> Alert:
    return Alert(
        event_time=datetime.now(UTC),
        dedup_key=key,
        kind=AlertKind.tier_change,
        group=group,
        tier=tier,
        title=f"舆情升级: {group}",
        body="升级",
    )


async def _sending_since(receiver: WebhookReceiver, since: float) -> None:
    """Until the receiver got an alert sent after `since` (a wall-clock time): the restarted worker is up."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(a["received_at"].timestamp() > since for a in list(receiver.alerts)):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the restarted notifier sent nothing within 60 s")


async def test_burst_is_grouped_covered_once_and_survives_sigkill(kafka, topics, stack_factory, tmp_path):
    with WebhookReceiver("s") as receiver:
        config = write_config(
            tmp_path / "c.yaml",
            notifier={
                "channels": [
                    {
                        "name": "hook",
                        "type": "webhook",
                        "url": receiver.url,
                        "secret": "s",
                        "rate_per_minute": 600,
                    }
                ],
                "group_wait_seconds": 5,
                "group_interval_seconds": 10,
            },
        )
        stack = stack_factory(config, services=("notifier",), partitions=2)
        await asyncio.sleep(6)  # the consumer group joins
        sent: dict[str, str] = {}
        tier_alert_at = restarted = 0.0
        for second in range(20):  # 5,000 hits in 20 s, 250 per second
            batch = [hit(second * 250 + j) for j in range(250)]
            sent.update({h.event_id: h.group for h in batch})
            await produce(kafka, topics.keyword_hits, [(h.group.encode(), json.dumps(h)) for h in batch])
            if second == 6:
                stack.kill("notifier")
                stack.start_one("notifier")
                restarted = time.time()
            if second == 7:
                # Waiting when the notifier starts: faust may drop it at start-up, the last record of its
                # partition (services/common/sequence.py). It still goes out.
                waiting = tier_alert("inc0|tier_change|2|x", "yunqi", Tier.level2)
                await produce(kafka, topics.alerts, [(b"yunqi", json.dumps(waiting))])
            if second == 14:
                # Once the restarted notifier sends again, a tier increase goes at once, not held by grouping.
                await _sending_since(receiver, restarted)
                tier_alert_at = time.monotonic()
                up = tier_alert("inc1|tier_change|1|x", "xinghe", Tier.level1)
                await produce(kafka, topics.alerts, [(b"xinghe", json.dumps(up))])
            await asyncio.sleep(0.7)

        # Messages carry counts and the offset span they cover, not every id: map spans back to hits.
        where = await hit_offsets(kafka, topics.keyword_hits, len(sent))
        assert set(where) >= set(sent)

        def covered() -> set[str]:
            spans = [
                (
                    a["group"],
                    a["hit_span"]["partition"],
                    a["hit_span"]["first_offset"],
                    a["hit_span"]["last_offset"],
                )
                for a in receiver.alerts
                if a["kind"] == "keyword_hits"
            ]
            return {
                h
                for h, (group, p, o) in where.items()
                if any(g == group and q == p and lo <= o <= hi for g, q, lo, hi in spans)
            }

        for _ in range(240):
            if covered() >= set(sent):
                break
            await asyncio.sleep(0.5)
        assert covered() >= set(sent), f"{len(set(sent) - covered())} hits never reached on-call staff"
        counted: Counter[str] = Counter()
        for a in receiver.alerts:
            if a["kind"] == "keyword_hits":
                counted[a["group"]] += a["hit_count"]
        per_group_sent = Counter(sent.values())
        # Every hit counted once: a hit re-read after the SIGKILL is neither lost nor paged a second time.
        assert counted == per_group_sent, (counted, per_group_sent)
        keys = Counter(a["dedup_key"] for a in receiver.alerts)
        assert [k for k, n in keys.items() if n > 1] == [], "a dedup key was delivered twice"
        per_group = Counter(a["group"] for a in receiver.alerts if a["kind"] == "keyword_hits")
        assert set(per_group) == set(GROUPS)
        assert max(per_group.values()) <= 8, per_group  # a handful, not thousands
        assert all(len(json.dumps(a)) < 8_000 for a in receiver.alerts)  # bounded, however big the burst
        tiers = {a["dedup_key"]: a for a in receiver.alerts if a["kind"] == "tier_change"}
        assert set(tiers) == {"inc0|tier_change|2|x", "inc1|tier_change|1|x"}, "a tier change never went out"
        tier = tiers["inc1|tier_change|1|x"]
        waited = tier["received_at"].timestamp() - (time.time() - (time.monotonic() - tier_alert_at))
        assert waited < 5, f"the tier increase waited {waited:.1f} s"
        assert receiver.bad_signatures == 0
