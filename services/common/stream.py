"""The thin Faust shell every stream worker shares: app factory, decoding, dead letters, ticks, metrics."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import murmur2
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ValidationError

from schemas.events import DeadLetterRecord
from services.common import json
from services.common.exceptions import DeadLetter, RetryLater
from services.common.kafka_security import client_kwargs, faust_credentials
from services.common.metrics import CommonMetrics, health, lag_family
from services.common.settings import CommonSettings
from services.common.stall import StallWatch
from services.common.topics import Topics

__all__ = [
    "ORIGIN_HEADER",
    "StreamShell",
    "dead_letter_record",
    "decode",
    "envelope",
    "home_partition",
    "lag_rows",
    "origin_of",
    "retry_transient",
    "validate",
]

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

TICK = b"__tick__"
_RETRY_FIRST_SECONDS = 0.5
_RETRY_CAP_SECONDS = 30.0


_LAG_REFRESH_SECONDS = 10.0


def _is_input(topic: str) -> bool:
    """A topic whose lag means work not done: not a table changelog, the worker's own ticks or faust's
    assignor topic (ticks pile up harmlessly while a worker is down and expire after an hour)."""
    return "-changelog" not in topic and not topic.endswith(".ticks") and "__assignor" not in topic


def home_partition(key: str, partitions: int) -> int:
    """The partition a message keyed `key` lands on (Kafka's default murmur2 partitioner)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def lag_rows(
    partitions: list[tuple[str, int]],
    ends: dict[tuple[str, int], int],
    committed: dict[tuple[str, int], int],
    starts: dict[tuple[str, int], int],
) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition): end offset minus the committed offset, or minus the log start when the
    group never committed there (a negative committed offset means none)."""
    rows = {}
    for tp in partitions:
        if tp not in ends:
            continue
        done = committed.get(tp, -1)
        if done < 0:
            done = starts.get(tp, 0)
        rows[tp] = max(0, ends[tp] - done)
    return rows


def _transient(exc: BaseException) -> bool:
    """Errors that the same message may not meet again: Kafka unreachable or slow, leaders moving."""
    if isinstance(exc, RetryLater | TimeoutError | KafkaTimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


async def retry_transient(
    action: Callable[[], Awaitable[None]],
    retrying: Callable[[int, float, BaseException], None],
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Run `action` until it succeeds. A transient failure (_transient) is retried after a capped
    exponential backoff, with `retrying(attempt, delay, exc)` told first; any other error propagates."""
    attempt = 0
    while True:
        try:
            await action()
            return
        except Exception as exc:
            if not _transient(exc):
                raise
            attempt += 1
            delay = min(_RETRY_CAP_SECONDS, _RETRY_FIRST_SECONDS * 2 ** (attempt - 1))
            retrying(attempt, delay, exc)
            await sleep(delay)


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
    """Bytes to a model, or DeadLetter with a reason from a fixed set.

    pydantic's own JSON parser takes the common, valid message in one step (a quarter faster than orjson
    plus model_validate on a post: scoring decodes every post and hit). It refuses what orjson refuses (bad
    UTF-8, lone surrogates, control characters; NaN and Infinity through the models' allow_inf_nan=False),
    and anything it refuses goes the long way, which names the precise reason."""
    if raw is not None:
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            pass
    return validate(model, envelope(raw))


