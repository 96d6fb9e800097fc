"""The thin Faust shell every stream worker shares: app factory, decoding, dead letters, ticks, metrics."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from aiokafka.partitioner import murmur2
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ValidationError

from services.common import json
from services.common.exceptions import DeadLetter
from services.common.metrics import CommonMetrics
from services.common.settings import CommonSettings
from services.common.topics import Topics

__all__ = ["ORIGIN_HEADER", "StreamShell", "decode", "envelope"]

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

TICK = b"__tick__"
# Set on a message forwarded to an internal topic: "topic|partition|offset" of where it first arrived, so a
# dead letter names the topic an operator knows, not the internal one.
ORIGIN_HEADER = "yuqing-origin"


def envelope(raw: bytes | None) -> dict[str, Any]:
    """Bytes to the JSON object of an event of the schema version we read, or DeadLetter with a reason."""
    if raw is None:
        raise DeadLetter("empty", "message has no value")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DeadLetter("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise DeadLetter("invalid_schema", f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", 1)
    if version != 1:
        raise DeadLetter("unsupported_schema_version", f"schema_version {version!r}; this worker reads 1")
    return data


def decode(model: type[M], raw: bytes | None) -> M:
    """Bytes to a model, or DeadLetter with a reason from a fixed set."""
    data = envelope(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errs = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)[:5]
        )
        raise DeadLetter("invalid_schema", f"{model.__name__}: {errs}") from None


def _origin(msg: Any) -> tuple[str, int, int]:
    headers = msg.headers or {}
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == ORIGIN_HEADER and value:
            topic, partition, offset = bytes(value).decode().rsplit("|", 2)
            return topic, int(partition), int(offset)
    return msg.topic, msg.partition, msg.offset


class _Collector:
    def __init__(self, fn: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self.collect = fn


class StreamShell:
    """One Faust app per service with the settings, registry and helpers its agents need."""

    def __init__(
        self, service: str, settings: CommonSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.service = service
        self.settings = settings
        self.topics = Topics.with_prefix(settings.topic_prefix)
        self.registry = registry or CollectorRegistry()
        self.metrics = CommonMetrics(self.registry, service)
        self.registry.register(_Collector(self._lag))
        (settings.data_dir / service).mkdir(parents=True, exist_ok=True)
        brokers = ";".join(f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(","))
        self.app = faust.App(
            f"{settings.topic_prefix}{service}",
            broker=brokers,
            store="memory://",  # durable through changelog topics; rebuilt on start
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            table_standby_replicas=0,  # a timer walks its tables; standby copies must not fire twice
            web_enabled=True,
            web_port=settings.web_port,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            datadir=str(settings.data_dir / service),
            broker_session_timeout=settings.session_timeout_seconds,
            broker_heartbeat_interval=settings.heartbeat_interval_seconds,
            broker_rebalance_timeout=max(settings.session_timeout_seconds * 2, 10.0),
            producer_acks=-1,
            # Batch sends for a few ms: with linger 0 every message is its own produce request, and socket
            # writes took a fifth of a scoring worker's CPU. 5 ms per hop is nothing against a 10-min SLA.
            producer_linger=0.005,
            producer_max_batch_size=256 * 1024,
            consumer_auto_offset_reset="earliest",
            processing_guarantee="at_least_once",
            topic_allow_declare=True,
            key_serializer="json",  # table keys and values; our topics are raw bytes we decode ourselves
            value_serializer="json",
        )
        self.dead_letter_topic = self.raw_topic(self.topics.dead_letter)
        # Created with the other topics (ensure_topics), co-partitioned with the service's inputs.
        self.ticks_name = f"{settings.topic_prefix}{service}.ticks"
        self.ticks_topic = self.raw_topic(self.ticks_name)
        self._install_pages()

    def _lag(self) -> Iterator[GaugeMetricFamily]:
        """Consumer lag per assigned partition: high-water mark minus the committed offset."""
        family = GaugeMetricFamily(
            "yuqing_consumer_lag_messages",
            "Messages not yet processed and committed, per input topic and partition.",
            labels=["service", "topic", "partition"],
        )
        consumer = getattr(self.app, "_consumer", None)
        if consumer is not None:
            committed = getattr(consumer, "_committed_offset", {})
            with contextlib.suppress(Exception):  # not assigned yet, or mid-rebalance: report nothing
                for tp in consumer.assignment():
                    end = consumer.highwater(tp)
                    done = committed.get(tp)
                    if end is not None and "-changelog" not in tp.topic:
                        family.add_metric(
                            [self.service, tp.topic, str(tp.partition)], max(0, end - (done or 0))
                        )
        yield family

    def raw_topic(self, *names: str) -> Any:
        return self.app.topic(
            *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    def table(self, name: str) -> Any:
        return self.app.Table(name, default=None, partitions=self.settings.partitions)

    def _install_pages(self) -> None:
        registry = self.registry

        @self.app.page("/metrics")
        async def _metrics(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

        @self.app.page("/healthz")
        async def _healthz(web: Any, request: Any) -> Any:
            return web.json({"status": "ok", "service": self.service})

    def every(self, seconds: float) -> None:
        """Send a tick to every partition of the ticks topic, so table work runs inside a stream event."""

        @self.app.timer(seconds)
        async def _tick() -> None:
            now = datetime.now(UTC).isoformat().encode()
            for partition in range(self.settings.partitions):
                await self.ticks_topic.send(key=TICK, value=now, partition=partition)

    async def dead_letter(self, event: Any, reason: str, detail: str) -> None:
        msg = event.message
        raw: bytes = event.value if isinstance(event.value, bytes) else b""
        topic, partition, offset = _origin(msg)
        record = {
            "event_time": datetime.now(UTC),
            "service": self.service,
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "key": (event.key or b"").decode("utf-8", "replace") if isinstance(event.key, bytes) else None,
            "reason": reason,
            "detail": detail[:2000],
            "value_base64": base64.b64encode(raw).decode(),
        }
        self.metrics.dead_letters.labels(self.service, reason).inc()
        log.warning("dead letter from %s[%s]@%s: %s %s", topic, partition, offset, reason, detail[:300])
        await self.dead_letter_topic.send(key=topic.encode(), value=json.dumps(record))

    async def guarded(self, event: Any, handler: Callable[[Any], Awaitable[None]]) -> None:
        """Run handler; a DeadLetter or an unexpected error sends the message to the dead-letter topic."""
        topic = event.message.topic
        with self.metrics.processing.labels(self.service).time():
            try:
                await handler(event)
            except DeadLetter as exc:
                await self.dead_letter(event, exc.reason, exc.detail)
            except Exception as exc:
                log.exception(
                    "processing failed for %s[%s]@%s", topic, event.message.partition, event.message.offset
                )
                await self.dead_letter(event, "processing_error", f"{type(exc).__name__}: {exc}")
        self.metrics.messages.labels(self.service, topic).inc()

    def home_partition(self, key: str) -> int:
        """The partition a message keyed `key` lands on (Kafka's default murmur2 partitioner)."""
        return (murmur2(key.encode()) & 0x7FFFFFFF) % self.settings.partitions

    def tick_keys(self, event: Any, table: Any) -> list[str]:
        """The keys of `table` a tick may touch: those whose home partition is the tick's partition.

        Faust writes a table's changelog record to the partition of the event being processed. A tick on
        partition p that rewrote a row keyed to partition q would move that row to changelog partition p,
        so after a restart or a partition move a stale copy could win, or two workers could both fire it.
        Every input topic is keyed by rule group, and each tick partition walks only its own groups.
        """
        partition = event.message.partition
        return [k for k in list(table.keys()) if self.home_partition(k) == partition]

    @staticmethod
    def is_tick(event: Any) -> bool:
        return bool(event.key == TICK)

    async def send_model(self, topic: Any, key: str, model: BaseModel) -> None:
        await topic.send(key=key.encode(), value=json.dumps(model))
