"""`yuqing replay --event-time`: a 2025 crisis replayed on an event-time stack gives its tier timeline."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.events import Post, TierChange
from services.cli.demo import load_sample
from services.common import json
from services.common.config import load_config
from services.scoring.backtest import Backtest
from tests.conftest import collect, write_config

pytestmark = pytest.mark.kafka

END = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _history(path: Path) -> Path:
    """The sample crisis in March 2025, then ten hours later one post about another brand: time goes on
    for the partition, and the crisis group, quiet since, cools down on ticks."""
    lines = load_sample(END)
    later = END + timedelta(hours=10)
    lines.append(
        {
            "platform": "weibo",
            "post_id": "gree1",
            "text": "格力空调漏水，售后不管，投诉无门",
            "published_at": later.isoformat(),
            "event_time": later.isoformat(),
            "engagement": {"reposts": 1, "comments": 1, "likes": 1},
        }
    )
    path.write_bytes(b"".join(json.dumps(line) + b"\n" for line in lines))
    return path


def _config(path: Path) -> Path:
    return write_config(
        path,
        rules={
            "groups": [
                {"name": "xinghe", "brands": ["星河电器", "星河空调", "星河冰箱", "星河"]},
                {"name": "gree", "brands": ["格力"]},
            ]
        },
    )


async def test_a_2025_crisis_replayed_with_event_time_reproduces_its_tier_timeline(
    kafka, topics, prefix, stack_factory, tmp_path
):
    config = _config(tmp_path / "config.yaml")
    history = _history(tmp_path / "history.jsonl")
    env = {"YUQING_WINDOW_CLOCK": "event", "YUQING_TICK_SECONDS": "1"}
    stack = stack_factory(config, services=("scoring",), partitions=1, extra_env=env)

    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli.main", "replay", str(history), "--event-time", "--quiet"],
        env={
            **os.environ,
            **env,
            "YUQING_KAFKA_BOOTSTRAP": kafka,
            "YUQING_TOPIC_PREFIX": prefix,
            "YUQING_PARTITIONS": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("sent 419 posts")

    backtest = Backtest(load_config(config))
    for line in history.read_bytes().splitlines():
        backtest.feed(Post.model_validate_json(line))
    expected = backtest.changes
    # Up to level 1 in the crisis, then down step by step in March 2025 as the later post moved time on.
    steps = [(int(c.previous), int(c.tier)) for c in expected]
    assert steps == [(0, 3), (3, 2), (2, 1), (1, 2), (2, 3), (3, 0)]
    assert all(c.window_end.year == 2025 for c in expected)

    values = await collect(kafka, topics.tier_changes, lambda v: len(v) >= len(expected), within=90)
    live = [TierChange.model_validate_json(v) for v in values]
    assert [c.event_id for c in live] == [c.event_id for c in expected]
    assert [c.counts for c in live] == [c.counts for c in expected]
    dead = await collect(kafka, topics.dead_letter, lambda v: False, within=2)
    assert dead == []
    assert stack.check() == []
