"""A broker of a three-node cluster lost mid-crisis: replicated topics (replication factor 3,
min.insync.replicas 2) keep every acknowledged post and count it once, with the four services and the
operator API running throughout.

The row is appended to $YUQING_RELIABILITY_REPORT for docs/reliability.md, as test_faults.py's are.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import Topics
from services.common.broker import EmbeddedBroker
from tests.conftest import YUQING
from tests.integration.test_pipeline import wait_ready
from tests.notifier.robots import HookServer, RobotServer
from tests.processes import restarting_for_fixture
from tests.reliability.harness import HOOK_SECRET, Feed, Receivers, reliability_config, sample, verify

pytestmark = pytest.mark.kafka


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    with HookServer(HOOK_SECRET) as hook, RobotServer() as robots:
        yield Receivers(hook, robots)


async def _partitions(bootstrap: str, prefix: str) -> list[dict]:
    """Every partition of the test's topics (inputs, outputs, changelogs)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        return [p for t in await admin.describe_topics(names) for p in t["partitions"]]
    finally:
        await admin.close()


async def _leader_of(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return int(described["partitions"][0]["leader"])
    finally:
        await admin.close()


async def _until_fully_replicated(bootstrap: str, prefix: str, since: float) -> float:
    """Seconds from `since` until every partition of the test's topics has its 3 replicas in sync again."""
    while time.monotonic() - since < 180:
        try:
            partitions = await _partitions(bootstrap, prefix)
            if partitions and all(len(p["isr"]) == 3 for p in partitions):
                return time.monotonic() - since
        except Exception:  # noqa: S110 - the cluster answers again in a moment
            pass
        await asyncio.sleep(0.5)
    raise AssertionError("the restarted broker never caught up with every partition")


async def test_a_broker_killed_mid_crisis_loses_and_repeats_nothing(
    kafka_cluster: EmbeddedBroker, stack_factory, prefix, tmp_path, receivers
):
    config = reliability_config(tmp_path / "c.yaml", receivers)
    env = {**kafka_cluster.client_env(), "YUQING_PRODUCE_TIMEOUT_SECONDS": "5"}
    stack = stack_factory(config, partitions=1, extra_env=env)
    api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(api, stack)
    await wait_ready(desk, stack)
    topics = Topics.with_prefix(prefix)
    assert {len(p["replicas"]) for p in await _partitions(kafka_cluster.bootstrap, prefix)} == {3}
    posts = sample()
    fault: dict[str, float] = {}

    async def kill_a_broker() -> None:
        await asyncio.sleep(8)
        # The leader of posts.raw: ingest's writes must move to another broker.
        victim = await _leader_of(kafka_cluster.bootstrap, topics.posts_raw)
        fault["victim"] = victim
        fault["killed"] = time.monotonic()
        assert await asyncio.to_thread(kafka_cluster.kill, victim)
        status = await asyncio.to_thread(
            subprocess.run,
            [
                *YUQING,
                "broker",
                "status",
                "--port",
                str(kafka_cluster.port),
                "--dir",
                str(kafka_cluster.home),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert status.returncode == 1, status.stdout
        assert f"node(s) {victim} down" in status.stdout
        await asyncio.sleep(8)
        fault["restarted"] = time.monotonic()
        # The node is the session cluster's again: its fixture stops it, not this test.
        await asyncio.to_thread(restarting_for_fixture, kafka_cluster.start)
        fault["rejoined"] = time.monotonic() - fault["restarted"]
        fault["recovered"] = await _until_fully_replicated(
            kafka_cluster.bootstrap, prefix, fault["restarted"]
        )

    feed = Feed(api)
    await feed.run(posts, during=kill_a_broker)
    during = [t for t in feed.acked_at if t >= fault["killed"] - 1]
    paused = max((b - a for a, b in itertools.pairwise(during)), default=0.0)
    report = await verify(
        kafka_cluster.bootstrap,
        topics,
        desk,
        posts,
        feed,
        "broker loss, 3-node cluster (replication factor 3, min.insync.replicas 2, all five services)",
        fault=(
            f"SIGKILL the broker leading posts.raw (node {fault['victim']:.0f}) 8 s into the feed, "
            "restarted 8 s later"
        ),
        config=config,
        receivers=receivers,
        recovery=fault["recovered"],
        extra_notes=(
            f"longest wait between acknowledged batches after the kill {paused:.1f} s; the node rejoined "
            f"{fault['rejoined']:.1f} s after its restart, every partition in sync again after "
            f"{fault['recovered']:.1f} s"
        ),
    )
    assert stack.check() == [], f"services died with the broker: {stack.check()}"
    assert (report.lost, report.duplicates) == (0, 0)
