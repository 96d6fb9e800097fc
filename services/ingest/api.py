"""The ingest HTTP API: normalised posts in, acknowledged only once Kafka (acks=all) has them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError

from schemas.events import IncidentAction, IncidentEvent, KeywordHit, Platform, Post, TierChange, TierOverride
from services.common import json
from services.common.config import IngestConfig, load_config
from services.common.exceptions import KafkaSetupError
from services.common.kafka import ensure_topics
from services.common.topics import Topics
from services.ingest.auth import TokenCheck
from services.ingest.batch import Convert, native, normalised, parse_body, to_posts
from services.ingest.console import install_console
from services.ingest.feeds import FeedPoller
from services.ingest.operator import operator_router
from services.ingest.readmodel import ReadModel
from services.ingest.settings import IngestSettings
from services.notifier.briefing import build_briefing, due_slots, previous_slot

__all__ = ["create_app"]

log = logging.getLogger(__name__)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "yuqing_posts_accepted_total",
            "Posts acknowledged after Kafka acked them.",
            ["platform"],
            registry=registry,
        )
        self.rejected = Counter(
            "yuqing_posts_rejected_total", "Posts refused, per reason.", ["reason"], registry=registry
        )
        self.last_post = Gauge(
            "yuqing_platform_last_post_timestamp_seconds",
            "Unix time of the last accepted post per platform; time() minus this is the data freshness.",
            ["platform"],
            registry=registry,
        )
        self.feed_errors = Counter(
            "yuqing_feed_poll_errors_total",
            "RSS/Atom polls that failed (network, HTTP or parse).",
            registry=registry,
        )
        self.produce = Histogram(
            "yuqing_ingest_produce_seconds",
            "Time for Kafka to acknowledge a request's posts.",
            registry=registry,
        )
        self.request = Histogram(
            "yuqing_ingest_request_seconds", "Ingest request latency.", ["route"], registry=registry
        )


def create_app(settings: IngestSettings, registry: CollectorRegistry | None = None) -> FastAPI:
    registry = registry or CollectorRegistry()
    metrics = _Metrics(registry)
    topics = Topics.with_prefix(settings.topic_prefix)
    state: dict[str, AIOKafkaProducer] = {}
    inflight = {"posts": 0}
    model = ReadModel()

    async def connect(tasks: list[asyncio.Task[None]]) -> None:
        """Create the topics and start the producer, retrying until Kafka answers. The API serves meanwhile:
        /healthz 200, /readyz and POST 503, so that an orchestrator does not restart it in a loop."""
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                request_timeout_ms=int(settings.produce_timeout_seconds * 1000),
            )
            try:
                await ensure_topics(settings, retries=1)
                await producer.start()
                break
            except (KafkaError, KafkaSetupError, OSError) as exc:
                await producer.stop()
                log.warning(
                    "Kafka at %s not usable yet, retrying in %.0fs: %s", settings.kafka_bootstrap, delay, exc
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        state["producer"] = producer
        if settings.read_model and settings.briefings:
            tasks.append(asyncio.create_task(_brief(settings, topics, model, producer)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        connecting = asyncio.create_task(connect(tasks))
        tasks.append(connecting)
        # Kafka up: start serving connected, as before. Kafka down: serve anyway after a while (503s).
        await asyncio.wait({connecting}, timeout=settings.produce_timeout_seconds)
        if settings.read_model:
            tasks.append(asyncio.create_task(_follow(settings, topics, model)))
        feeds = load_config(settings.config_file).ingest
        if feeds.feeds:
            tasks.append(asyncio.create_task(_poll_feeds(feeds, produce, metrics.feed_errors)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if "producer" in state:
                await state["producer"].stop()

    def _producer() -> AIOKafkaProducer:
        if "producer" not in state:
            raise KafkaConnectionError(f"not connected to Kafka at {settings.kafka_bootstrap} yet")
        return state["producer"]

    app = FastAPI(title="yuqing ingest", version="1", lifespan=lifespan)

    authorised = TokenCheck(settings.ingest_tokens, "ingest")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        producer = state.get("producer")
        try:
            if producer is None:
                raise KafkaConnectionError(f"not connected to Kafka at {settings.kafka_bootstrap} yet")
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 3.0)
        except (KafkaError, TimeoutError, OSError) as exc:
            return JSONResponse(
                {"status": "unavailable", "kafka": str(exc) or type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    responses: dict[int | str, dict[str, Any]] = {
        207: {"description": "Some items accepted; the others are reported with index, field and reason"},
        413: {"description": "Body or item count over the limit"},
        422: {"description": "No item valid"},
        429: {"description": "Overloaded; retry after Retry-After"},
        503: {"description": "Kafka unavailable; retry after Retry-After"},
    }

    post_schema = Post.model_json_schema(mode="validation")
    posts_body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"anyOf": [post_schema, {"type": "array", "items": post_schema}]}},
        },
    }

    @app.post("/v1/posts", status_code=202, responses=responses, openapi_extra={"requestBody": posts_body})
    async def post_posts(request: Request) -> JSONResponse:
        """Normalised posts: one object, a JSON array, or NDJSON (application/x-ndjson)."""
        with metrics.request.labels("/v1/posts").time():
            return await ingest(request, normalised(settings.max_text_chars))

    native_body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"description": "A platform's native payload, or an array."}}
        },
    }

    @app.post(
        "/v1/platforms/{platform}/posts",
        status_code=202,
        responses=responses,
        openapi_extra={"requestBody": native_body},
    )
    async def post_native(request: Request, platform: str) -> JSONResponse:
        """Platform-native payloads (weibo, wechat, douyin, xiaohongshu, zhihu, bilibili, news, forum)."""
        with metrics.request.labels("/v1/platforms/{platform}/posts").time():
            if platform not in {p.value for p in Platform}:
                if authorised(request) is None:
                    allowed = ", ".join(p.value for p in Platform)
                    detail = [
                        {
                            "loc": ["path", "platform"],
                            "msg": f"{platform!r} is not one of: {allowed}",
                            "type": "enum",
                        }
                    ]
                    return JSONResponse({"detail": detail}, status_code=422)
            return await ingest(request, native(platform))

    async def ingest(request: Request, convert: Convert) -> JSONResponse:
        denied = authorised(request)
        if denied is not None:
            return denied
        body = await request.body()
        if len(body) > settings.max_body_bytes:
            metrics.rejected.labels("too_large").inc()
            return JSONResponse(
                {"detail": f"body is {len(body)} bytes; the limit is {settings.max_body_bytes}"},
                status_code=413,
            )
        try:
            items, single = parse_body(body, request.headers.get("content-type", ""))
        except json.JSONDecodeError as exc:
            metrics.rejected.labels("invalid_json").inc()
            return JSONResponse(
                {"detail": [{"loc": ["body"], "msg": f"invalid JSON: {exc}", "type": "json_invalid"}]},
                status_code=422,
            )
        if len(items) > settings.max_items:
            return JSONResponse(
                {"detail": f"{len(items)} items; the limit is {settings.max_items}"}, status_code=413
            )
        batch = to_posts(items, single, convert, datetime.now(UTC))
        posts, errors = batch.posts, batch.errors
        if errors:
            metrics.rejected.labels("invalid").inc(len({tuple(e["loc"][:2]) for e in errors}))
        if not posts:
            return JSONResponse({"detail": errors}, status_code=422)
        if inflight["posts"] + len(posts) > settings.max_inflight_posts:
            # Shed load now with a clear answer rather than queue until the client times out.
            metrics.rejected.labels("overloaded").inc(len(posts))
            return JSONResponse(
                {"detail": f"overloaded: {inflight['posts']} posts are awaiting Kafka; retry shortly"},
                status_code=429,
                headers={"Retry-After": "1"},
            )
        try:
            await produce(posts)
        except (KafkaError, TimeoutError) as exc:
            log.warning("Kafka unavailable, refusing %d posts: %s", len(posts), exc)
            metrics.rejected.labels("kafka_unavailable").inc(len(posts))
            return JSONResponse(
                {"detail": "Kafka is unavailable; nothing from this request was accepted"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        accepted = [{"index": i, "key": p.key, "event_id": p.event_id} for i, p in posts]
        return JSONResponse({"accepted": accepted, "rejected": errors}, status_code=207 if errors else 202)

    async def send_action(group: str, action: IncidentAction) -> None:
        await _producer().send_and_wait(topics.incident_actions, key=group.encode(), value=json.dumps(action))

    link_secret = settings.link_secret.get_secret_value().encode() if settings.link_secret else None

    async def send_override(group: str, cmd: TierOverride) -> None:
        await _producer().send_and_wait(topics.tier_overrides, key=group.encode(), value=json.dumps(cmd))

    app.include_router(
        operator_router(
            model, TokenCheck(settings.operator_tokens, "operator"), send_action, link_secret, send_override
        )
    )
    install_console(
        app,
        model,
        load_config(settings.config_file),
        [t.get_secret_value() for t in settings.operator_tokens],
        send_action,
        link_secret,
    )
    app.state.read_model = model

    async def produce(posts: list[tuple[int, Post]]) -> None:
        """Send and wait for acks=all; counts the posts in flight for load shedding."""
        sender = _producer()
        inflight["posts"] += len(posts)
        try:
            with metrics.produce.time():
                futures = [
                    await sender.send(topics.posts_raw, key=p.key.encode(), value=json.dumps(p))
                    for _, p in posts
                ]
                await asyncio.wait_for(asyncio.gather(*futures), settings.produce_timeout_seconds)
        finally:
            inflight["posts"] -= len(posts)
        for _, p in posts:
            metrics.accepted.labels(p.platform.value).inc()
            metrics.last_post.labels(p.platform.value).set_to_current_time()

    app.state.produce = produce
    return app


async def _follow(settings: IngestSettings, topics: Topics, model: ReadModel) -> None:
    """Feed the read model from the event topics, from the beginning; reconnect on errors."""
    kinds: dict[str, Any] = {
        topics.keyword_hits: KeywordHit,
        topics.tier_changes: TierChange,
        topics.incidents: IncidentEvent,
    }
    while True:
        consumer = AIOKafkaConsumer(
            *kinds,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        try:
            await consumer.start()
            async for record in consumer:
                try:
                    model.apply(kinds[record.topic].model_validate_json(record.value))
                except ValidationError:
                    log.warning(
                        "read model skips an undecodable record at %s@%s", record.topic, record.offset
                    )
        except KafkaError as exc:
            log.warning("read model consumer failed, retrying: %s", exc)
            await asyncio.sleep(2)
        finally:
            await consumer.stop()


async def _brief(
    settings: IngestSettings, topics: Topics, model: ReadModel, producer: AIOKafkaProducer
) -> None:
    """Publish a briefing for every due slot. Slots are deduplicated downstream by their dedup key, so
    starting a little in the past is safe and covers a restart right at a slot."""
    config = load_config(settings.config_file).notifier
    last = datetime.now(UTC) - timedelta(minutes=5)
    while True:
        now = datetime.now(UTC)
        for slot in due_slots(config.briefing_times, config.briefing_tz, last, now):
            since = previous_slot(config.briefing_times, config.briefing_tz, slot)
            alert = build_briefing(
                slot, since, model.tier_board(), model.ledger_rows(), model.incident_list()
            )
            try:
                await producer.send_and_wait(topics.alerts, key=b"*", value=json.dumps(alert))
            except KafkaError as exc:
                log.warning("briefing for %s not published yet: %s", slot.isoformat(), exc)
                break
            last = slot
        else:
            last = now
        await asyncio.sleep(20)


async def _poll_feeds(config: IngestConfig, produce: Any, errors: Counter) -> None:
    """Poll the configured RSS/Atom feeds on a schedule; new entries become zero-engagement posts."""
    async with httpx.AsyncClient(timeout=30, follow_redirects=True) as client:
        poller = FeedPoller(config.feeds, client)
        while True:
            failed_before = sum(poller.errors.values())
            try:
                posts = await poller.poll_once()
                if posts:
                    await produce(list(enumerate(posts)))
            except (KafkaError, TimeoutError) as exc:
                log.warning("feed items not produced (they come back after a restart): %s", exc)
            errors.inc(sum(poller.errors.values()) - failed_before)
            await asyncio.sleep(config.feed_poll_seconds)
