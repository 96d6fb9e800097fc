"""Late and out-of-order observations on a real Kafka: a shuffled crisis burst on three partitions."""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.events import TierChange
from services.common import json
from services.common.config import bundled_config_path
from tests.conftest import collect
from tests.factories import crisis_burst
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.kafka

ALL = {"2h": 100_001, "4h": 100_001, "8h": 100_001}


async def test_a_shuffled_burst_on_three_partitions_ends_at_level_1_with_every_count(
    kafka, topics, stack_factory
):
    """Issue 15: the held-out crisis (L3 -> L2 -> L1 over 90 minutes) posted in one shuffled burst. Its
    hits reach the windows out of order, behind wall-clock ticks every second: none is dropped, and the
    windows, the tier board and the ledger agree on 100,001. An observation 9 h older is dead-lettered."""
    stack = stack_factory(
        bundled_config_path(),
        services=("ingest", "scoring", "desk"),
        partitions=3,
        extra_env={"YUQING_TICK_SECONDS": "1"},
    )
    api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(api, stack)
    await wait_ready(desk, stack)
    start = datetime.now(UTC) - timedelta(minutes=95)
    posts = crisis_burst(start)
    random.Random(15).shuffle(posts)
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{api}/v1/posts", json=posts)
        assert resp.status_code == 202, resp.text

        def reached_level_1(values: list[bytes]) -> bool:
            return any(TierChange.model_validate_json(v).tier == 1 for v in values)

        changes = [
            TierChange.model_validate_json(v)
            for v in await collect(kafka, topics.tier_changes, reached_level_1, within=90)
        ]
        assert changes, "no tier change"
        assert changes[-1].tier == 1
        assert changes[-1].counts == ALL
        assert all(c.direction == "up" for c in changes)
        assert [c.window_end for c in changes] == sorted(c.window_end for c in changes)

        board: dict[str, object] = {}
        for _ in range(100):  # the desk's read model follows tier-changes and keyword-hits
            rows = (await client.get(f"{desk}/v1/tiers")).json()["groups"]
            board = next((r for r in rows if r["group"] == "xinghe"), {})
            if board.get("tier") == 1:
                break
            await asyncio.sleep(0.2)
        assert (board.get("tier"), board.get("counts")) == (1, ALL)
        # The board's counts come live from scoring; the ledger from the desk's sink, which may store the
        # hits a moment later than the tier change they caused.
        ledger: dict[str, Any] = {}
        for _ in range(100):
            ledger = (await client.get(f"{desk}/v1/ledger", params={"group": "xinghe", "limit": 100})).json()
            if ledger["total"] == len(posts):
                break
            await asyncio.sleep(0.2)
        assert ledger["total"] == len(posts)
        assert sum(row["spread"] for row in ledger["items"]) == 100_001

        old = crisis_burst(start - timedelta(hours=9), prefix="old")[0]
        resp = await client.post(f"{api}/v1/posts", json=old)
        assert resp.status_code == 202, resp.text
        dead = await collect(
            kafka, topics.dead_letter, lambda v: any(b"late_event" in x for x in v), within=30
        )
        (record,) = [json.loads(d) for d in dead]
        assert record["reason"] == "late_event"
        assert "behind the group's newest" in record["detail"]
        metrics = (await client.get(f"http://127.0.0.1:{stack.web_ports['scoring']}/metrics")).text
        assert re.search(r'yuqing_dead_letters_total\{reason="late_event",service="scoring"\} 1\.0', metrics)
        assert stack.check() == []
