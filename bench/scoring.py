"""Scoring benchmark: posts/s with 10, 1,000 and 10,000 rule terms; state memory per tracked post.

    .venv/bin/python bench/scoring.py [--posts 20000] [--kafka-posts 20000] [--terms 10 1000 10000] [--runs 1]
        [--parts core memory worker] [--baseline DIR] [--secure]

1. core: HitStage + TierStage in-process, no Kafka (what the matcher and state machine cost);
2. worker: one `yuqing worker scoring` process on the embedded Kafka, posts preloaded on posts.raw (keyed by
   thread, as ingest keys them), timed from its first commit to the moment every post and every keyword hit
   is processed and committed, next to a raw aiokafka consume->produce loop over the same posts run at the
   same time (the ceiling any Kafka consumer on this machine could reach), and the worker's CPU time over the
   same span (Linux). With `--baseline DIR` (a checkout of other code, e.g. `git archive main | tar -x -C
   DIR`) each run of this checkout's worker is paired with one of DIR's on the same broker, in alternating
   order, so that both see the same machine load, and the ratio of each pair is reported;
3. memory: tracemalloc over N distinct posts through both stages (the snapshot row on the post's thread
   partition, its count marker on its group's partition), decoded one at a time as the worker does: the
   bytes the scoring state holds (what dropping it frees) per tracked post.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import NamedTuple

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._util import Kafka, broker, create_topic, free_port, rules, synthetic_posts
from schemas.events import Post
from services.common import json
from services.common.config import YuqingConfig
from services.common.kafka import ensure_topics
from services.common.stream import decode
from services.scoring.core import HitStage, ScoringState, TierStage
from services.scoring.matcher import RuleMatcher
from services.scoring.windows import LateEvent


def core_rate(terms: int, n: int) -> tuple[float, float, int]:
    config = YuqingConfig.model_validate({"rules": rules(terms)})
    t0 = time.perf_counter()
    matcher = RuleMatcher(config.rules)
    build = time.perf_counter() - t0
    hits, tiers = HitStage(config, matcher), TierStage(config)
    state = ScoringState.in_memory()
    posts = [Post.model_validate(p) for p in synthetic_posts(n, terms)]
    count = 0
    t0 = time.perf_counter()
    for post in posts:
        for hit in hits.process(post, state):
            count += 1
            try:
                tiers.process(hit, state)
            except LateEvent:
                pass
    return n / (time.perf_counter() - t0), build, count


def memory_per_post(n: int) -> tuple[float, float, int]:
    """(bytes the scoring state holds per tracked post, bytes the process grew by per tracked post, posts
    tracked). The growth also counts what the libraries keep meanwhile (pydantic's string cache)."""
    config = YuqingConfig.model_validate({"rules": rules(10)})
    hits, tiers = HitStage(config, RuleMatcher(config.rules)), TierStage(config)
    state: ScoringState | None = ScoringState.in_memory()
    assert state is not None
    raw = [json.dumps(p) for p in synthetic_posts(n, 10)]
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    _score(raw, hits, tiers, state)
    gc.collect()
    filled = tracemalloc.get_traced_memory()[0]
    tracked = len(state.snapshots)
    state = None
    gc.collect()
    held = filled - tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return held / tracked, (filled - start) / tracked, tracked


def _score(raw: list[bytes], hits: HitStage, tiers: TierStage, state: ScoringState) -> None:
    for data in raw:
        for hit in hits.process(decode(Post, data), state):
            try:
                tiers.process(hit, state)
            except LateEvent:
                pass


async def _preload(kafka: Kafka, topic: str, posts: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20, **kafka.client
    )
    await producer.start()
    try:
        for i in range(0, len(posts), 2000):
            await asyncio.gather(
                *[
                    await producer.send(topic, key=f"weibo:b{i + j}".encode(), value=v)
                    for j, v in enumerate(posts[i : i + 2000])
                ]
            )
    finally:
        await producer.stop()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` so far (Linux: /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _progress(
    kafka: Kafka, prefix: str, n: int, pid: int, within: float
) -> tuple[float, float, int, int]:
    """Follow the worker's committed offsets: (seconds, the worker's CPU seconds, posts, hits) from its first
    commit on posts.raw to the moment every post and every keyword hit it produced is processed and committed.

    Timing from the first commit leaves out start-up (jieba, the matcher, joining the group) and the first
    batch; what is left is the steady rate of the whole worker, windows stage included. Its CPU time over
    the same span depends far less on what else the machine runs than the rate does."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, **kafka.client)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, **kafka.client)
    await admin.start()
    await consumer.start()
    posts, hits = TopicPartition(prefix + "posts.raw", 0), TopicPartition(prefix + "keyword-hits", 0)
    group = prefix + "scoring"
    first: tuple[float, float, int] | None = None
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            try:
                offsets = await admin.list_consumer_group_offsets(group, partitions=[posts, hits])
            except KafkaError:  # the group's coordinator is not there yet (offsets topic being created)
                await asyncio.sleep(0.2)
                continue
            done = {tp: (meta.offset if meta.offset >= 0 else 0) for tp, meta in offsets.items()}
            now = time.perf_counter()
            if first is None and done.get(posts, 0) > 0:
                first = (now, _cpu_seconds(pid), done[posts])
            if first and done.get(posts) == n:
                end = (await consumer.end_offsets([hits]))[hits]
                if done.get(hits) == end:
                    return now - first[0], _cpu_seconds(pid) - first[1], n - first[2], end
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        await admin.close()
    raise RuntimeError(f"the worker did not finish {n} posts within {within:.0f} s")


async def _raw_loop(kafka: Kafka, source: str, sink: str, n: int) -> float:
    """The ceiling: decode nothing, consume and produce each message with aiokafka."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=kafka.bootstrap,
        auto_offset_reset="earliest",
        group_id="bench-raw",
        max_partition_fetch_bytes=4 << 20,
        **kafka.client,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, linger_ms=5, max_batch_size=1 << 20, **kafka.client
    )
    await consumer.start()
    await producer.start()
    done, t0 = 0, 0.0
    try:
        while done < n:
            for records in (await consumer.getmany(timeout_ms=500, max_records=2000)).values():
                if not t0:
                    t0 = time.perf_counter()
                for r in records:
                    await producer.send(sink, key=r.key, value=r.value)
                done += len(records)
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return n / (time.perf_counter() - t0)


async def _prepare(kafka: Kafka, prefix: str, posts: list[dict[str, object]]) -> None:
    await ensure_topics(kafka.settings(topic_prefix=prefix, partitions=1))
    await create_topic(kafka, prefix + "bench.sink")
    await _preload(kafka, prefix + "posts.raw", [json.dumps(p) for p in posts])


class _Run(NamedTuple):
    rate: float  # posts/s of the scoring worker
    per_cpu: float  # posts per CPU-second of the scoring worker
    raw: float  # msg/s of the raw aiokafka loop in the same run
    hits: int


def worker_rate(kafka: Kafka, terms: int, n: int, code: Path | None = None) -> _Run:
    """One scoring worker over `n` posts, next to the raw aiokafka loop; the worker runs the code in `code`
    (default: this checkout)."""
    prefix = f"bench{terms}-{time.time_ns()}."
    posts = list(synthetic_posts(n, terms))
    asyncio.run(_prepare(kafka, prefix, posts))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "rules.yaml"
        config.write_text(yaml.safe_dump({"rules": rules(terms)}, allow_unicode=True))
        env = {
            **os.environ,
            **kafka.env,
            "YUQING_TOPIC_PREFIX": prefix,
            "YUQING_PARTITIONS": "1",
            "YUQING_CONFIG_FILE": str(config),
            "YUQING_DATA_DIR": tmp,
            "YUQING_WEB_PORT": str(free_port()),
            "YUQING_LOG_LEVEL": "warn",
        }
        with open(Path(tmp) / "worker.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli.main", "worker", "scoring"],
                cwd=code,  # `-m` finds `services` in the working directory first
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                raw, (seconds, cpu, counted, hits) = asyncio.run(_measure(kafka, prefix, n, proc.pid))
            finally:
                proc.terminate()
                proc.wait(30)
    return _Run(counted / seconds, counted / cpu, raw, hits)


async def _measure(
    kafka: Kafka, prefix: str, n: int, pid: int
) -> tuple[float, tuple[float, float, int, int]]:
    return await asyncio.gather(
        _raw_loop(kafka, prefix + "posts.raw", prefix + "bench.sink", n),
        _progress(kafka, prefix, n, pid, within=600),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--kafka-posts", type=int, default=20_000)
    parser.add_argument("--memory-posts", type=int, default=100_000)
    parser.add_argument("--terms", type=int, nargs="+", default=[10, 1_000, 10_000])
    parser.add_argument(
        "--runs", type=int, default=1, help="worker runs per rule size: the median and the range are reported"
    )
    parser.add_argument(
        "--parts", nargs="+", choices=["core", "memory", "worker"], default=["core", "memory", "worker"]
    )
    parser.add_argument("--baseline", type=Path, help="a checkout whose worker runs paired with this one's")
    parser.add_argument("--secure", action="store_true", help="an embedded SASL_SSL broker (TLS and SCRAM)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if "core" in args.parts:
        print("\n| rule terms | matcher build (s) | core posts/s | hits |")
        print("|---:|---:|---:|---:|")
        for terms in args.terms:
            rate, build, hits = core_rate(terms, args.posts)
            print(f"| {terms:,} | {build:.2f} | {rate:,.0f} | {hits:,} |", flush=True)
    if "memory" in args.parts:
        held, grown, tracked = memory_per_post(args.memory_posts)
        print(
            f"\nscoring state per tracked post (both stages): {held:,.0f} B held, {grown:,.0f} B process "
            f"growth; {held * 1e6 / 2**20:,.0f} MiB per 1,000,000 ({tracked:,} of {args.memory_posts:,} "
            "posts tracked)",
            flush=True,
        )
    if "worker" in args.parts:
        _workers(args.terms, args.kafka_posts, args.runs, args.baseline, args.secure)


def _workers(sizes: list[int], n: int, runs: int, baseline: Path | None, secure: bool) -> None:
    codes: list[tuple[str, Path | None]] = [("this checkout", None)]
    if baseline is not None:
        codes.append((f"baseline {baseline}", baseline))
    print(
        "\n| rule terms | code | scoring worker posts/s (median) | runs | posts per CPU-second (median) "
        "| keyword hits | raw aiokafka consume->produce msg/s (median) |"
    )
    print("|---:|---|---:|---|---:|---:|---:|")
    with broker(secure=secure) as kafka:
        for terms in sizes:
            results: dict[str, list[_Run]] = {label: [] for label, _ in codes}
            for run in range(runs):
                for label, code in codes if run % 2 == 0 else codes[::-1]:
                    results[label].append(worker_rate(kafka, terms, n, code))
            for label, _ in codes:
                rows = results[label]
                every = ", ".join(f"{r.rate:,.0f}" for r in rows)
                rate = statistics.median(r.rate for r in rows)
                per_cpu = statistics.median(r.per_cpu for r in rows)
                raw = statistics.median(r.raw for r in rows)
                print(
                    f"| {terms:,} | {label} | {rate:,.0f} | {every} | {per_cpu:,.0f} | {rows[0].hits:,} "
                    f"| {raw:,.0f} |",
                    flush=True,
                )
            if baseline is not None:
                mine, theirs = results[codes[0][0]], results[codes[1][0]]
                ratios = [a.rate / b.rate for a, b in zip(mine, theirs, strict=True)]
                cpu = [a.per_cpu / b.per_cpu for a, b in zip(mine, theirs, strict=True)]
                print(
                    f"\n{terms:,} terms, this checkout / baseline per pair: posts/s "
                    f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f}); "
                    f"posts per CPU-second {', '.join(f'{r:.2f}' for r in cpu)} "
                    f"(median {statistics.median(cpu):.2f})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
