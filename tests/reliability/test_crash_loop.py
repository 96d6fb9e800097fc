"""The supervisor rule over real Kafka, in both runtimes: a record that kills the worker process twice is
dead-lettered as crash_loop on the next start (with an ERROR log and the metric), and the records after it
are processed. The workers run as in production (`yuqing worker`, restarted after each death as k8s would),
with a test-only hook that kills the process when it decodes a marked record (crashing_worker.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from schemas.events import DeadLetterRecord, IncidentEvent, KeywordHit, Post, Tier
from services.cli.runner import Stack
from services.common import json
from tests.conftest import collect, produce, write_config
from tests.factories import tier_change
from tests.reliability.crashing_worker import CRASH_EXIT_CODE, CRASH_MARKER
from tests.reliability.harness import record_row

pytestmark = pytest.mark.kafka


def _post(post_id: str, now: datetime) -> Post:
    return Post.model_validate(
        {
            "platform": "weibo",
            "post_id": post_id,
            "text": "#星河空调起火# 家里的星河空调起火了，售后推诿，要求退款！",
            "published_at": now.isoformat(),
            "event_time": now.isoformat(),
        }
    )


def _start(stack: Stack, name: str) -> subprocess.Popen[bytes]:
    log = (stack.log_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crashing_worker", name],
        env=stack.child_env(name, 1),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    stack.procs[name] = proc  # stopped with the stack
    return proc


async def _dies(proc: subprocess.Popen[bytes], within: float = 90.0) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(proc.wait, within)
    assert proc.returncode == CRASH_EXIT_CODE, f"expected the marked record to kill it, got {proc.returncode}"


async def _crash_twice_then_live(stack: Stack, name: str) -> None:
    for _ in range(2):
        await _dies(_start(stack, name))
    _start(stack, name)


async def test_a_record_that_kills_a_worker_twice_is_dead_lettered_and_the_next_processed(
    kafka, topics, stack_factory, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yaml")
    stack = stack_factory(config, services=(), partitions=1)  # the topics; the workers are started below
    now = datetime.now(UTC)
    posts = [_post("before", now), _post(CRASH_MARKER.decode(), now), _post("after", now)]
    await produce(kafka, topics.posts_raw, [(p.thread_key.encode(), json.dumps(p)) for p in posts])
    changes = [
        tier_change(Tier.level3, Tier.none, {"8h": 20_000}, group=group, at=now)
        for group in ("before", CRASH_MARKER.decode(), "after")
    ]
    await produce(kafka, topics.tier_changes, [(c.group.encode(), json.dumps(c)) for c in changes])

    # Both runtimes at once: the batch loop (scoring) and the faust shell (escalation).
    await asyncio.gather(
        _crash_twice_then_live(stack, "scoring"), _crash_twice_then_live(stack, "escalation")
    )

    dead = [
        DeadLetterRecord.model_validate_json(v)
        for v in await collect(kafka, topics.dead_letter, lambda v: len(v) >= 2, within=90)
    ]
    got = sorted((d.service, d.source_topic, d.offset, d.reason) for d in dead)
    assert got == [
        ("escalation", topics.tier_changes, 1, "crash_loop"),
        ("scoring", topics.posts_raw, 1, "crash_loop"),
    ]
    assert all(CRASH_MARKER in base64.b64decode(d.value_base64) for d in dead)
    # The records after it are processed: the post is scored, the tier change opens its incident.
    hits = await collect(kafka, topics.keyword_hits, lambda v: any(b'"post_id":"after"' in x for x in v))
    assert {KeywordHit.model_validate_json(v).post_id for v in hits} == {"before", "after"}
    incidents = await collect(
        kafka, topics.incidents, lambda v: any(b'"group":"after"' in x for x in v), within=60
    )
    assert {IncidentEvent.model_validate_json(v).group for v in incidents} == {"before", "after"}
    assert stack.check() == []  # the third start lives on
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("scoring", "escalation"):
            text = (await client.get(f"http://127.0.0.1:{stack.web_ports[name]}/metrics")).text
            assert f'yuqing_dead_letters_total{{reason="crash_loop",service="{name}"}} 1.0' in text, name
            log = (stack.log_dir / f"{name}.log").read_text(errors="replace")
            assert "ERROR" in log, name
            assert "killed" in log, name
            assert "crash_loop" in log, name
    record_row(
        "| crash loop | a post and a tier change that kill the worker process (os._exit) whenever decoded, "
        "between valid ones | scoring and escalation restarted after each death, as k8s does | 3 | 2 | 0 | "
        "0 | — | two deaths each, then the record dead-lettered as crash_loop (ERROR log, metric) and the "
        "records after it processed |"
    )
