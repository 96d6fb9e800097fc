"""The desk's store on a throwaway PostgreSQL: sink throughput beside a plain COPY of the same rows, ledger
query latency with filters and paging, and desk start-up, at a given ledger size.

    .venv/bin/python -m bench.desk --hits 20000 --rows 1000000

Sink: `Store.write` in batches of 2,000 KeywordHits (what the sink does per Kafka batch: dedup by event id,
upsert the entries, search words for new ones, the hits, offsets), 3 snapshots per post, into an empty ledger
and again into the filled one. Baseline: psycopg's COPY of the same entries' columns into a bare table,
nothing else. Queries: the ledger filled by COPY to `--rows` entries, then 200 pages of 50 with random filters
(group, platform, sentiment, since, keyword, current tier, sort) and offsets up to 1,000. Start-up:
`create_app` (connect, migrate, load the cache) on that database. `--excerpt-chars 280`: excerpts as long as
a post's can be (jieba's cutting grows with them).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from schemas.events import Engagement, KeywordHit, Platform, TermMatch
from services.desk import search
from services.desk.app import create_app
from services.desk.settings import DeskSettings
from services.desk.store import LedgerQuery, open_store
from tests.pg import PASSWORD, USER, PgCluster, find_bindir

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GROUPS = [f"brand{i}" for i in range(20)]
PLATFORMS = [p.value for p in Platform]
_TEXTS = [
    "{g}空调用了三个月就漏水，售后推诿，强烈要求退款！",
    "避雷{g}，客服态度恶劣，投诉无门，电池鼓包",
    "曝光：{g}虚假宣传，消费者集体维权，质量问题严重",
    "{g}冰箱不制冷，差评，维修等了两周",
]


def _excerpt(rng: random.Random, group: str, post: int, chars: int) -> str:
    """One of the texts, then others after it up to `chars` characters (a post's excerpt is its first 280)."""
    text = rng.choice(_TEXTS).format(g=group) + f" #{post}"
    if chars:
        while len(text) < chars:
            text += rng.choice(_TEXTS).format(g=group)
        text = text[:chars]
    return text


def hits(n: int, per_post: int = 3, excerpt_chars: int = 0, first_post: int = 0) -> list[KeywordHit]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        post, snap = first_post + i // per_post, i % per_post
        group = GROUPS[post % len(GROUPS)]
        spread = rng.randint(1, 5000) * (snap + 1)
        out.append(
            KeywordHit(
                event_time=T0 + timedelta(seconds=post, minutes=snap),
                group=group,
                platform=Platform(PLATFORMS[post % len(PLATFORMS)]),
                post_id=f"p{post}",
                thread_key=f"weibo:p{post}",
                snapshot_id=f"p{post}#{snap}",
                first_seen=snap == 0,
                matches=(TermMatch(term=group, kind="brand", start=0, end=len(group)),),
                delta=Engagement(likes=spread),
                cumulative=Engagement(reposts=spread // 4, comments=spread // 4, likes=spread // 2),
                excerpt=_excerpt(rng, group, post, excerpt_chars),
                sentiment=-0.7,
                demand="refund",
                rule_version="bench-1",
                detected_at=T0,
            )
        )
    return out


def bench_sink(url: str, events: list[KeywordHit], batch: int = 2000) -> float:
    store = open_store(DeskSettings(database_url=url))
    search.terms("预热")  # jieba loads its dictionary once per process (~0.7 s), before the first batch
    lease = store.acquire_writer()
    assert lease is not None
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        store.write(events[i : i + batch], {("bench.keyword-hits", 0): i + batch}, lease)
    took = time.perf_counter() - started
    lease.close()
    store.close()
    return len(events) / took


def _conn(cluster: PgCluster, db: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=cluster.port, user=USER, password=PASSWORD, dbname=db)


def bench_copy(cluster: PgCluster, db: str, events: list[KeywordHit]) -> float:
    """The floor: the same rows' columns, COPY'd into a table without indexes or logic."""
    with _conn(cluster, db) as conn:
        conn.execute(
            "CREATE TABLE plain (event_id text, platform text, post_id text, grp text, excerpt text, "
            "spread bigint, sentiment float8, seen timestamptz)"
        )
        started = time.perf_counter()
        with conn.cursor().copy("COPY plain FROM STDIN") as copy:
            for e in events:
                copy.write_row(
                    (
                        e.event_id,
                        e.platform.value,
                        e.post_id,
                        e.group,
                        e.excerpt,
                        e.cumulative.total,
                        e.sentiment,
                        e.event_time,
                    )
                )
        conn.commit()
        return len(events) / (time.perf_counter() - started)


def fill_ledger(cluster: PgCluster, db: str, rows: int) -> float:
    """`rows` ledger entries with their search words, by COPY (a year of entries, spread over 20 groups)."""
    rng = random.Random(11)
    started = time.perf_counter()
    with _conn(cluster, db) as conn:
        with conn.cursor().copy(
            "COPY ledger_entries (id, entry_key, platform, post_id, rule_group, url, excerpt, excerpt_norm, "
            "reposts, comments, likes, spread, sentiment, demand, matched_terms, rule_version, first_seen, "
            "last_seen, hits) FROM STDIN"
        ) as copy:
            for i in range(1, rows + 1):
                group = GROUPS[i % len(GROUPS)]
                text = rng.choice(_TEXTS).format(g=group)
                seen = T0 - timedelta(seconds=rng.randint(0, 365 * 86400))
                spread = rng.randint(0, 100_000)
                copy.write_row(
                    (
                        i,
                        f"x:{i}|{group}",
                        PLATFORMS[i % len(PLATFORMS)],
                        f"b{i}",
                        group,
                        None,
                        text,
                        search.normalise(text),
                        spread // 4,
                        spread // 4,
                        spread // 2,
                        spread,
                        rng.choice((-0.8, 0.0, 0.5)),
                        "refund",
                        f'["{group}"]',
                        "bench-1",
                        seen,
                        seen,
                        1,
                    )
                )
        # The search words: the texts repeat, so their words are cut once each.
        words = {
            (t, g): sorted(search.terms(search.normalise(t.format(g=g)))) for t in _TEXTS for g in GROUPS
        }
        with conn.cursor().copy("COPY ledger_terms (term, entry_id) FROM STDIN") as copy:
            rng = random.Random(11)
            for i in range(1, rows + 1):
                group = GROUPS[i % len(GROUPS)]
                template = rng.choice(_TEXTS)
                rng.randint(0, 365 * 86400)
                rng.randint(0, 100_000)
                rng.choice((-0.8, 0.0, 0.5))
                for term in words[(template, group)]:
                    copy.write_row((term, i))
        conn.execute("SELECT setval(pg_get_serial_sequence('ledger_entries', 'id'), %s)", (rows + 1,))
        conn.commit()
    with _conn(cluster, db) as conn:
        # What autovacuum does to a table loaded long ago: statistics, and the visibility map that lets the
        # keyword lookups read ledger_terms' index alone.
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def bench_queries(url: str, n: int = 200) -> list[tuple[float, bool]]:
    store = open_store(DeskSettings(database_url=url))
    rng = random.Random(3)
    tiers = {g: rng.choice((0, 0, 3, 2)) for g in GROUPS}
    took: list[tuple[float, bool]] = []
    for _ in range(n):
        q = LedgerQuery(
            group=rng.choice([None, *GROUPS[:5]]),
            platform=rng.choice([None, None, "weibo", "douyin"]),
            sentiment=rng.choice([None, "negative"]),
            since=rng.choice([None, T0 - timedelta(days=rng.randint(1, 90))]),
            text=rng.choice([None, None, "漏水", "电池鼓包", "客服 投诉"]),
            tier=rng.choice([None, None, 3]),
            sort=rng.choice(["time", "spread"]),
        )
        started = time.perf_counter()
        store.ledger_page(q, tiers, 50, rng.choice([0, 0, 50, 500, 1000]))
        took.append((time.perf_counter() - started, q.text is not None))
    store.close()
    return took


def _latency(label: str, took: list[float]) -> str:
    took = sorted(took)
    p50, p95 = statistics.median(took), took[max(0, int(len(took) * 0.95) - 1)]
    return (
        f"{label} ({len(took)}): p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {took[-1] * 1000:.0f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--excerpt-chars", type=int, default=0, help="excerpts this long (0: one short text, ~30 characters)"
    )
    args = parser.parse_args(argv)
    bindir = find_bindir()
    assert bindir is not None, "apt-get install postgresql"
    cluster = PgCluster(bindir)
    cluster.init()
    cluster.start()
    try:
        events = hits(args.hits, excerpt_chars=args.excerpt_chars)
        sink_db = cluster.new_database()
        rate = bench_sink(sink_db, events)
        copy_rate = bench_copy(cluster, sink_db.rsplit("/", 1)[1], events)
        print(
            f"sink into an empty ledger: {rate:,.0f} hits/s ({args.hits:,} hits, 3 per post, excerpts of "
            f"{statistics.mean(len(e.excerpt) for e in events):.0f} characters); "
            f"plain COPY: {copy_rate:,.0f} rows/s"
        )
        query_db = cluster.new_database()
        open_store(DeskSettings(database_url=query_db)).close()
        filled = fill_ledger(cluster, query_db.rsplit("/", 1)[1], args.rows)
        print(f"ledger filled with {args.rows:,} entries by COPY in {filled:.0f} s")
        took = bench_queries(query_db)
        print(_latency("ledger page of 50, filtered", [t for t, _ in took]))
        print(_latency("  of which with a keyword", [t for t, k in took if k]))
        print(_latency("  of which without", [t for t, k in took if not k]))
        started = time.perf_counter()
        app = create_app(DeskSettings(database_url=query_db, read_model=False))
        print(
            f"desk start-up (connect, migrate, load cache) with {args.rows:,} entries: "
            f"{time.perf_counter() - started:.2f} s"
        )
        app.state.process.store.close()
        more = hits(args.hits, excerpt_chars=args.excerpt_chars, first_post=args.rows)
        print(f"sink into the ledger of {args.rows:,} entries: {bench_sink(query_db, more):,.0f} hits/s")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
