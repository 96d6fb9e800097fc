"""Scoring worker: posts.raw -> keyword-hits -> tier-changes, on the partitioned batch loop.

Posts are keyed by thread (platform:root_post_id) by ingest, so a post and its reposts reach the same
partition and the match stage takes them from posts.raw directly. A post keyed otherwise (another producer)
is forwarded once to scoring.threads under its thread key and matched there.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily

from schemas.events import KeywordHit, Platform, Post, TierOverride
from schemas.topics import Topics
from services.common import json
from services.common.config import load_config
from services.common.exceptions import DeadLetter
from services.common.metrics import CommonMetrics, health, lag_family
from services.common.partitioned import Batch, PartitionedWorker
from services.common.shutdown import exit_after
from services.common.stream import ORIGIN_HEADER, decode, expect_key, home_partition
from services.scoring.core import HitStage, ScoringState, TierStage
from services.scoring.exceptions import FutureEvent
from services.scoring.forecast import ForecastStage
from services.scoring.live import LiveStage
from services.scoring.matcher import RuleMatcher
from services.scoring.rows import TABLES
from services.scoring.settings import ScoringSettings
from services.scoring.tiers import TierState
from services.scoring.windows import LateEvent

__all__ = ["Scoring", "build", "run", "tier_levels"]

log = logging.getLogger(__name__)

_EXPIRE_EVERY_SECONDS = 600.0


def tier_levels(
    groups: Iterable[str], tiers: Mapping[str, TierState], owned: set[int] | None, home: Callable[[str], int]
) -> dict[str, int]:
    """The tier of each rule group this worker owns, read from the tiers table (0 when it has no row).

    Read at scrape time rather than kept in a gauge set on change: a gauge started at 0 after a restart
    (showing "none" for a level-1 group), and with several replicas each one kept reporting groups it had
    handed over. A worker without a settled share exports nothing.
    """
    if owned is None:
        return {}
    out: dict[str, int] = {}
    for group in groups:
        if home(group) in owned:
            row = tiers.get(group)
            out[group] = 0 if row is None else int(row.tier)
    return out


class _TierCollector:
    """`tiers` returns the tiers table as it is at scrape time (a worker's owned partitions merged)."""

    def __init__(self, groups: list[str], tiers: Callable[[], Mapping[str, TierState]], shell: Any) -> None:
        self._groups, self._tiers, self._shell = groups, tiers, shell

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "yuqing_tier_level",
            "Current crisis tier per rule group this worker owns (0 none, 1 major … 3 general).",
            labels=["group"],
        )
        levels = tier_levels(
            self._groups, self._tiers(), self._shell.owned_partitions(), self._shell.home_partition
        )
        for group, level in levels.items():
            family.add_metric([group], level)
        yield family


