"""The desk's HTTP app: the operator API, the ack links and the console, over the store the sink fills."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError

from schemas.events import SpreadSnapshot, TierForecast
from schemas.labels import window_label
from schemas.topics import Topics
from services.common.auth import TokenCheck
from services.common.config import YuqingConfig, load_config
from services.common.follow import follow_topics
from services.common.guard import install_guards
from services.common.producer import Producer
from services.desk import ack, console, operator, workflow_views
from services.desk.exceptions import StoreUnavailable
from services.desk.metrics import SpreadCollector
from services.desk.readmodel import ReadModel
from services.desk.settings import DeskSettings
from services.desk.sink import Sink, SinkMetrics
from services.desk.state import Desk, KafkaPublisher, Publisher
from services.desk.store import Retention, Store, open_store
from services.escalation.lifecycle import Lifecycle

__all__ = ["create_app"]

log = logging.getLogger(__name__)


@dataclass
class _Process:
    """What the health routes and the lifespan need besides the desk itself."""

    settings: DeskSettings
    registry: CollectorRegistry
    kafka: Producer | None  # None when the publisher was given (tests): nothing to connect
    caught_up: asyncio.Event  # the sink stored every topic to where it ended at start-up (or another writes)
    store: Store
    sink: Sink | None
    stored: asyncio.Event  # set by the sink after a batch: the read model refreshes at once
    purged: Counter


def create_app(
    settings: DeskSettings,
    registry: CollectorRegistry | None = None,
    *,
    config: YuqingConfig | None = None,
    publisher: Publisher | None = None,
    store: Store | None = None,
) -> FastAPI:
    """The desk. `config` defaults to the settings' config file (read here, once); `publisher` to Kafka,
    connected in the background while the app already answers (503 until Kafka is reached); `store` to the
    one the settings name, migrated here: StoreError (naming YUQING_DATABASE_URL) when it cannot be used."""
    config = config or load_config(settings.config_file)
    store = store or open_store(settings)
    model = ReadModel(store)
    model.load()
    registry = registry or CollectorRegistry()
    topics = Topics.with_prefix(settings.topic_prefix)
    kafka = None
    if publisher is None:
        kafka = Producer(settings, settings.produce_timeout_seconds)
        publisher = KafkaPublisher(kafka, topics)
    desk = Desk(
        model=model,
        config=config,
        lifecycle=Lifecycle(config.escalation),
        publisher=publisher,
        operators=TokenCheck(settings.operator_tokens, "operator"),
        link_secret=settings.link_secret.get_secret_value().encode() if settings.link_secret else None,
        max_body_bytes=settings.max_operator_body_bytes,
    )
    app = FastAPI(title="yuqing desk", version="1", lifespan=_lifespan)
    app.state.desk = desk
    app.state.console = console.new_console(
        desk,
        [t.get_secret_value() for t in settings.operator_tokens],
        settings.console_secret.get_secret_value().encode() if settings.console_secret else None,
        workflow_views.LIVE_VIEWS,
    )
    stored = asyncio.Event()
    sink = Sink(settings, store, SinkMetrics(registry), stored.set) if settings.read_model else None
    purged = Counter(
        "yuqing_desk_purged_rows_total",
        "Rows the nightly purge deleted, per table (retention: YUQING_*_RETENTION_DAYS).",
        ["table"],
        registry=registry,
    )
    windows = {
        g.name: {window_label(r.window_minutes) for r in config.tiers_for(g.name).rules}
        for g in config.rules.groups
    }
    registry.register(SpreadCollector(desk.model, windows))
    app.state.process = _Process(settings, registry, kafka, asyncio.Event(), store, sink, stored, purged)
    install_guards(app, settings.max_operator_body_bytes)
    for router in (_health, operator.router, ack.router, console.router, workflow_views.router):
        app.include_router(router)
    app.mount("/console/static", console.static_files(), name="console-static")
    app.add_exception_handler(KafkaError, _kafka_unavailable)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(DBAPIError, _store_unavailable)
    _warn_if_open(settings)
    return app


async def _kafka_unavailable(request: Request, exc: Exception) -> Response:
    """An action or override Kafka did not take: 503 with Retry-After, never a 500. Nothing was published,
    so sending it again is safe."""
    log.warning("Kafka unavailable, %s %s not published: %s", request.method, request.url.path, exc)
    headers = {"Retry-After": "5"}
    if request.url.path.startswith("/console"):
        text = (
            "Kafka 暂不可用，操作未提交，请稍后重试。(Kafka is unavailable: nothing was sent; retry shortly.)"
        )
        return PlainTextResponse(text, 503, headers=headers)
    detail = f"Kafka is unavailable, nothing was published; retry shortly: {exc}"
    return JSONResponse({"detail": detail}, 503, headers=headers)


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    """A read the store did not answer (a restart, a failover): 503 with Retry-After, never a 500."""
    log.warning("store unavailable, %s %s not answered: %s", request.method, request.url.path, exc)
    text = "the store (YUQING_DATABASE_URL) is unavailable; retry shortly"
    return JSONResponse({"detail": text}, 503, headers={"Retry-After": "5"})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    process: _Process = app.state.process
    desk: Desk = app.state.desk
    settings = process.settings
    tasks: list[asyncio.Task[None]] = []
    if process.kafka is not None:
        connecting = asyncio.create_task(process.kafka.connect())
        tasks.append(connecting)
        # Kafka up: start serving connected. Kafka down: serve anyway after a while (503s until it is back).
        await asyncio.wait({connecting}, timeout=settings.produce_timeout_seconds)
    # Events of this lifespan's loop (a test client starts the app more than once, each time on a new loop).
    process.stored = asyncio.Event()
    if process.sink is not None:
        process.sink.stored = process.stored.set
        tasks.append(asyncio.create_task(process.sink.run(process.caught_up)))
        # Live spread and forecasts: each replica follows them itself (state, not record: nothing is stored).
        topics = Topics.with_prefix(settings.topic_prefix)
        live: dict[str, type[BaseModel]] = {
            topics.spread_snapshots: SpreadSnapshot,
            topics.tier_forecasts: TierForecast,
        }
        tasks.append(asyncio.create_task(follow_topics(settings, live, desk.model.apply_live)))
    else:
        process.caught_up.set()
    tasks.append(asyncio.create_task(_refresh(desk.model, process.stored)))
    tasks.append(asyncio.create_task(_follow_logouts(app.state.console.sessions, process.store)))
    tasks.append(asyncio.create_task(_purge_nightly(process, ZoneInfo(desk.config.notifier.briefing_tz))))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if process.kafka is not None:
            await process.kafka.stop()
        await asyncio.to_thread(process.store.close)


async def _follow_logouts(sessions: console.Sessions, store: Store, every: float = 1.0) -> None:
    """End here, within `every`, the console sessions a logout ended on any replica."""
    while True:
        try:
            ended = await asyncio.to_thread(store.sessions_ended_after, sessions.ended_seq, datetime.now(UTC))
        except StoreUnavailable as exc:
            log.warning("store unavailable, logouts on other replicas are not seen yet: %s", exc)
        except Exception:  # a read that fails must not end the following for good
            log.exception("reading the ended console sessions failed")
        else:
            sessions.absorb_ended(ended)
        await asyncio.sleep(every)


async def _refresh(model: ReadModel, stored: asyncio.Event, every: float = 1.0) -> None:
    """Keep the read model's tiers and incidents up with the store: at once after this replica's sink stored
    a batch, and every second for what another replica's sink stored."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stored.wait(), every)
        stored.clear()
        try:
            fetched = await asyncio.to_thread(model.fetch)
        except StoreUnavailable as exc:
            log.warning("store unavailable, the console shows what it had: %s", exc)
            continue
        except Exception:  # a read that fails must not end the refresh for good
            log.exception("refreshing the read model failed")
            continue
        if fetched is not None:
            model.absorb(fetched)


