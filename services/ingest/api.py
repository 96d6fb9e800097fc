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
from services.common.kafka_security import client_kwargs
from services.common.topics import Topics
from services.common.unreadable import install as read_unreadable_records
from services.ingest.adapters import AdapterError
from services.ingest.auth import TokenCheck
from services.ingest.batch import (
    Batch,
    Body,
    Convert,
    native,
    normalised,
    observed_time,
    parse_body,
    to_posts,
)
from services.ingest.console import install_console
from services.ingest.exceptions import ProduceFailed
from services.ingest.feeds import FeedPoller
from services.ingest.guard import install_guards
from services.ingest.limits import TooLarge, read_capped
from services.ingest.operator import operator_router
from services.ingest.readmodel import ReadModel
from services.ingest.settings import IngestSettings
from services.ingest.timeparse import TimeBounds
from services.ingest.workflow_views import install_workflow_views
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
            "yuqing_posts_rejected_total",
            "Items refused, per platform (or 'unknown') and reason; one per item, not per field.",
            ["platform", "reason"],
            registry=registry,
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
                **client_kwargs(settings),
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
            tasks.append(
                asyncio.create_task(_poll_feeds(feeds, produce, metrics.feed_errors, settings.time_bounds))
            )
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
    install_guards(app, settings.max_body_bytes, settings.max_operator_body_bytes)

    authorised = TokenCheck(settings.ingest_tokens, "ingest")
    _warn_if_open(settings)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            await asyncio.wait_for(_producer().client.fetch_all_metadata(), 3.0)
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

    observed_param: dict[str, Any] = {
        "parameters": [
            {
                "name": "observed_at",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "When the crawler read these posts (ISO 8601 with offset, or epoch "
                "seconds): the event time of every item that does not carry its own. Default: when the "
                "request arrived.",
            }
        ]
    }

    @app.post(
        "/v1/posts",
        status_code=202,
        responses=responses,
        openapi_extra={"requestBody": posts_body, **observed_param},
    )
    async def post_posts(request: Request) -> JSONResponse:
        """Normalised posts: one object, a JSON array, or NDJSON (application/x-ndjson)."""
        with metrics.request.labels("/v1/posts").time():
            return await ingest(request, normalised(settings.max_text_chars, settings.time_bounds), None)

    native_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "description": "A platform's native payload, or an array; an item may be an envelope "
                    '{"observed_at": "<when it was crawled>", "payload": {…native payload…}}.'
                }
            }
        },
    }

    @app.post(
        "/v1/platforms/{platform}/posts",
        status_code=202,
        responses=responses,
        openapi_extra={"requestBody": native_body, **observed_param},
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
            return await ingest(
                request, native(platform, settings.max_text_chars, settings.time_bounds), platform
            )

    async def ingest(request: Request, convert: Convert, platform: str | None) -> JSONResponse:
        denied = authorised(request)
        if denied is not None:
            return denied
        route_platform = platform if platform in _PLATFORMS else "unknown"
        body = await read_capped(request, settings.max_body_bytes)
        if isinstance(body, TooLarge):
            metrics.rejected.labels(route_platform, "too_large").inc()
            return body.response
        try:
            parsed = parse_body(body, request.headers.get("content-type", ""))
        except json.JSONDecodeError as exc:
            metrics.rejected.labels(route_platform, "invalid_json").inc()
            return JSONResponse(
                {"detail": [{"loc": ["body"], "msg": f"invalid JSON: {exc}", "type": "json_invalid"}]},
                status_code=422,
            )
        if len(parsed.items) > settings.max_items:
            for item in parsed.items:
                metrics.rejected.labels(platform or _platform_of(item), "too_many_items").inc()
            return JSONResponse(
                {"detail": f"{len(parsed.items)} items; the limit is {settings.max_items}"}, status_code=413
            )
        now = datetime.now(UTC)
        observed = None
        if (raw_observed := request.query_params.get("observed_at")) is not None:
            try:
                observed = observed_time(raw_observed, now, settings.time_bounds, "observed_at")
            except AdapterError as exc:
                metrics.rejected.labels(route_platform, "invalid").inc()
                detail = [{"loc": ["query", "observed_at"], "msg": exc.reason, "type": "value_error"}]
                return JSONResponse({"detail": detail}, status_code=422)
        batch = await _convert(parsed, convert, len(body), now, observed)
        posts, errors = batch.posts, batch.errors
        for index in batch.rejected:
            metrics.rejected.labels(platform or _platform_of(parsed.items[index]), "invalid").inc()
        if not posts:
            return JSONResponse({"detail": errors}, status_code=422)
        if inflight["posts"] + len(posts) > settings.max_inflight_posts:
            # Shed load now with a clear answer rather than queue until the client times out.
            for _, p in posts:
                metrics.rejected.labels(p.platform.value, "overloaded").inc()
            return JSONResponse(
                {"detail": f"overloaded: {inflight['posts']} posts are awaiting Kafka; retry shortly"},
                status_code=429,
                headers={"Retry-After": "1"},
            )
        accepted = [_receipt(i, p, batch) for i, p in posts]
        try:
            await produce(posts)
        except ProduceFailed as exc:
            log.warning("Kafka unavailable: %s", exc)
            acked = set(exc.acked)
            for i, p in posts:
                if i not in acked:
                    metrics.rejected.labels(p.platform.value, "kafka_unavailable").inc()
            return JSONResponse(
                {
                    "detail": (
                        f"Kafka is unavailable: {len(acked)} of {len(posts)} valid posts were acknowledged "
                        "(listed in 'accepted'); the others were not. Resending the whole request is safe: "
                        "keys and event ids are deterministic, so a post that arrives twice counts once."
                    ),
                    "accepted": [r for r in accepted if r["index"] in acked],
                    "not_acknowledged": [r["index"] for r in accepted if r["index"] not in acked],
                    "rejected": errors,
                },
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return JSONResponse({"accepted": accepted, "rejected": errors}, status_code=207 if errors else 202)

    async def _convert(
        parsed: Body, convert: Convert, size: int, now: datetime, observed: datetime | None
    ) -> Batch:
        if size < _INLINE_BYTES:
            return to_posts(parsed, convert, now, observed)
        # Converting megabytes of HTML takes long enough to stall every other request on the loop.
        return await asyncio.to_thread(to_posts, parsed, convert, now, observed)

    async def send_action(group: str, action: IncidentAction) -> None:
        await _producer().send_and_wait(topics.incident_actions, key=group.encode(), value=json.dumps(action))

    link_secret = settings.link_secret.get_secret_value().encode() if settings.link_secret else None

    async def send_override(group: str, cmd: TierOverride) -> None:
        await _producer().send_and_wait(topics.tier_overrides, key=group.encode(), value=json.dumps(cmd))

    config = load_config(settings.config_file)
    app.include_router(
        operator_router(
            model,
            TokenCheck(settings.operator_tokens, "operator"),
            send_action,
            link_secret,
            send_override,
            max_body_bytes=settings.max_operator_body_bytes,
            escalation=config.escalation,
        )
    )
    install_console(
        app,
        model,
        config,
        [t.get_secret_value() for t in settings.operator_tokens],
        send_action,
        settings.console_secret.get_secret_value().encode() if settings.console_secret else None,
    )
    install_workflow_views(app)
    app.state.read_model = model

    async def produce(posts: list[tuple[int, Post]]) -> None:
        """Send and wait for acks=all; counts the posts in flight for load shedding.

        Raises ProduceFailed naming the posts Kafka did acknowledge when it did not acknowledge them all.
        """
        try:
            producer = _producer()
        except KafkaConnectionError as exc:  # not connected yet (Kafka down at start-up): nothing was sent
            raise ProduceFailed([], len(posts), exc) from None
        inflight["posts"] += len(posts)
        futures: list[asyncio.Future[Any]] = []
        failure: BaseException | None = None
        try:
            with metrics.produce.time():
                try:
                    for _, p in posts:
                        futures.append(
                            await producer.send(
                                topics.posts_raw, key=p.thread_key.encode(), value=json.dumps(p)
                            )
                        )
                except (KafkaError, TimeoutError) as exc:
                    failure = exc
                if futures:
                    await asyncio.wait(futures, timeout=settings.produce_timeout_seconds)
        finally:
            inflight["posts"] -= len(posts)
        acked = []
        for (i, p), future in zip(posts, futures, strict=False):
            if future.done() and not future.cancelled() and future.exception() is None:
                acked.append(i)
                metrics.accepted.labels(p.platform.value).inc()
                metrics.last_post.labels(p.platform.value).set_to_current_time()
            else:
                # The send may still complete after we answered; nobody waits for it any more.
                future.add_done_callback(_consume_result)
                if failure is None and future.done() and not future.cancelled():
                    failure = future.exception()
        if len(acked) < len(posts):
            raise ProduceFailed(acked, len(posts), failure)

    app.state.produce = produce
    return app


async def _follow(settings: IngestSettings, topics: Topics, model: ReadModel) -> None:
    """Feed the read model from the event topics, from the beginning; reconnect on errors. A record the Kafka
    client cannot parse (services/common/unreadable.py) is skipped like any undecodable one, instead of
    stopping this task for good."""
    read_unreadable_records()
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
            **client_kwargs(settings),
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


async def _poll_feeds(config: IngestConfig, produce: Any, errors: Counter, bounds: TimeBounds) -> None:
    """Poll the configured RSS/Atom feeds on a schedule; new entries become posts without counts.

    The poller marks entries seen only after `produce` returned, so posts Kafka did not take come back on
    the next poll; every failure is counted per feed and polling goes on.
    """

    async def deliver(posts: list[Post]) -> None:
        await produce(list(enumerate(posts)))

    async with httpx.AsyncClient(timeout=30, follow_redirects=True) as client:
        poller = FeedPoller(config.feeds, client, bounds=bounds)
        while True:
            failed_before = sum(poller.errors.values())
            await poller.poll_once(deliver)
            errors.inc(sum(poller.errors.values()) - failed_before)
            await asyncio.sleep(config.feed_poll_seconds)


_PLATFORMS = frozenset(p.value for p in Platform)
_INLINE_BYTES = 256 * 1024  # bodies above this are converted on a worker thread


def _platform_of(item: object) -> str:
    """The metric label for an item of the normalised route: its platform when valid, else 'unknown'."""
    name = item.get("platform") if isinstance(item, dict) else None
    return name if isinstance(name, str) and name in _PLATFORMS else "unknown"


def _receipt(index: int, post: Post, batch: Batch) -> dict[str, Any]:
    # `key` is the Kafka key the post is sent with (its thread: a repost goes with its root); `post` names
    # the post itself; `event_time` is the observation time used, which decides its windows.
    receipt: dict[str, Any] = {
        "index": index,
        "key": post.thread_key,
        "post": post.key,
        "event_id": post.event_id,
        "event_time": post.event_time.isoformat(),
    }
    if index in batch.warnings:
        receipt["warnings"] = batch.warnings[index]
    return receipt


def _consume_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log "exception was never retrieved"


def _warn_if_open(settings: IngestSettings) -> None:
    for scope, tokens in (("ingest", settings.ingest_tokens), ("operator", settings.operator_tokens)):
        if not tokens:
            log.warning(
                "AUTH IS OFF for %s routes: YUQING_%s_TOKENS is empty, so anyone who can reach %s:%d may "
                "use them. Set tokens unless this is a local development run.",
                scope,
                scope.upper(),
                settings.api_host,
                settings.api_port,
            )
