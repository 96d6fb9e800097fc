"""Hit grouping with injected time: bounded rows, coverage by offset span, crash-safe batches, tier down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import Alert, Engagement, KeywordHit, Platform, Tier
from services.common import json
from services.common.config import NotifierConfig
from services.common.exceptions import DeadLetter, RetryLater
from services.notifier.core import send_batches
from services.notifier.grouping import HitGrouper

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
CONFIG = NotifierConfig(group_wait_seconds=10, group_interval_seconds=30, max_wait_seconds=300)


def _state() -> dict[str, dict[str, Any]]:
    return {}


def hit(i: int, group: str = "xinghe", at: datetime = T0, spread: int = 1) -> KeywordHit:
    return KeywordHit(
        event_time=at,
        group=group,
        platform=Platform.weibo if i % 3 else Platform.douyin,
        post_id=f"p{i}",
        thread_key=f"weibo:p{i}",
        snapshot_id=f"s{i}",
        first_seen=True,
        delta=Engagement(likes=spread),
        cumulative=Engagement(likes=spread),
        excerpt=f"避雷 {i} " + "长" * 200,
        detected_at=at,
    )


def test_a_burst_keeps_the_row_small_and_one_message_covers_every_hit():
    g, state = HitGrouper(CONFIG), _state()
    sizes = []
    for i in range(5000):
        assert g.add(hit(i, spread=i), state, T0, partition=1, offset=100 + 2 * i)
        sizes.append(len(json.dumps(state["xinghe"])))
    assert max(sizes) < 4000, max(sizes)  # was 335 KB at 5,000 hits: every id in the row
    assert sizes[-1] - sizes[100] < 200  # and it no longer grows with the burst
    [alert] = g.due(state, T0 + timedelta(seconds=10))
    assert alert.hit_count == 5000
    assert alert.hit_span is not None
    assert (alert.hit_span.partition, alert.hit_span.first_offset, alert.hit_span.last_offset) == (
        1,
        100,
        10098,
    )
    assert alert.dedup_key == "hits|xinghe|1:100-10098"
    assert len(alert.hit_ids) == 5  # the top posts, by spread
    assert "避雷 4999" in alert.body
    assert "Spread added: 12,497,500" in alert.body
    assert "weibo 3333, douyin 1667" in alert.body
    assert len(json.dumps(alert)) < 4000


def test_a_hit_read_again_after_a_restart_is_not_counted_twice():
    g, state = HitGrouper(CONFIG), _state()
    assert [g.add(hit(i), state, T0, 0, i) for i in range(3)] == [True, True, True]
    assert not g.add(hit(1), state, T0, 0, 1)  # same record, re-read from the committed offset
    assert not g.add(hit(2), state, T0, 0, 7)  # same hit at a new offset: a replayed scoring worker
    [a] = g.due(state, T0 + timedelta(seconds=10))
    g.delivered(a, state, T0 + timedelta(seconds=10))
    assert not g.add(hit(0), state, T0, 0, 0)  # already sent
    assert a.hit_count == 3


def test_a_batch_stays_until_delivered_and_comes_back_with_the_same_key():
    g, state = HitGrouper(CONFIG), _state()
    for i in range(4):
        g.add(hit(i), state, T0, 0, i)
    t = T0 + timedelta(seconds=10)
    [a] = g.due(state, t)
    # A crash before the delivery was recorded: the restarted worker sees the frozen batch at once.
    g.add(hit(9), state, t, 0, 9)  # arrives meanwhile: goes into the next batch, not this one
    [again] = g.due(state, t + timedelta(seconds=2))
    assert again.dedup_key == a.dedup_key
    assert again.hit_count == 4
    g.delivered(a, state, t + timedelta(seconds=3))
    assert g.due(state, t + timedelta(seconds=4)) == []  # group_interval since the last send
    [b] = g.due(state, t + timedelta(seconds=33))
    assert (b.hit_count, b.dedup_key) == (1, "hits|xinghe|0:9-9")


def test_waits_level1_skips_and_a_tier_down_restores_group_wait():
    g, state = HitGrouper(CONFIG), _state()
    g.set_tier("xinghe", Tier.level1, state)
    g.add(hit(0), state, T0, 0, 0)
    [a] = g.due(state, T0)  # level 1: no initial wait
    assert a.tier == Tier.level1
    g.delivered(a, state, T0)
    g.set_tier("xinghe", Tier.level3, state)  # the crisis cools down
    later = T0 + timedelta(minutes=5)
    g.add(hit(1), state, later, 0, 1)
    assert g.due(state, later + timedelta(seconds=9)) == []  # group_wait again
    [b] = g.due(state, later + timedelta(seconds=10))
    assert b.tier == Tier.level3


def test_no_hit_waits_beyond_max_wait():
    config = NotifierConfig(group_wait_seconds=600, group_interval_seconds=600, max_wait_seconds=120)
    g, state = HitGrouper(config), _state()
    g.add(hit(0), state, T0, 0, 0)
    assert g.due(state, T0 + timedelta(seconds=119)) == []
    [a] = g.due(state, T0 + timedelta(seconds=120))
    assert a.hit_time == T0


async def test_one_failing_batch_is_dead_lettered_as_the_alert_and_the_others_still_go():
    g, state = HitGrouper(CONFIG), _state()
    for i, group in enumerate(("a", "b", "c")):
        g.add(hit(i, group=group), state, T0, 0, i)
    batches = g.due(state, T0 + timedelta(seconds=10))
    assert [b.group for b in batches] == ["a", "b", "c"]
    sent: list[str] = []
    dead: list[tuple[str, str, int]] = []

    async def deliver(alert: Alert) -> None:
        if alert.group == "b":
            raise DeadLetter("delivery_failed", "every channel failed")
        if alert.group == "c":
            raise RuntimeError("bug")
        sent.append(alert.group)

    async def dead_letter(alert: Alert, reason: str, detail: str) -> None:
        dead.append((alert.group, reason, alert.hit_count))

    await send_batches(
        batches, deliver, dead_letter, lambda a: g.delivered(a, state, T0 + timedelta(seconds=11))
    )
    assert sent == ["a"]
    assert dead == [("b", "delivery_failed", 1), ("c", "processing_error", 1)]
    # All three outcomes are recorded, so none comes back; nothing is pending any more.
    assert g.due(state, T0 + timedelta(minutes=10)) == []
    assert all(state[x]["sending"] is None and state[x]["open"] is None for x in "abc")


async def test_a_batch_whose_attempt_kafka_did_not_record_stays_frozen_for_the_retry():
    g, state = HitGrouper(CONFIG), _state()
    g.add(hit(0), state, T0, 0, 0)
    [batch] = g.due(state, T0 + timedelta(seconds=10))
    dead: list[str] = []

    async def deliver(alert: Alert) -> None:
        raise RetryLater("table writes not acknowledged by Kafka within 30 s")

    async def dead_letter(alert: Alert, reason: str, detail: str) -> None:
        dead.append(reason)

    with pytest.raises(RetryLater):
        await send_batches([batch], deliver, dead_letter, lambda a: g.delivered(a, state, T0))
    assert dead == []
    assert g.due(state, T0 + timedelta(seconds=11)) == [batch]  # the same batch, the same key, next time
