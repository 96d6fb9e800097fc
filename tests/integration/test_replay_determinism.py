"""Replaying the sample crisis: the same TierChange events with the same ids, and no extra counts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from schemas.events import Post, TierChange
from schemas.topics import Topics
from services.cli.demo import load_sample
from services.common import json
from services.common.config import bundled_config_path, load_config
from services.scoring.backtest import Backtest
from tests.conftest import collect, produce

pytestmark = pytest.mark.kafka

# Ticks re-evaluate at wall-clock time (decisions and ids follow event time either way); a slow tick keeps the
# run about hits.
QUIET_TICKS = {"YUQING_TICK_SECONDS": "60"}


async def _run_once(kafka: str, topics: Topics, posts: list[bytes]) -> list[TierChange]:
    await produce(kafka, topics.posts_raw, [(json.loads(p)["post_id"].encode(), p) for p in posts])
    values = await collect(kafka, topics.tier_changes, lambda v: len(v) >= 3, within=90)
    return [TierChange.model_validate_json(v) for v in values]


async def test_replaying_the_sample_crisis_is_deterministic(kafka, stack_factory, prefix, tmp_path):
    now = datetime.now(UTC)
    posts = [json.dumps(p) for p in load_sample(now)]
    stack_a = stack_factory(bundled_config_path(), services=("scoring",), partitions=1, extra_env=QUIET_TICKS)
    first = await _run_once(kafka, Topics.with_prefix(prefix), posts)
    assert [int(t.tier) for t in first] == [3, 2, 1]
    # `yuqing backtest` decides the same, in process.
    backtest = Backtest(load_config(bundled_config_path()))
    for p in posts:
        backtest.feed(Post.model_validate_json(p))
    assert [t.event_id for t in backtest.changes] == [t.event_id for t in first]

    # The same input through an independent stack (own topics, own state) decides the same, with the same ids.
    other = Topics.with_prefix(prefix.replace(".", "-b."))
    stack_a.env["YUQING_TOPIC_PREFIX"] = other.posts_raw.removesuffix("posts.raw")
    stack_b_env = {**QUIET_TICKS, "YUQING_TOPIC_PREFIX": stack_a.env["YUQING_TOPIC_PREFIX"]}
    stack_factory(bundled_config_path(), services=("scoring",), partitions=1, extra_env=stack_b_env)
    second = await _run_once(kafka, other, posts)
    assert [t.event_id for t in second] == [t.event_id for t in first]
    assert [t.counts for t in second] == [t.counts for t in first]

    # Replaying into the first stack again: every snapshot is already counted, so nothing changes.
    hits_before = len(
        await collect(kafka, Topics.with_prefix(prefix).keyword_hits, lambda v: False, within=3)
    )
    assert hits_before > 100
    await produce(kafka, Topics.with_prefix(prefix).posts_raw, [(b"x", p) for p in posts])
    await asyncio.sleep(8)
    after = await collect(kafka, Topics.with_prefix(prefix).tier_changes, lambda v: False, within=3)
    assert [TierChange.model_validate_json(v).event_id for v in after] == [t.event_id for t in first]
    hits_after = await collect(kafka, Topics.with_prefix(prefix).keyword_hits, lambda v: False, within=3)
    assert len(hits_after) == hits_before
