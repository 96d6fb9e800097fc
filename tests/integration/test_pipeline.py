"""Posts over HTTP through all four services on a real Kafka, to a signed webhook."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from schemas.events import Delivery, IncidentEvent, TierChange
from services.cli.demo import WebhookReceiver
from services.common import json
from tests.conftest import collect, produce, write_config

pytestmark = pytest.mark.kafka


def crisis_posts(now: datetime) -> list[dict]:
    """Eleven snapshots of growing complaints: the spread crosses 10k, 50k and 100k in that order."""
    posts = []
    for i in range(1, 12):
        posts.append(
            {
                "platform": "weibo",
                "post_id": f"wb{i}",
                "text": f"#星河空调起火# 第{i}位网友：家里的星河空调起火了，售后推诿，要求退款！",
                "published_at": (now - timedelta(minutes=40)).isoformat(),
                "event_time": (now - timedelta(minutes=30 - i)).isoformat(),
                "engagement": {"reposts": 1500 * i, "comments": 1000 * i, "likes": 2500 * i},
            }
        )
    return posts


async def wait_ready(api: str, stack) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(f"{api}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert not stack.check(), f"services exited: {stack.check()}"
            await __import__("asyncio").sleep(0.2)
    raise AssertionError(f"{api} never became ready")


async def test_posts_flow_through_every_service(kafka, topics, stack_factory, tmp_path):
    await check_pipeline(kafka, {}, topics, stack_factory, tmp_path)


async def check_pipeline(
    kafka, kafka_client, topics, stack_factory, tmp_path, extra_env=None, service_env=None
) -> None:
    """Eleven posts in over HTTP, three tiers up, an override, an incident with its deadlines, alerts at a
    signed webhook, a dead letter, and the metrics that show them. `kafka` and `kafka_client` (security
    arguments of the test's own Kafka clients) say where the stack started with `extra_env` runs."""
    with WebhookReceiver("s3cret") as receiver:
        config = write_config(
            tmp_path / "config.yaml",
            notifier={
                "channels": [{"name": "hook", "type": "webhook", "url": receiver.url, "secret": "s3cret"}],
                "group_wait_seconds": 1,
                "group_interval_seconds": 5,
            },
        )
        stack = stack_factory(config, extra_env=extra_env, service_env=service_env)
        api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
        await wait_ready(api, stack)
        await wait_ready(desk, stack)
        now = datetime.now(UTC)
        async with httpx.AsyncClient() as client:
            resp = await client.post(f"{api}/v1/posts", json=crisis_posts(now))
        assert resp.status_code == 202, resp.text
        # A poison message straight onto the input topic must not stop the flow.
        await produce(kafka, topics.posts_raw, [(b"weibo:bad", b"{not json")], **kafka_client)

        changes = await collect(kafka, topics.tier_changes, lambda v: len(v) >= 3, **kafka_client)
        tiers = [TierChange.model_validate_json(v) for v in changes]
        assert [(int(t.previous), int(t.tier)) for t in tiers] == [(0, 3), (3, 2), (2, 1)]
        assert {(t.direction, t.group) for t in tiers} == {("up", "xinghe")}
        assert tiers[-1].counts["2h"] > 100_000
        assert tiers[0].top_posts
        assert tiers[0].top_posts[0]["platform"] == "weibo"

        async with httpx.AsyncClient() as client:
            pin = await client.post(f"{desk}/v1/tiers/xinghe/override", json={"tier": 2, "actor": "王组长"})
        assert pin.status_code == 202, pin.text
        changes = await collect(kafka, topics.tier_changes, lambda v: len(v) >= 4, **kafka_client)
        pinned = TierChange.model_validate_json(changes[3])
        assert (pinned.reason, int(pinned.previous), int(pinned.tier), pinned.operator) == (
            "override",
            1,
            2,
            "王组长",
        )

        incidents = await collect(kafka, topics.incidents, lambda v: len(v) >= 1, **kafka_client)
        opened = IncidentEvent.model_validate_json(incidents[0])
        assert (opened.kind.value, int(opened.tier)) == ("opened", 3)
        deadlines = {d.name: d.due_at for d in opened.deadlines}
        assert deadlines["facts_verified"] - deadlines["ack"] == timedelta(minutes=30)

        deliveries = await collect(
            kafka,
            topics.deliveries,
            lambda v: (
                {Delivery.model_validate_json(x).dedup_key.split("|")[0] for x in v} >= {"hits"}
                and any(b"incident_opened" in x for x in v)
            ),
            **kafka_client,
        )
        delivered = [Delivery.model_validate_json(v) for v in deliveries]
        assert all(d.outcome.value == "delivered" for d in delivered)
        kinds = {a["kind"] for a in receiver.alerts}
        assert {"incident_opened", "keyword_hits"} <= kinds
        assert receiver.bad_signatures == 0
        hits_alert = next(a for a in receiver.alerts if a["kind"] == "keyword_hits")
        assert hits_alert["group"] == "xinghe"
        assert len(hits_alert["hit_ids"]) >= 1

        dead = await collect(kafka, topics.dead_letter, lambda v: len(v) >= 1, **kafka_client)
        record = json.loads(dead[0])
        assert record["reason"] == "invalid_json"
        assert record["source_topic"] == topics.posts_raw
        assert __import__("base64").b64decode(record["value_base64"]) == b"{not json"
        async with httpx.AsyncClient() as client:
            scoring = (await client.get(f"http://127.0.0.1:{stack.web_ports['scoring']}/metrics")).text
            api_metrics = (await client.get(f"{api}/metrics")).text
            health = await client.get(f"http://127.0.0.1:{stack.web_ports['notifier']}/healthz")
        assert health.json()["service"] == "notifier"
        assert (
            f'yuqing_consumer_lag_messages{{partition="0",service="scoring",topic="{topics.posts_raw}"}}'
            in scoring
        )
        assert re.search(
            r'yuqing_dead_letters_total\{reason="invalid_json",service="scoring"\} 1\.0', scoring
        )
        assert re.search(r'yuqing_tier_level\{group="xinghe"\} 2\.0', scoring)
        assert re.search(
            r'yuqing_platform_last_post_timestamp_seconds\{platform="weibo"\} 1\.\d+e\+09', api_metrics
        )
        assert stack.check() == []
