"""Two escalation workers, or two notifier workers, sharing the load; the one that owns the crisis group's
partition SIGKILLed mid-crisis and not restarted: the survivor takes its partitions over within the session
timeout and no deadline or page is missed, none fires twice and no alert reaches the receiver twice.

The rows are appended to $YUQING_RELIABILITY_REPORT for docs/reliability.md, as test_faults.py's are.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from schemas.events import Alert, IncidentEvent
from schemas.topics import Topics
from services.common import json
from tests.conftest import collect, free_port
from tests.integration.test_pipeline import wait_ready
from tests.notifier.robots import HookServer, RobotServer
from tests.reliability.harness import HOOK_SECRET, Feed, Receivers, reliability_config, sample, verify

pytestmark = pytest.mark.kafka

SESSION_TIMEOUT = 6.0  # the stack's YUQING_SESSION_TIMEOUT_SECONDS (tests/conftest.py)
TICK = 5.0  # escalation's default YUQING_TICK_SECONDS
# How late a deadline may fire when its worker dies (docs/reliability.md, "How late a deadline can fire"):
# the session timeout, the rebalance (rebalance timeout: twice the session timeout) and table recovery, and a
# tick. Nothing restarts the dead worker here, so no supervisor delay is added.
LATE_BOUND = SESSION_TIMEOUT + 2 * SESSION_TIMEOUT + TICK + 5.0
_LAG = re.compile(r"yuqing_consumer_lag_messages\{([^}]*)\}")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    with HookServer(HOOK_SECRET) as hook, RobotServer() as robots:
        yield Receivers(hook, robots)


async def _owned(port: int, topic: str) -> set[int]:
    """Partitions of `topic` the worker serving `port` reports lag for: owned, recovered, fetched."""
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        except httpx.HTTPError:
            return set()
    rows = [dict(_LABEL.findall(labels)) for labels in _LAG.findall(text)]
    return {int(r["partition"]) for r in rows if r.get("topic") == topic}


async def _until_split(ports: dict[str, int], topic: str, partitions: int) -> dict[str, set[int]]:
    """Wait until every partition of `topic` is owned by exactly one of the workers, each owning some."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        owned = {key: await _owned(port, topic) for key, port in ports.items()}
        mine = [p for parts in owned.values() for p in parts]
        if all(owned.values()) and sorted(mine) == list(range(partitions)):
            return owned
        await asyncio.sleep(0.5)
    raise AssertionError(f"the workers never shared {topic}: {owned}")


