"""Live spread and the forecast over a real Kafka: counts move on the desk between tier changes, and the
sample crisis replayed in event time warns at a webhook before it crosses level 1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from schemas.events import Post, SpreadSnapshot, Tier, TierChange
from services.cli.demo import WebhookReceiver, load_sample
from services.common import json
from services.common.config import load_config
from services.scoring.backtest import Backtest
from tests.conftest import collect, produce, write_config
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.kafka

XINGHE = {"groups": [{"name": "xinghe", "brands": ["星河电器", "星河空调", "星河冰箱", "星河"]}]}
FAST = {"YUQING_TICK_SECONDS": "1", "YUQING_SPREAD_SNAPSHOT_SECONDS": "1"}


def _post(post_id: str, likes: int, at: datetime) -> tuple[bytes, bytes]:
    post = Post(
        platform="weibo",
        post_id=post_id,
        text="星河电器空调起火了，投诉无门，避雷",
        published_at=at,
        event_time=at,
        engagement={"reposts": 0, "comments": 0, "likes": likes},
    )
    return post.thread_key.encode(), json.dumps(post)


async def _tiers(desk: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"{desk}/v1/tiers")).json()
    return {g["group"]: g for g in body["groups"]}


async def _until(check: Any, within: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.5)


async def test_desk_counts_move_between_tier_changes(kafka, topics, stack_factory, tmp_path):
    config = write_config(tmp_path / "config.yaml", rules=XINGHE)
    stack = stack_factory(config, services=("scoring", "desk"), partitions=1, extra_env=FAST)
    desk = f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(desk, stack)
    now = datetime.now(UTC)
    await produce(kafka, topics.posts_raw, [_post("p1", 11_000, now)])

    async def level3() -> bool:
        row = (await _tiers(desk)).get("xinghe")
        return row is not None and row["tier"] == 3 and row["counts"]["2h"] == 11_000

    await _until(level3)
    await produce(kafka, topics.posts_raw, [_post("p2", 7_000, now + timedelta(seconds=1))])

    async def grown() -> dict[str, Any] | None:
        row = (await _tiers(desk))["xinghe"]
        return row if row["counts"]["2h"] == 18_000 else None

    row = await _until(grown)
    assert row["tier"] == 3  # no tier change: still level 3 (50,000 in 4 h for level 2) ...
    assert row["since"] is not None
    assert (
        row["live"]["series"][-1] + row["live"]["series"][-2] >= 7_000
    )  # ... and the minute series shows it
    assert {p["post"] for p in row["live"]["top_posts"]} == {"weibo:p1", "weibo:p2"}
    changes = await collect(kafka, topics.tier_changes, lambda v: False, within=2)
    assert [int(TierChange.model_validate_json(v).tier) for v in changes] == [3]
    snaps = await collect(kafka, topics.spread_snapshots, lambda v: len(v) >= 2, within=10)
    assert [SpreadSnapshot.model_validate_json(v).counts["2h"] for v in snaps][-1] == 18_000
    assert stack.check() == []


async def _first_record_time(bootstrap: str, topic: str, match: Any, within: float) -> datetime:
    """The broker timestamp (producer create time) of the first record of `topic` for which match holds."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    if match(record.value):
                        return datetime.fromtimestamp(record.timestamp / 1000, UTC)
        raise AssertionError(f"no matching record on {topic} within {within} s")
    finally:
        await consumer.stop()


async def test_the_sample_crisis_warns_at_the_webhook_before_it_crosses_level_1(
    kafka, topics, prefix, stack_factory, tmp_path
):
    end = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    lines = load_sample(end)
    history = tmp_path / "crisis.jsonl"
    history.write_bytes(b"".join(json.dumps(line) + b"\n" for line in lines))
    with WebhookReceiver("s3cret") as receiver:
        config = write_config(
            tmp_path / "config.yaml",
            rules=XINGHE,
            notifier={
                "channels": [{"name": "hook", "type": "webhook", "url": receiver.url, "secret": "s3cret"}],
                "group_wait_seconds": 1,
                "group_interval_seconds": 5,
            },
        )
        crossing = next(
            c.window_end for c in _backtest(config, history) if c.tier == Tier.level1 and c.direction == "up"
        )
        env = {"YUQING_WINDOW_CLOCK": "event", **FAST}
        stack_factory(config, services=("scoring", "notifier"), partitions=1, extra_env=env)
        # 60 times real time: the sample's three hours in three minutes, a minute of event time a second.
        proc = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "services.cli.main",
                "replay",
                str(history),
                "--event-time",
                "--speed",
                "60",
            ],
            env={
                **os.environ,
                **env,
                "YUQING_KAFKA_BOOTSTRAP": kafka,
                "YUQING_TOPIC_PREFIX": prefix,
                "YUQING_PARTITIONS": "1",
                "YUQING_QUIET": "1",
            },
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        crossed_at = await _first_record_time(
            kafka,
            topics.tier_changes,
            lambda v: TierChange.model_validate_json(v).tier == Tier.level1,
            within=60,
        )
        warnings = [a for a in receiver.alerts if a["kind"] == "forecast" and a["tier"] == 1]
        assert len(warnings) == 1, [a["title"] for a in receiver.alerts if a["kind"] == "forecast"]
        (warning,) = warnings
        assert warning["title"].startswith("预计 ")
        assert warning["title"].endswith("分钟后达到一级: xinghe")
        # Delivered before scoring produced the crossing, made at least 15 minutes of event time before it.
        assert warning["received_at"] < crossed_at
        assert crossing - datetime.fromisoformat(warning["event_time"]) >= timedelta(minutes=15)
        assert receiver.bad_signatures == 0


def _backtest(config: Path, history: Path) -> list[TierChange]:
    backtest = Backtest(load_config(config))
    for line in history.read_bytes().splitlines():
        backtest.feed(Post.model_validate_json(line))
    return backtest.changes
