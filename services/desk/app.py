"""The desk's HTTP app: the operator API, the ack links and the console, over a read model of the topics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel

from schemas.events import IncidentEvent, KeywordHit, SpreadSnapshot, TierChange, TierForecast
from schemas.labels import window_label
from schemas.topics import Topics
from services.common.auth import TokenCheck
from services.common.config import YuqingConfig, load_config
from services.common.follow import follow_topics
from services.common.guard import install_guards
from services.common.producer import Producer
from services.desk import ack, console, operator, workflow_views
from services.desk.metrics import SpreadCollector
from services.desk.readmodel import ReadModel
from services.desk.settings import DeskSettings
from services.desk.state import Desk, KafkaPublisher, Publisher
from services.escalation.lifecycle import Lifecycle

__all__ = ["create_app"]

log = logging.getLogger(__name__)


@dataclass
class _Process:
    """What the health routes and the lifespan need besides the desk itself."""

    settings: DeskSettings
    registry: CollectorRegistry
    kafka: Producer | None  # None when the publisher was given (tests): nothing to connect
    caught_up: asyncio.Event  # the read model has read every topic to where it ended at start-up


def create_app(
    settings: DeskSettings,
    registry: CollectorRegistry | None = None,
    *,
    config: YuqingConfig | None = None,
    publisher: Publisher | None = None,
) -> FastAPI:
    """The desk. `config` defaults to the settings' config file (read here, once); `publisher` to Kafka,
    connected in the background while the app already answers (503 until Kafka is reached)."""
    config = config or load_config(settings.config_file)
    topics = Topics.with_prefix(settings.topic_prefix)
    kafka = None
    if publisher is None:
        kafka = Producer(settings, settings.produce_timeout_seconds)
        publisher = KafkaPublisher(kafka, topics)
    desk = Desk(
        model=ReadModel(),
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
    registry = registry or CollectorRegistry()
    windows = {
        g.name: {window_label(r.window_minutes) for r in config.tiers_for(g.name).rules}
        for g in config.rules.groups
    }
    registry.register(SpreadCollector(desk.model, windows))
    app.state.process = _Process(settings, registry, kafka, asyncio.Event())
    install_guards(app, settings.max_operator_body_bytes)
    for router in (_health, operator.router, ack.router, console.router, workflow_views.router):
        app.include_router(router)
    app.mount("/console/static", console.static_files(), name="console-static")
    app.add_exception_handler(KafkaError, _kafka_unavailable)
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
    if settings.read_model:
        topics = Topics.with_prefix(settings.topic_prefix)
        kinds: dict[str, type[BaseModel]] = {
            topics.keyword_hits: KeywordHit,
            topics.tier_changes: TierChange,
            topics.incidents: IncidentEvent,
            topics.spread_snapshots: SpreadSnapshot,
            topics.tier_forecasts: TierForecast,
        }
        tasks.append(asyncio.create_task(follow_topics(settings, kinds, desk.model.apply, process.caught_up)))
    else:
        process.caught_up.set()
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if process.kafka is not None:
            await process.kafka.stop()


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
    """Ready once Kafka answers and the read model has caught up with the topics (until then, the desk would
    show an incomplete board and refuse actions on incidents it has not read yet)."""
    if process.kafka is not None and (reason := await process.kafka.unavailable()) is not None:
        return JSONResponse({"status": "unavailable", "kafka": reason}, status_code=503)
    if not process.caught_up.is_set():
        return JSONResponse({"status": "unavailable", "read_model": "catching up"}, status_code=503)
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