async def _first_record(kafka: str, topic: str) -> tuple[int, bytes]:
    """(partition, value) of the first record on `topic`, waiting for one."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=250)).values():
                for r in records:
                    return r.partition, r.value
        raise AssertionError(f"nothing on {topic}")
    finally:
        await consumer.stop()


async def _deadlines_kept(kafka: str, topics: Topics, started: datetime) -> dict[str, float]:
    """Wait until a deadline of the run's incident has fallen due; then every deadline due by now has fired
    (breached), none later than LATE_BOUND after its due time. Read from the incident's latest event, which
    carries every deadline with when it was met, breached or retired. {deadline: seconds late}"""
    deadline = time.monotonic() + 120
    while True:
        events = [
            IncidentEvent.model_validate_json(v)
            for v in await collect(kafka, topics.incidents, lambda v: False, within=1)
        ]
        latest = max(events, key=lambda e: e.sequence)
        now = datetime.now(UTC)
        due = [d for d in latest.deadlines if d.due_at <= now and d.due_at >= started]
        unfired = [d for d in due if d.met_at is None and d.breached_at is None and d.superseded_at is None]
        missed = [d.name for d in unfired if d.due_at < now - timedelta(seconds=LATE_BOUND)]
        assert not missed, f"deadlines due more than {LATE_BOUND:.0f} s ago that never fired: {missed}"
        if due and not unfired:
            break
        assert time.monotonic() < deadline, f"no deadline fell due and fired: {latest.deadlines}"
        await asyncio.sleep(1)
    late = {d.name: (d.breached_at - d.due_at).total_seconds() for d in due if d.breached_at is not None}
    too_late = {k: v for k, v in late.items() if v > LATE_BOUND}
    assert not too_late, f"deadlines fired more than {LATE_BOUND:.0f} s late: {too_late}"
    assert late, f"no deadline breached: 'none missed' proves nothing: {due}"
    return late


async def _pages_received(kafka: str, topics: Topics, hook: HookServer) -> tuple[int, int]:
    """Every alert escalation published (pages, reminders, breaches) reached the webhook receiver: (alerts
    published, of them received)."""
    published = {
        Alert.model_validate_json(v).dedup_key
        for v in await collect(kafka, topics.alerts, lambda v: False, within=2)
    }
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        received = {a["dedup_key"] for a in list(hook.alerts)}
        if published <= received:
            break
        await asyncio.sleep(1)
    missing = published - received
    assert not missing, f"alerts escalation published that never reached the receiver: {sorted(missing)}"
    assert published, "escalation published no alert: 'none missed' proves nothing"
    return len(published), len(published & received)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("service", ["escalation", "notifier"])
async def test_two_workers_one_sigkilled_mid_crisis(
    service, kafka, stack_factory, prefix, tmp_path, receivers
):
    config = reliability_config(tmp_path / "c.yaml", receivers)
    stack = stack_factory(config, partitions=2)
    second = f"{service}-2"
    stack.web_ports[second] = free_port()
    stack.start_one(service, key=second)
    ports = {service: stack.web_ports[service], second: stack.web_ports[second]}
    api, desk = f"http://127.0.0.1:{stack.api_port}", f"http://127.0.0.1:{stack.desk_port}"
    await wait_ready(api, stack)
    await wait_ready(desk, stack)
    topics = Topics.with_prefix(prefix)
    # The input whose partition carries the crisis group: tier changes open incidents and start the clocks
    # (deadlines fire on that partition's ticks); keyword hits become the alerts the notifier groups.
    watched = topics.tier_changes if service == "escalation" else topics.keyword_hits
    split = await _until_split(ports, watched, 2)
    posts = sample()
    fault: dict[str, float] = {}
    fired_at: dict[str, str] = {}

    async def kill_the_owner() -> None:
        if service == "escalation":
            # Killed 3 s before the incident's ack deadline: it falls due while nobody owns the partition,
            # and the survivor must fire it (once) when it takes the partition over.
            partition, value = await _first_record(kafka, topics.incidents)
            opened = IncidentEvent.model_validate_json(value)
            (ack,) = [d for d in opened.deadlines if d.name == "ack"]
            await asyncio.sleep(max(0.0, (ack.due_at - datetime.now(UTC)).total_seconds() - 3))
        else:
            await asyncio.sleep(12)
            partition, value = await _first_record(kafka, watched)
            assert json.loads(value)["group"] == "xinghe"
        victim = next(k for k, parts in split.items() if partition in parts)
        survivor = next(k for k in ports if k != victim)
        # Still the owner: nothing moved since the split.
        assert partition in await _owned(ports[victim], watched), "the owner changed before the kill"
        fired_at["victim"], fired_at["partition"], fired_at["survivor"] = victim, str(partition), survivor
        fault["killed"] = time.monotonic()
        stack.kill(victim)
        while time.monotonic() - fault["killed"] < 60:
            if partition in await _owned(ports[survivor], watched):
                fault["took"] = time.monotonic() - fault["killed"]
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"the surviving {service} worker never took partition {partition} over")

    started = datetime.now(UTC)
    feed = Feed(api)
    await feed.run(posts, during=kill_the_owner)
    assert fault["took"] < LATE_BOUND, f"the survivor took over after {fault['took']:.1f} s"
    kept = await _deadlines_kept(kafka, topics, started)
    published, received = await _pages_received(kafka, topics, receivers.hook)
    late = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(kept.items()))
    rss = _rss_mib(stack.procs[fired_at["survivor"]].pid)
    report = await verify(
        kafka,
        topics,
        desk,
        posts,
        feed,
        f"two {service} workers, one lost (2 partitions, one each)",
        fault=(
            f"SIGKILL the {service} worker owning the crisis group's partition "
            + ("3 s before its ack deadline" if service == "escalation" else "12 s into the feed")
            + ", not restarted"
        ),
        config=config,
        receivers=receivers,
        recovery=fault["took"],
        same_order=False,
        extra_notes=(
            f"the survivor had partition {fired_at['partition']} recovered and fetched {fault['took']:.1f} s "
            f"after the kill (session timeout {SESSION_TIMEOUT:g} s); {received} of {published} alerts "
            f"escalation published reached the webhook receiver; deadlines fired late by: {late}; the "
            f"survivor's resident memory {rss:.0f} MiB"
        ),
    )
    assert stack.check() == [], f"services died: {stack.check()}"
    assert (report.lost, report.duplicates) == (0, 0)