def validate(model: type[M], data: dict[str, Any]) -> M:
    """An envelope's JSON object to a model, or DeadLetter("invalid_schema") naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errs = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)[:5]
        )
        raise DeadLetter("invalid_schema", f"{model.__name__}: {errs}") from None


def origin_of(msg: Any) -> tuple[str, int, int]:
    headers = msg.headers or {}
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == ORIGIN_HEADER and value:
            topic, partition, offset = bytes(value).decode().rsplit("|", 2)
            return topic, int(partition), int(offset)
    return msg.topic, msg.partition, msg.offset


def dead_letter_record(
    service: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str,
) -> DeadLetterRecord:
    """What the dead-letter topic keeps of a refused message: where it came from, why, and its bytes."""
    return DeadLetterRecord(
        event_time=datetime.now(UTC),
        service=service,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        reason=reason,
        detail=detail[:2000],
        value_base64=base64.b64encode(value or b"").decode(),
    )


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
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests replace it: no real waits
        self.registry.register(_Collector(self._lag))
        (settings.data_dir / service).mkdir(parents=True, exist_ok=True)
        brokers = ";".join(f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(","))
        self.app = faust.App(
            f"{settings.topic_prefix}{service}",
            broker=brokers,
            broker_credentials=faust_credentials(settings),
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
        self._lag_rows: dict[tuple[str, int], int] = {}
        self.stall = StallWatch(settings.stall_seconds)
        self._install_pages()

        self._lag_measured: tuple[float, frozenset[Any]] = (0.0, frozenset())

        # A task, not a timer, so the first measurement comes as soon as the worker is ready; then every
        # 10 s, or at once when the assignment changed (the restart tests wait for a worker's lag).
        @self.app.task
        async def _measure_lag() -> None:
            while True:
                try:
                    assigned = frozenset(self.app.consumer.assignment())
                    at, before = self._lag_measured
                    if assigned != before or time.monotonic() - at >= _LAG_REFRESH_SECONDS:
                        self._lag_measured = (time.monotonic(), assigned)
                        await self._refresh_lag()
                except Exception as exc:
                    # Unreachable cluster, mid-rebalance: report no lag rather than a stale one.
                    self._lag_rows = {}
                    log.debug("lag not measured: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    def _lag(self) -> Iterator[GaugeMetricFamily]:
        """Consumer lag per assigned input partition, as last measured by _refresh_lag."""
        yield lag_family(self.service, self._lag_rows)

    async def _refresh_lag(self) -> None:
        """Measure lag with public APIs: the group's committed offsets from the cluster (what a restart
        resumes from, whoever committed them), end offsets and, for partitions never committed, the log start
        (where auto_offset_reset=earliest begins). faust's own committed-offset map is private and empty until
        its first commit, which reported the whole topic as lag."""
        consumer = self.app.consumer
        tps = [tp for tp in consumer.assignment() if _is_input(tp.topic)]
        if not tps:
            self._lag_rows = {}
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap, **client_kwargs(self.settings)
        )
        try:
            await admin.start()
            answer = await admin.list_consumer_group_offsets(
                self.app.conf.id, partitions=[TopicPartition(tp.topic, tp.partition) for tp in tps]
            )
        finally:
            await admin.close()
        committed = {(tp.topic, tp.partition): meta.offset for tp, meta in answer.items()}
        # The end offsets the consumer learnt from its last fetch (no request); a partition not fetched yet
        # has none and is left out until it has.
        ends: dict[Any, int] = {}
        for tp in tps:
            with contextlib.suppress(Exception):
                end = consumer.highwater(tp)
                if end is not None:
                    ends[tp] = end
        fresh = [tp for tp in ends if ends[tp] > 0 and committed.get((tp.topic, tp.partition), -1) < 0]
        starts = await consumer.earliest_offsets(*fresh) if fresh else {}
        self._lag_rows = lag_rows(
            [(tp.topic, tp.partition) for tp in tps],
            {(tp.topic, tp.partition): end for tp, end in ends.items()},
            committed,
            {(tp.topic, tp.partition): start for tp, start in starts.items()},
        )

    def raw_topic(self, *names: str) -> Any:
        return self.app.topic(
            *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    def table(self, name: str) -> Any:
        return self.app.Table(name, default=None, partitions=self.settings.partitions)

    def changelog_topics(self) -> list[str]:
        """The changelog topic of every table, as faust names them: created before faust starts
        (kafka.ensure_changelogs), since a changelog faust creates itself can show it no partitions."""
        return sorted(table.changelog_topic_name for table in self.app.tables.values())

    def _install_pages(self) -> None:
        registry = self.registry

        @self.app.page("/metrics")
        async def _metrics(web: Any, request: Any) -> Any:
            return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

        @self.app.page("/healthz")
        async def _healthz(web: Any, request: Any) -> Any:
            body, status = health(self.service, self._lag_rows, self.stall)
            return web.json(body, status=status)

    def every(self, seconds: float) -> None:
        """Send a tick to every partition of the ticks topic, so table work runs inside a stream event."""

        @self.app.timer(seconds)
        async def _tick() -> None:
            now = datetime.now(UTC).isoformat().encode()
            for partition in range(self.settings.partitions):
                await self.ticks_topic.send(key=TICK, value=now, partition=partition)

    async def dead_letter(self, event: Any, reason: str, detail: str, value: bytes | None = None) -> None:
        """`value` replaces the event's bytes when what failed was built from it (a notifier batch)."""
        msg = event.message
        raw = value if value is not None else event.value if isinstance(event.value, bytes) else b""
        topic, partition, offset = origin_of(msg)
        key = event.key if isinstance(event.key, bytes) else None
        record = dead_letter_record(self.service, topic, partition, offset, key, raw, reason, detail)
        self.metrics.dead_letters.labels(self.service, reason).inc()
        log.warning("dead letter from %s[%s]@%s: %s %s", topic, partition, offset, reason, detail[:300])
        await self.dead_letter_topic.send(key=topic.encode(), value=json.dumps(record))

    async def guarded(self, event: Any, handler: Callable[[Any], Awaitable[None]]) -> None:
        """Run handler. A DeadLetter, or an error that retrying cannot fix, sends the message to the
        dead-letter topic; a transient Kafka failure (RetryLater, a timeout, a retriable KafkaError) is
        retried in place with capped backoff until it succeeds.

        In place, because faust acks an event whose agent raised, so a re-raised error would skip the
        message on restart (faust-streaming/faust#315) and crash the agent: at-most-once. Dead-lettering
        an unreachable broker's messages would lose them too. Blocking the partition instead shows as lag
        and a stalled pipeline, which the alerts catch, and resumes by itself when Kafka is back.
        """
        topic = event.message.topic

        def retrying(attempt: int, delay: float, exc: BaseException) -> None:
            self.metrics.retries.labels(self.service).inc()
            log.warning(
                "transient failure on %s[%s]@%s (attempt %d), retrying in %.1fs: %s: %s",
                topic,
                event.message.partition,
                event.message.offset,
                attempt,
                delay,
                type(exc).__name__,
                exc,
            )

        with self.metrics.processing.labels(self.service).time():
            await retry_transient(lambda: self._process(event, handler), retrying, self.sleep)
        # Ticks are the worker's own clock, not input: counting them kept "processed" moving while no post
        # was, so a stalled pipeline never showed (and the alert on it could not fire).
        if not self.is_tick(event):
            self.metrics.messages.labels(self.service, topic).inc()
            self.stall.progressed()

    async def _process(self, event: Any, handler: Callable[[Any], Awaitable[None]]) -> None:
        try:
            await handler(event)
        except DeadLetter as exc:
            await self.dead_letter(event, exc.reason, exc.detail)
        except Exception as exc:
            if _transient(exc):
                raise
            log.exception(
                "processing failed for %s[%s]@%s",
                event.message.topic,
                event.message.partition,
                event.message.offset,
            )
            await self.dead_letter(event, "processing_error", f"{type(exc).__name__}: {exc}")

    def home_partition(self, key: str) -> int:
        return home_partition(key, self.settings.partitions)

    def tick_keys(self, event: Any, table: Any) -> list[str]:
        """The keys of `table` a tick may touch: those whose home partition is the tick's partition.

        Faust writes a table's changelog record to the partition of the event being processed. A tick on
        partition p that rewrote a row keyed to partition q would move that row to changelog partition p,
        so after a restart or a partition move a stale copy could win, or two workers could both fire it.
        Every input topic is keyed by rule group, and each tick partition walks only its own groups.
        """
        partition = event.message.partition
        return [k for k in list(table.keys()) if self.home_partition(k) == partition]

    def owned_partitions(self) -> set[int] | None:
        """Partitions this worker processes now (its share of the ticks topic, co-partitioned with the
        inputs and tables), or None while it has no settled share: not started, rebalancing, or recovering
        its tables, when a table read could be stale or partial."""
        consumer = getattr(self.app, "_consumer", None)  # App.consumer would create one
        if consumer is None or self.app.rebalancing or self.app.in_recovery:
            return None
        try:
            return {tp.partition for tp in consumer.assignment() if tp.topic == self.ticks_name}
        except Exception:  # the consumer thread is not running yet
            return None

    @staticmethod
    def is_tick(event: Any) -> bool:
        return bool(event.key == TICK)

    async def send_model(self, topic: Any, key: str, model: BaseModel) -> None:
        await topic.send(key=key.encode(), value=json.dumps(model))