class Scoring:
    """The scoring handlers: each turns one record into state updates and output on its batch."""

    def __init__(self, settings: ScoringSettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = CommonMetrics(self.registry, "scoring")
        self.topics = t = Topics.with_prefix(settings.topic_prefix)
        config = load_config(settings.config_file)
        matcher = RuleMatcher(config.rules)
        track = timedelta(hours=settings.track_hours)
        skew = timedelta(seconds=settings.max_clock_skew_seconds)
        self.hits_stage = HitStage(config, matcher, track=track, max_skew=skew)
        self.tier_stage = TierStage(
            config,
            rule_version=matcher.version,
            track=track,
            event_clock=settings.window_clock == "event",
            max_skew=skew,
        )
        self.forecast_stage = ForecastStage(config.forecast)
        self._expired_at: dict[int, float] = {}
        self.worker = PartitionedWorker(
            "scoring",
            settings,
            handlers={
                t.posts_raw: self.on_raw_post,
                t.scoring_threads: self.on_thread_post,
                t.keyword_hits: self.on_hit,
                t.tier_overrides: self.on_override,
            },
            tables=TABLES,
            metrics=self.metrics,
            dead_letter_topic=t.dead_letter,
            tick=self.on_tick,
            # Tier decisions do not depend on when ticks come; snapshots need a tick at least as often.
            tick_seconds=min(settings.tick_seconds, settings.spread_snapshot_seconds),
            forwarded=[t.scoring_threads],
        )
        # partition -> (its tables, the core's view of them, its live stage)
        self._partitions: dict[int, tuple[dict[str, Any], ScoringState, LiveStage]] = {}
        self.hits_total = Counter(
            "yuqing_keyword_hits_total",
            "Keyword hits emitted, per platform.",
            ["platform"],
            registry=self.registry,
        )
        self._hits_by_platform: dict[Platform, Any] = {}
        self.tier_changes_total = Counter(
            "yuqing_tier_changes_total", "Tier changes emitted.", ["direction"], registry=self.registry
        )
        groups = [g.name for g in config.rules.groups]  # from the operator's config: a fixed, small set
        self.registry.register(_TierCollector(groups, lambda: self.worker.merged("tiers"), self))
        self.registry.register(_LagCollector(self.worker))

    # -- what the tier gauge needs ------------------------------------------------------------------

    def owned_partitions(self) -> set[int] | None:
        return self.worker.owned_partitions()

    def home_partition(self, key: str) -> int:
        return home_partition(key, self.settings.partitions)

    # -- handlers -----------------------------------------------------------------------------------

    def _partition(self, batch: Batch) -> tuple[dict[str, Any], ScoringState, LiveStage]:
        """The partition's tables as the core's ScoringState, and its live stage: built once per restored
        partition, so a restored one starts its live stage afresh (its first tick sends snapshots)."""
        cached = self._partitions.get(batch.partition)
        # By identity, holding the dict: a restored partition brings new tables, and an id() could be reused.
        if cached is None or cached[0] is not batch.tables:
            s = self.settings
            live = LiveStage(
                self.tier_stage, self.forecast_stage, s.spread_snapshot_seconds, s.spread_series_minutes
            )
            cached = self._partitions[batch.partition] = (batch.tables, ScoringState.of(batch.tables), live)
        return cached

    def _state(self, batch: Batch) -> ScoringState:
        return self._partition(batch)[1]

    def on_raw_post(self, record: Any, batch: Batch) -> None:
        post = decode(Post, record.value)
        thread = post.thread_key
        if record.key != thread.encode():
            # Keyed by post rather than thread: its reposts may sit on another partition. Forward it.
            origin = f"{record.topic}|{record.partition}|{record.offset}".encode()
            batch.send(self.topics.scoring_threads, thread.encode(), record.value, [(ORIGIN_HEADER, origin)])
            return
        self._match(post, batch)

    def on_thread_post(self, record: Any, batch: Batch) -> None:
        post = decode(Post, record.value)
        expect_key(record.key, post.thread_key, "thread")
        self._match(post, batch)

    def _match(self, post: Post, batch: Batch) -> None:
        try:
            hits = self.hits_stage.process(post, self._state(batch))
        except FutureEvent as exc:
            raise DeadLetter("future_event", str(exc)) from None
        for hit in hits:
            counter = self._hits_by_platform.get(hit.platform)
            if counter is None:  # labels() costs a lock and a tuple per call: resolve each platform once
                counter = self._hits_by_platform[hit.platform] = self.hits_total.labels(hit.platform.value)
            counter.inc()
            batch.send(self.topics.keyword_hits, hit.group.encode(), json.dumps(hit))

    def on_hit(self, record: Any, batch: Batch) -> None:
        hit = decode(KeywordHit, record.value)
        expect_key(record.key, hit.group, "rule group")
        try:
            changes = self.tier_stage.process(hit, self._state(batch), offset=record.offset)
        except LateEvent as exc:
            raise DeadLetter("late_event", str(exc)) from None
        except FutureEvent as exc:
            raise DeadLetter("future_event", str(exc)) from None
        self._emit(changes, batch)

    def on_override(self, record: Any, batch: Batch) -> None:
        cmd = decode(TierOverride, record.value)
        expect_key(record.key, cmd.group, "rule group")
        self._emit(self.tier_stage.override(cmd.group, cmd.tier, cmd.actor, self._state(batch)), batch)

    def on_tick(self, batch: Batch) -> None:
        _, state, live = self._partition(batch)
        self._emit(self.tier_stage.tick(state), batch)
        forecasts, snapshots = live.tick(state, self.tier_stage.now(state))
        for forecast in forecasts:
            batch.send(self.topics.tier_forecasts, forecast.group.encode(), json.dumps(forecast))
        for snapshot in snapshots:
            batch.send(self.topics.spread_snapshots, snapshot.group.encode(), json.dumps(snapshot))
        # Forgetting old posts walks every row: every ten minutes is plenty for a horizon of days.
        if time.monotonic() - self._expired_at.get(batch.partition, 0.0) >= _EXPIRE_EVERY_SECONDS:
            self._expired_at[batch.partition] = time.monotonic()
            posts = self.hits_stage.expire(state)
            markers = self.tier_stage.expire(state)
            buckets = self.tier_stage.drop_stale_buckets(state)
            if posts or markers or buckets:
                log.info(
                    "partition %d: forgot %d posts, %d count markers and %d stale buckets",
                    batch.partition,
                    posts,
                    markers,
                    buckets,
                )

    def _emit(self, changes: list[Any], batch: Batch) -> None:
        for change in changes:
            self.tier_changes_total.labels(change.direction).inc()
            batch.send(self.topics.tier_changes, change.group.encode(), json.dumps(change))


class _LagCollector:
    def __init__(self, worker: PartitionedWorker) -> None:
        self._worker = worker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield lag_family(self._worker.service, self._worker.lag)


def build(settings: ScoringSettings) -> Scoring:
    return Scoring(settings)


def _web(scoring: Scoring) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    worker = scoring.worker

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(scoring.registry), media_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        body, status = health(worker.service, worker.lag, worker.stall)
        return JSONResponse({**body, "window_clock": scoring.settings.window_clock}, status_code=status)

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the worker owns SIGTERM/SIGINT, not the web server
        yield


async def serve(scoring: Scoring, stop: asyncio.Event) -> None:
    """Run the loop and the /healthz and /metrics server until `stop` is set."""
    s = scoring.settings
    server = _Server(
        uvicorn.Config(_web(scoring), host=s.web_host, port=s.web_port, log_level="warning", access_log=False)
    )
    web = asyncio.create_task(server.serve())
    try:
        await scoring.worker.run(stop)
    finally:
        server.should_exit = True
        await web


def _tune_gc() -> None:
    """Garbage collection for a process that allocates a few hundred short-lived objects a post.

    With CPython's defaults a young collection runs every 700 allocations, and the tables' rows, which
    live on, were promoted and traversed again and again. What start-up built (jieba's dictionary, the
    automata, the config) is frozen out of every collection, and young collections run every 50,000
    allocations: measured, about 3 % more posts/s (docs/benchmarks.md). Reference cycles are still
    collected; they wait a little longer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def _stopping(stop: asyncio.Event) -> None:
    exit_after()  # a flush or a group leave waiting on an unreachable broker must not hold the exit
    stop.set()


def run(settings: ScoringSettings) -> None:
    level = settings.log_level.upper()
    logging.getLogger().setLevel({"WARN": "WARNING", "CRIT": "CRITICAL"}.get(level, level))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stopping, stop)
        scoring = build(settings)
        log.info(
            "scoring: windows follow %s time", "event" if settings.window_clock == "event" else "wall-clock"
        )
        _tune_gc()
        await serve(scoring, stop)

    _event_loop(settings)(main())


def _event_loop(settings: ScoringSettings) -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop, where it is installed and the Kafka listener is plaintext; asyncio's own loop otherwise.

    Over TLS, aiokafka on uvloop now and then waited 30 s for a metadata update a new consumer asked for
    (about one consumer start in fifteen, against a SASL_SSL broker; never on asyncio's loop, never in
    plaintext): a partition restore took 30 s and the worker lost its place in the group. uvloop's gain
    (about 4 %) is not worth that."""
    if settings.kafka_security_protocol.endswith("SSL"):
        return asyncio.run
    try:
        import uvloop
    except ImportError:  # not on this platform: asyncio's own loop does the same, a little slower
        return asyncio.run
    return uvloop.run
