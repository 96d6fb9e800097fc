"""The ingest HTTP API: normalised posts in, acknowledged only once Kafka (acks=all) has them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from aiokafka.errors import KafkaConnectionError, KafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from schemas.events import Platform, Post
from schemas.topics import Topics
from services.common import json
from services.common.auth import TokenCheck
from services.common.config import IngestConfig, load_config
from services.common.guard import install_guards
from services.common.limits import TooLarge, read_capped
from services.common.producer import Producer
from services.ingest.adapters import AdapterError
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
from services.ingest.exceptions import ProduceFailed
from services.ingest.feeds import FeedPoller
from services.ingest.settings import IngestSettings
from services.ingest.timeparse import TimeBounds

__all__ = ["Ingest", "create_app", "router"]

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


@dataclass
class Ingest:
    """The API's state, one per app (`app.state.ingest`), built once by create_app: what every route uses."""

    settings: IngestSettings
    registry: CollectorRegistry
    metrics: _Metrics
    topics: Topics
    authorised: TokenCheck
    feeds: IngestConfig
    kafka: Producer
    inflight: int = 0  # posts awaiting Kafka's acks, for load shedding

    async def produce(self, posts: list[tuple[int, Post]]) -> None:
        """Send and wait for acks=all; counts the posts in flight for load shedding.

        Raises ProduceFailed naming the posts Kafka did acknowledge when it did not acknowledge them all.
        """
        try:
            producer = self.kafka.get()
        except KafkaConnectionError as exc:  # not connected yet (Kafka down at start-up): nothing was sent
            raise ProduceFailed([], len(posts), exc) from None
        self.inflight += len(posts)
        futures: list[asyncio.Future[Any]] = []
        failure: BaseException | None = None
        try:
            with self.metrics.produce.time():
                try:
                    for _, p in posts:
                        futures.append(
                            await producer.send(
                                self.topics.posts_raw, key=p.thread_key.encode(), value=json.dumps(p)
                            )
                        )
                except (KafkaError, TimeoutError) as exc:
                    failure = exc
                if futures:
                    await asyncio.wait(futures, timeout=self.settings.produce_timeout_seconds)
        finally:
            self.inflight -= len(posts)
        acked = []
        for (i, p), future in zip(posts, futures, strict=False):
            if future.done() and not future.cancelled() and future.exception() is None:
                acked.append(i)
                self.metrics.accepted.labels(p.platform.value).inc()
                self.metrics.last_post.labels(p.platform.value).set_to_current_time()
            else:
                # The send may still complete after we answered; nobody waits for it any more.
                future.add_done_callback(_consume_result)
                if failure is None and future.done() and not future.cancelled():
                    failure = future.exception()
        if len(acked) < len(posts):
            raise ProduceFailed(acked, len(posts), failure)


def ingest_of(request: Request) -> Ingest:
    """The state of the app serving `request` (a route dependency)."""
    api: Ingest = request.app.state.ingest
    return api


IngestDep = Annotated[Ingest, Depends(ingest_of)]
router = APIRouter()


def create_app(settings: IngestSettings, registry: CollectorRegistry | None = None) -> FastAPI:
    registry = registry or CollectorRegistry()
    app = FastAPI(title="yuqing ingest", version="1", lifespan=_lifespan)
    app.state.ingest = Ingest(
        settings=settings,
        registry=registry,
        metrics=_Metrics(registry),
        topics=Topics.with_prefix(settings.topic_prefix),
        authorised=TokenCheck(settings.ingest_tokens, "ingest"),
        feeds=load_config(settings.config_file).ingest,
        kafka=Producer(settings, settings.produce_timeout_seconds),
    )
    install_guards(app, settings.max_body_bytes)
    app.include_router(router)
    _warn_if_open(settings)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    api: Ingest = app.state.ingest
    connecting = asyncio.create_task(api.kafka.connect())
    tasks = [connecting]
    # Kafka up: start serving connected. Kafka down: serve anyway after a while (503s until it is back).
    await asyncio.wait({connecting}, timeout=api.settings.produce_timeout_seconds)
    if api.feeds.feeds:
        tasks.append(
            asyncio.create_task(
                _poll_feeds(api.feeds, api.produce, api.metrics.feed_errors, api.settings.time_bounds)
            )
        )
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await api.kafka.stop()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(api: IngestDep) -> JSONResponse:
    reason = await api.kafka.unavailable()
    if reason is not None:
        return JSONResponse({"status": "unavailable", "kafka": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
async def metrics(api: IngestDep) -> Response:
    return Response(generate_latest(api.registry), media_type=CONTENT_TYPE_LATEST)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    207: {"description": "Some items accepted; the others are reported with index, field and reason"},
    413: {"description": "Body or item count over the limit"},
    422: {"description": "No item valid"},
    429: {"description": "Overloaded; retry after Retry-After"},
    503: {"description": "Kafka unavailable; retry after Retry-After"},
}
_POST_SCHEMA = Post.model_json_schema(mode="validation")
_POSTS_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"anyOf": [_POST_SCHEMA, {"type": "array", "items": _POST_SCHEMA}]}},
    },
}
_NATIVE_BODY = {
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
_OBSERVED_PARAM: dict[str, Any] = {
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


@router.post(
    "/v1/posts",
    status_code=202,
    responses=_RESPONSES,
    openapi_extra={"requestBody": _POSTS_BODY, **_OBSERVED_PARAM},
)
async def post_posts(request: Request, api: IngestDep) -> JSONResponse:
    """Normalised posts: one object, a JSON array, or NDJSON (application/x-ndjson)."""
    s = api.settings
    with api.metrics.request.labels("/v1/posts").time():
        return await _ingest(api, request, normalised(s.max_text_chars, s.time_bounds), None)


@router.post(
    "/v1/platforms/{platform}/posts",
    status_code=202,
    responses=_RESPONSES,
    openapi_extra={"requestBody": _NATIVE_BODY, **_OBSERVED_PARAM},
)
async def post_native(request: Request, platform: str, api: IngestDep) -> JSONResponse:
    """Platform-native payloads (weibo, wechat, douyin, xiaohongshu, zhihu, bilibili, news, forum)."""
    s = api.settings
    with api.metrics.request.labels("/v1/platforms/{platform}/posts").time():
        if platform not in _PLATFORMS and api.authorised(request) is None:
            allowed = ", ".join(p.value for p in Platform)
            detail = [
                {"loc": ["path", "platform"], "msg": f"{platform!r} is not one of: {allowed}", "type": "enum"}
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        return await _ingest(api, request, native(platform, s.max_text_chars, s.time_bounds), platform)


async def _ingest(api: Ingest, request: Request, convert: Convert, platform: str | None) -> JSONResponse:
    denied = api.authorised(request)
    if denied is not None:
        return denied
    settings, metrics = api.settings, api.metrics
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
    if api.inflight + len(posts) > settings.max_inflight_posts:
        # Shed load now with a clear answer rather than queue until the client times out.
        for _, p in posts:
            metrics.rejected.labels(p.platform.value, "overloaded").inc()
        return JSONResponse(
            {"detail": f"overloaded: {api.inflight} posts are awaiting Kafka; retry shortly"},
            status_code=429,
            headers={"Retry-After": "1"},
        )
    accepted = [_receipt(i, p, batch) for i, p in posts]
    try:
        await api.produce(posts)
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
    if not settings.ingest_tokens:
        log.warning(
            "AUTH IS OFF for the post routes: YUQING_INGEST_TOKENS is empty, so anyone who can reach %s:%d "
            "may post. Set tokens unless this is a local development run.",
            settings.api_host,
            settings.api_port,
        )
