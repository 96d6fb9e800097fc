"""Ingest benchmark: accepted posts/s over HTTP and through `yuqing replay`, with raw aiokafka produce
throughput measured in the same run as the ceiling.

    .venv/bin/python bench/ingest.py [--posts 50000] [--batch 100] [--clients 8] [--secure]

One API process (uvicorn) on the embedded Kafka (SASL_SSL with --secure; YUQING_KAFKA_* for your own);
HTTP clients post batches of normalised posts concurrently;
the replay streams a JSONL file of the same posts; the raw loop produces the same serialised posts with
aiokafka (acks=all), which no ingest path can beat.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._util import Kafka, broker, create_topic, free_port, synthetic_posts
from services.common import json
from services.common.kafka import ensure_topics


async def _raw(kafka: Kafka, topic: str, values: list[bytes]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True, linger_ms=5, **kafka.client
    )
    await producer.start()
    t0 = time.perf_counter()
    try:
        for i in range(0, len(values), 1000):
            await asyncio.gather(*[await producer.send(topic, value=v) for v in values[i : i + 1000]])
    finally:
        await producer.stop()
    return len(values) / (time.perf_counter() - t0)


async def _http(api: str, posts: list[dict[str, object]], batch: int, clients: int) -> float:
    chunks = [json.dumps(posts[i : i + batch]) for i in range(0, len(posts), batch)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                resp = await client.post(f"{api}/v1/posts", content=body)
                if resp.status_code == 202:
                    break
                await asyncio.sleep(float(resp.headers.get("Retry-After", "0.2")))

    async with httpx.AsyncClient(timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(clients)])
        return len(posts) / (time.perf_counter() - t0)


def _wait_ready(api: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{api}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("API never became ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--secure", action="store_true", help="an embedded SASL_SSL broker (TLS and SCRAM)")
    args = parser.parse_args()
    posts = list(synthetic_posts(args.posts, 10))
    with broker(secure=args.secure) as kafka, tempfile.TemporaryDirectory() as tmp:
        prefix = f"benchi{int(time.time())}."
        asyncio.run(ensure_topics(kafka.settings(topic_prefix=prefix, partitions=3)))
        asyncio.run(create_topic(kafka, prefix + "bench.raw", 3))
        raw = asyncio.run(_raw(kafka, prefix + "bench.raw", [json.dumps(p) for p in posts]))
        port = free_port()
        env = {
            **os.environ,
            **kafka.env,
            "YUQING_TOPIC_PREFIX": prefix,
            "YUQING_PARTITIONS": "3",
            "YUQING_API_PORT": str(port),
            "YUQING_READ_MODEL": "false",
            "YUQING_LOG_LEVEL": "warn",
            "YUQING_MAX_INFLIGHT_POSTS": "100000",
        }
        with open(Path(tmp) / "api.log", "wb") as log:
            api = subprocess.Popen(
                [sys.executable, "-m", "services.cli.main", "worker", "ingest"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_ready(f"http://127.0.0.1:{port}")
                http = asyncio.run(_http(f"http://127.0.0.1:{port}", posts, args.batch, args.clients))
            finally:
                api.terminate()
                api.wait(30)
        source = Path(tmp) / "posts.jsonl"
        source.write_bytes(b"".join(json.dumps(p) + b"\n" for p in posts))
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "services.cli.main", "replay", str(source), "--quiet"],
            env=env,
            check=True,
            capture_output=True,
        )
        replay = len(posts) / (time.perf_counter() - t0)
    print(
        f"posts: {len(posts):,}; HTTP batches of {args.batch} from {args.clients} concurrent clients; "
        f"Kafka {'SASL_SSL (SCRAM-SHA-512)' if args.secure else 'plaintext'}\n"
    )
    print("| path | posts/s |\n|---|---:|")
    print(f"| raw aiokafka produce, acks=all (ceiling) | {raw:,.0f} |")
    print(f"| HTTP POST /v1/posts (one API process) | {http:,.0f} |")
    print(f"| yuqing replay (incl. process start) | {replay:,.0f} |")


if __name__ == "__main__":
    main()
