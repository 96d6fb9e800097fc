"""The notifier publishes the briefing (简报) of a due slot from what the topics hold and delivers it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.cli.demo import WebhookReceiver
from services.common import json
from tests.conftest import produce, write_config
from tests.factories import hit

pytestmark = pytest.mark.kafka


async def test_the_notifier_sends_the_briefing_of_the_slot_that_just_came(
    kafka, topics, stack_factory, tmp_path
):
    with WebhookReceiver("s") as receiver:
        now = datetime.now(UTC)
        # Once a day, at the minute that just began: due as soon as the worker has read the topics.
        slot = now.astimezone(ZoneInfo("Asia/Shanghai")).replace(second=0, microsecond=0)
        config = write_config(
            tmp_path / "c.yaml",
            notifier={
                "channels": [{"name": "hook", "type": "webhook", "url": receiver.url, "secret": "s"}],
                "briefing_times": [slot.strftime("%H:%M")],
            },
        )
        stack = stack_factory(config, services=(), partitions=2)
        hits = [hit(f"p{i}", 1000 * i, at=now - timedelta(hours=1)) for i in range(1, 4)]
        await produce(kafka, topics.keyword_hits, [(h.group.encode(), json.dumps(h)) for h in hits])
        stack.env["YUQING_BRIEFINGS"] = "true"
        stack.start_one("notifier")
        for _ in range(300):
            if any(a["kind"] == "briefing" for a in receiver.alerts):
                break
            assert not stack.check(), stack.check()
            await asyncio.sleep(0.2)
    briefings = [a for a in receiver.alerts if a["kind"] == "briefing"]
    assert len(briefings) == 1, receiver.alerts
    assert briefings[0]["dedup_key"] == f"briefing|{slot.isoformat()}"
    assert "新增负面 New negative items: 3" in briefings[0]["body"]
