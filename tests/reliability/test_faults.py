"""Faults under load, with figures: broker restart, worker crashes, a rebalance, overload (poison messages:
test_poison.py; a record that crashes a worker: test_crash_loop.py).

Bounded for CI; YUQING_RELIABILITY_LONG=1 replays the crisis 4x slower (more time under fault).
Rows are appended to $YUQING_RELIABILITY_REPORT (default /tmp/yuqing-reliability.md) for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas.topics import Topics
from services.common import json
from services.common.broker import EmbeddedBroker
from tests.conftest import collect, free_port
from tests.integration.test_pipeline import wait_ready
from tests.notifier.robots import HookServer, RobotServer
from tests.reliability.harness import (
    HOOK_SECRET,
    LONG,
    NOMINAL_POSTS_PER_SECOND,
    Feed,
    Receivers,
    record_row,
    reliability_config,
    sample,
    verify,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    with HookServer(HOOK_SECRET) as hook, RobotServer() as robots:
        yield Receivers(hook, robots)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker this test may stop and restart, apart from the session's."""
    broker = EmbeddedBroker(port=free_port(), home=tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_broker_restart_under_load(own_broker, stack_factory, prefix, tmp_path, receivers):
    config = reliability_config(tmp_path / "c.yaml", receivers)
    env = {"YUQING_KAFKA_BOOTSTRAP": own_broker.bootstrap, "YUQING_PRODUCE_TIMEOUT_SECONDS": "3"}
    stack = stack_factory(config, partitions=1, extra_env=env)
    api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(api, stack)
    await wait_ready(desk, stack)
    posts = sample()
    outage: dict[str, float] = {}

    async def restart_broker() -> None:
        await asyncio.sleep(8)
        outage["start"] = time.monotonic()
        await asyncio.to_thread(own_broker.stop)
        await asyncio.sleep(8)
        await asyncio.to_thread(own_broker.start)
        outage["end"] = time.monotonic()
        async with httpx.AsyncClient() as client:  # recovered: the API reaches Kafka again
            for _ in range(600):
                if (await client.get(f"{api}/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.2)
        outage["took"] = time.monotonic() - outage["end"]

    feed = Feed(api)
    await feed.run(posts, during=restart_broker)
    assert feed.statuses[503] >= 1, "the API never answered 503 during the outage"
    report = await verify(
        own_broker.bootstrap,
        Topics.with_prefix(prefix),
        desk,
        posts,
        feed,
        "broker restart under load (all four services running)",
        fault="Kafka stopped 8 s into the feed, restarted 8 s later",
        config=config,
        receivers=receivers,
        recovery=outage["took"],
    )
    assert stack.check() == [], f"services died with the broker: {stack.check()}"
    assert report.lost == 0


@pytest.mark.parametrize("victim", ["ingest", "scoring", "escalation", "notifier"])
async def test_worker_sigkill_and_restart(victim, kafka, stack_factory, prefix, tmp_path, receivers):
    config = reliability_config(tmp_path / "c.yaml", receivers)
    stack = stack_factory(config, partitions=1)
    api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(api, stack)
    await wait_ready(desk, stack)
    posts = sample()
    restarted: dict[str, float] = {}

    async def crash() -> None:
        await asyncio.sleep(12)
        stack.kill(victim)
        await asyncio.sleep(1)
        stack.start_one(victim)
        restarted["at"] = time.monotonic()
        if victim == "ingest":  # the API's clients retry; it is back when it reaches Kafka again
            restarted["took"] = await _until_ready(api, restarted["at"])
        else:
            restarted["took"] = await _until_consuming(stack.web_ports[victim], restarted["at"])

    feed = Feed(api)
    await feed.run(posts, during=crash)
    report = await verify(
        kafka,
        Topics.with_prefix(prefix),
        desk,
        posts,
        feed,
        f"worker crash: {victim}",
        fault=f"SIGKILL {victim} 12 s into the feed, restarted 1 s later",
        config=config,
        receivers=receivers,
        recovery=restarted["took"],
    )
    assert report.duplicates == 0


async def test_rebalance_second_scoring_worker_joins_and_leaves(
    kafka, stack_factory, prefix, tmp_path, receivers
):
    config = reliability_config(tmp_path / "c.yaml", receivers)
    stack = stack_factory(config, partitions=3)
    api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(api, stack)
    await wait_ready(desk, stack)
    posts = sample()

    async def join_then_leave() -> None:
        await asyncio.sleep(6)
        # Under a key of its own: both workers stay in stack.procs, so the stack stops whichever is left.
        stack.web_ports["scoring-2"] = free_port()  # the first one's port is taken: it would not start
        second = stack.start_one("scoring", index=len(stack.procs) + 4, key="scoring-2")
        await asyncio.sleep(12)
        assert second.poll() is None, "the second scoring worker exited instead of joining"
        second.terminate()
        await asyncio.to_thread(second.wait, 30)
        del stack.procs["scoring-2"]  # only once it is gone

    feed = Feed(api)
    await feed.run(posts, during=join_then_leave)
    await verify(
        kafka,
        Topics.with_prefix(prefix),
        desk,
        posts,
        feed,
        "rebalance, 3 partitions",
        fault="a second scoring worker joins at 6 s and leaves (SIGTERM) 12 s later",
        config=config,
        receivers=receivers,
        same_order=False,
    )


async def test_overload_20x_is_shed_and_nothing_accepted_is_lost(
    kafka, topics, stack_factory, tmp_path, receivers
):
    """Nominal: the sample's peak rate. 20x that, from 40 concurrent clients, for a bounded time."""
    config = reliability_config(tmp_path / "c.yaml", receivers)
    stack = stack_factory(
        config, services=("ingest",), partitions=1, extra_env={"YUQING_MAX_INFLIGHT_POSTS": "400"}
    )
    api = f"http://127.0.0.1:{stack.api_port}"
    await wait_ready(api, stack)
    pid = stack.procs["ingest"].pid
    rss_before = _rss(pid)
    accepted: set[str] = set()
    statuses: dict[int, int] = {}
    errors = 0
    offered = 0
    started = time.monotonic()
    stop = started + (30 if LONG else 8)
    counter = iter(range(10**9))

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors, offered
        while time.monotonic() < stop:
            batch = [
                {
                    "platform": "weibo",
                    "post_id": f"ov{next(counter)}",
                    "text": "避雷星河冰箱，质量问题",
                    "published_at": "2026-11-24T08:00:00+08:00",
                }
                for _ in range(50)
            ]
            offered += len(batch)
            try:
                resp = await client.post(f"{api}/v1/posts", json=batch)
            except httpx.HTTPError:
                errors += 1
                continue
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            if resp.status_code == 202:
                accepted.update(a["event_id"] for a in resp.json()["accepted"])

    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=40)) as client:
        await asyncio.gather(*[client_loop(client) for _ in range(40)])
    rate = offered / (time.monotonic() - started)
    rss_after = _rss(pid)
    assert rate >= 20 * NOMINAL_POSTS_PER_SECOND, f"offered {rate:.0f} posts/s, not 20x nominal"
    assert errors == 0, "client timeouts or connection errors under overload"
    assert set(statuses) <= {202, 429, 503}, statuses
    assert statuses.get(202, 0) > 0
    on_topic = await collect(kafka, topics.posts_raw, lambda v: len(v) >= len(accepted), within=60)
    ids = {json.loads(v)["event_id"] for v in on_topic}
    assert accepted <= ids, f"{len(accepted - ids)} accepted posts lost"
    assert rss_after - rss_before < 200 * 2**20, f"API memory grew {(rss_after - rss_before) / 2**20:.0f} MiB"
    record_row(
        f"| overload | {rate:,.0f} posts/s offered = {rate / NOMINAL_POSTS_PER_SECOND:,.0f}x nominal "
        f"({NOMINAL_POSTS_PER_SECOND:.0f}/s), 40 clients, 50-post batches | ingest only, in-flight cap 400 "
        f"| {len(accepted)} | n/a | 0 | 0 | — | statuses {statuses}; API RSS "
        f"{rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB |"
    )


async def _until_consuming(port: int, since: float) -> float:
    """Seconds until a restarted worker has its partitions again (tables recovered, consumer lag reported)."""
    async with httpx.AsyncClient() as client:
        while time.monotonic() - since < 120:
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                if "yuqing_consumer_lag_messages{" in text:
                    return time.monotonic() - since
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the restarted worker never got its partitions back")


async def _until_ready(api: str, since: float) -> float:
    """Seconds until a restarted API answers /readyz 200 (it reaches Kafka again)."""
    async with httpx.AsyncClient() as client:
        while time.monotonic() - since < 120:
            try:
                if (await client.get(f"{api}/readyz")).status_code == 200:
                    return time.monotonic() - since
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the restarted API never became ready")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