def next_purge(now: datetime, hour: int, tz: ZoneInfo) -> datetime:
    """The next `hour`:00 in `tz` after `now`."""
    local = now.astimezone(tz)
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if at <= local:
        at = (at + timedelta(days=1)).replace(hour=hour)
    return at.astimezone(UTC)


async def _purge_nightly(process: _Process, tz: ZoneInfo) -> None:
    """Each night, on the replica that writes, delete what outlived its table's retention."""
    settings = process.settings
    retention = Retention(
        ledger_days=settings.ledger_retention_days,
        tier_change_days=settings.tier_change_retention_days,
        incident_days=settings.incident_retention_days,
    )
    while True:
        now = datetime.now(UTC)
        await asyncio.sleep((next_purge(now, settings.purge_hour, tz) - now).total_seconds())
        if process.sink is not None and not process.sink.writing:
            continue  # another replica writes, and purges
        try:
            purged = await asyncio.to_thread(process.store.purge, datetime.now(UTC), retention)
        except Exception:
            log.exception("the nightly purge failed; it runs again tomorrow")
            continue
        for table, count in purged.items():
            process.purged.labels(table).inc(count)
        log.info("nightly purge: %s", purged)


def _process_of(request: Request) -> _Process:
    process: _Process = request.app.state.process
    return process


_ProcessDep = Annotated[_Process, Depends(_process_of)]
_health = APIRouter()


@_health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@_health.get("/readyz")
async def readyz(process: _ProcessDep) -> JSONResponse:
    """Ready once Kafka answers and the store has caught up with the topics (until then, the desk would show
    an incomplete board and refuse actions on incidents it has not stored yet)."""
    if process.kafka is not None and (reason := await process.kafka.unavailable()) is not None:
        return JSONResponse({"status": "unavailable", "kafka": reason}, status_code=503)
    if not process.caught_up.is_set():
        return JSONResponse({"status": "unavailable", "store": "catching up"}, status_code=503)
    return JSONResponse({"status": "ready"})


@_health.get("/metrics")
async def metrics(process: _ProcessDep) -> Response:
    return Response(generate_latest(process.registry), media_type=CONTENT_TYPE_LATEST)


def _warn_if_open(settings: DeskSettings) -> None:
    if not settings.operator_tokens:
        log.warning(
            "AUTH IS OFF for the operator routes and the console: YUQING_OPERATOR_TOKENS is empty, so anyone "
            "who can reach %s:%d may read and act. Set tokens unless this is a local development run.",
            settings.desk_host,
            settings.desk_port,
        )
