"""Notifier benchmark: keyword hit -> alert delivered, per hit, under sustained load on the embedded Kafka.

    .venv/bin/python bench/notifier.py [--rate 100] [--seconds 60] [--groups 20] [--secure]

Scoring and the notifier run as real workers with the default grouping (group_wait 10 s, group_interval
30 s, max wait 300 s) and deliver to a local HMAC-checking webhook. New matching posts are produced to
posts.raw at a steady rate, spread over N rule groups. Latency for each hit is the webhook's receive time
minus the hit's detection time (KeywordHit.detected_at), so grouping delay is included, as on-call staff
experience it; a message names the keyword-hits offsets it covers, which maps it back to its hits.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._util import Kafka, broker, free_port
from services.cli.demo import WebhookReceiver
from services.cli.runner import Stack
from services.common import json


def _config(path: Path, groups: int, url: str) -> Path:
    rules = [{"name": f"brand{i}", "brands": [f"品牌{i:02d}号"]} for i in range(groups)]
    path.write_text(
        yaml.safe_dump(
            {
                "rules": {"groups": rules},
                "notifier": {
                    "channels": [
                        {"name": "hook", "type": "webhook", "url": url, "secret": "s", "rate_per_minute": 600}
                    ],
                },
            },
            allow_unicode=True,
        )
    )
    path.chmod(0o600)
    return path


async def _load(kafka: Kafka, topic: str, rate: float, seconds: float, groups: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5, **kafka.client)
    await producer.start()
    rnd, sent, t0 = random.Random(5), 0, time.monotonic()
    try:
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * rate)
            while sent < due:
                now = datetime.now(UTC).isoformat()
                post = {
                    "platform": "weibo",
                    "post_id": f"n{sent}",
                    "published_at": now,
                    "event_time": now,
                    "text": f"避雷品牌{rnd.randrange(groups):02d}号，质量问题太多，要求退款",
                    "engagement": {"likes": rnd.randint(1, 50)},
                }
                await producer.send(topic, key=f"weibo:n{sent}".encode(), value=json.dumps(post))
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _hits(kafka: Kafka, topic: str) -> list[tuple[int, int, bytes]]:
    """(partition, offset, value) of every keyword hit, read until the topic is quiet for 5 s."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka.client,
    )
    await consumer.start()
    out: list[tuple[int, int, bytes]] = []
    quiet = time.monotonic()
    try:
        while time.monotonic() - quiet < 5:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend((r.partition, r.offset, r.value) for r in records)
                quiet = time.monotonic()
    finally:
        await consumer.stop()
    return out


def _match(hits: list[tuple[int, int, bytes]], alerts: list[dict[str, Any]]) -> tuple[list[float], int, int]:
    """(per-hit latencies, keyword-hit messages, hits no message covers)."""
    # A message covers every hit of its group at offsets first..last of one partition (Alert.hit_span).
    detected: dict[tuple[int, int], tuple[str, datetime]] = {}
    for partition, offset, raw in hits:
        h = json.loads(raw)
        if h["first_seen"]:
            detected[(partition, offset)] = (h["group"], datetime.fromisoformat(h["detected_at"]))
    latencies = []
    messages = 0
    for alert in list(alerts):
        if alert["kind"] != "keyword_hits":
            continue
        messages += 1
        span = alert["hit_span"]
        for offset in range(span["first_offset"], span["last_offset"] + 1):
            found = detected.get((span["partition"], offset))
            if found and found[0] == alert["group"]:
                del detected[(span["partition"], offset)]
                latencies.append((alert["received_at"] - found[1]).total_seconds())
    return latencies, messages, len(detected)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0, help="new matching posts per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--secure", action="store_true", help="an embedded SASL_SSL broker (TLS and SCRAM)")
    args = parser.parse_args()
    with (
        broker(secure=args.secure) as kafka,
        tempfile.TemporaryDirectory() as tmp,
        WebhookReceiver("s") as receiver,
    ):
        prefix = f"benchn{int(time.time())}."
        config = _config(Path(tmp) / "c.yaml", args.groups, receiver.url)
        env = {
            **kafka.env,
            "YUQING_TOPIC_PREFIX": prefix,
            "YUQING_PARTITIONS": "3",
            "YUQING_CONFIG_FILE": str(config),
            "YUQING_DATA_DIR": tmp,
            "YUQING_LOG_LEVEL": "warn",
            "YUQING_BRIEFINGS": "false",  # a 简报 due during the run would be one more message to match
        }
        stack = Stack(
            env=env,
            log_dir=Path(tmp) / "logs",
            api_port=free_port(),
            web_ports={s: free_port() for s in ("scoring", "escalation", "notifier")},
        )
        stack.start(("scoring", "notifier"))
        try:
            time.sleep(8)  # consumer groups join
            sent = asyncio.run(_load(kafka, prefix + "posts.raw", args.rate, args.seconds, args.groups))
            # Wait for scoring to catch up and the last batches to go out (group_interval + delivery), however
            # loaded the machine is: a fixed sleep cut off the tail when scoring lagged.
            deadline = time.monotonic() + 300
            while True:
                time.sleep(10)
                hits = asyncio.run(_hits(kafka, prefix + "keyword-hits"))
                _, _, left = _match(hits, receiver.alerts)
                if (len(hits) >= sent and left == 0) or time.monotonic() > deadline:
                    break
        finally:
            stack.stop()
    latencies, messages, left = _match(hits, receiver.alerts)
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    print(f"posts sent: {sent} at {args.rate:.0f}/s for {args.seconds:.0f} s over {args.groups} rule groups")
    print(
        f"hits delivered: {len(latencies)}; hits never delivered: {left}; "
        f"messages: {messages} ({messages / max(1, args.groups):.1f} per group, "
        f"{messages / args.groups / (args.seconds / 60):.1f} per group-minute)"
    )
    print(
        f"hit -> delivered latency: p50 {q[49]:.1f} s, p90 {q[89]:.1f} s, p99 {q[98]:.1f} s, "
        f"max {latencies[-1]:.1f} s"
    )


if __name__ == "__main__":
    main()
