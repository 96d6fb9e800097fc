"""The thin Faust shell every stream worker shares: app factory, decoding, dead letters, ticks, metrics."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import murmur2
from faust.exceptions import ConsumerNotStarted
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ValidationError

from schemas.events import DeadLetterRecord
from schemas.topics import Topics
from services.common import json
from services.common.exceptions import DeadLetter, RetryLater
from services.common.gapread import Replayed, log_starts, read_between
from services.common.journal import CrashJournal
from services.common.kafka_security import client_kwargs, faust_credentials
from services.common.metrics import CommonMetrics, health, lag_family
from services.common.sequence import Arrival, InputSequence
from services.common.settings import CommonSettings
from services.common.stall import StallWatch
from services.common.unreadable import install as read_unreadable_records
from services.common.unreadable import stand_in_detail

__all__ = [
    "MAX_VALUE_BYTES",
    "ORIGIN_HEADER",
    "SettledTable",
    "StreamShell",
    "dead_letter_record",
    "decode",
    "envelope",
    "expect_key",
    "home_partition",
    "is_transient",
    "lag_rows",
    "origin_of",
    "retry_transient",
    "validate",
]

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
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


def is_transient(exc: BaseException) -> bool:
    """Errors that the same message may not meet again: Kafka unreachable or slow, leaders moving."""
    if isinstance(exc, RetryLater | TimeoutError | KafkaTimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


async def retry_transient(
    action: Callable[[], Awaitable[R]],
    retrying: Callable[[int, float, BaseException], None],
    sleep: Callable[[float], Awaitable[None]],
) -> R:
    """Run `action` until it succeeds and return its result. A transient failure (is_transient) is retried
    after a capped exponential backoff, with `retrying(attempt, delay, exc)` told first; any other error
    propagates."""
    attempt = 0
    while True:
        try:
            return await action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            delay = min(_RETRY_CAP_SECONDS, _RETRY_FIRST_SECONDS * 2 ** (attempt - 1))
            retrying(attempt, delay, exc)
            await sleep(delay)


# Set on a message forwarded to an internal topic: "topic|partition|offset" of where it first arrived, so a
# dead letter names the topic an operator knows, not the internal one.
ORIGIN_HEADER = "yuqing-origin"

# The largest message value any worker reads. The largest valid event is a post: 20,000 characters of text,
# 12 bytes each at worst (an emoji \u-escaped as a surrogate pair), about 300 KiB with its other fields. A
# bigger value is refused before parsing (reason too_large), and every value read stays well below the
# broker's 1 MB message limit, so what a worker forwards from it always fits on a topic.
MAX_VALUE_BYTES = 512 * 1024

# What a dead letter keeps of a refused message: all of any value a worker reads; base64 and the record's
# other fields stay within the broker's 1 MB limit, so the dead letter itself can always be written.
_DEAD_VALUE_BYTES = MAX_VALUE_BYTES
_DEAD_KEY_CHARS = 1024
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_PARTITION = re.compile(r"[0-9]{1,10}")
_OFFSET = re.compile(r"[0-9]{1,19}")


def _origin(value: object) -> tuple[str, int, int] | None:
    """A yuqing-origin header's (topic, partition, offset), or None when it is not exactly that."""
    if not isinstance(value, bytes | bytearray) or len(value) > 300:
        return None
    try:
        text = bytes(value).decode("ascii")
    except UnicodeDecodeError:
        return None
    parts = text.split("|")
    if len(parts) != 3:
        return None
    topic, partition, offset = parts
    if not (_TOPIC_NAME.fullmatch(topic) and _PARTITION.fullmatch(partition) and _OFFSET.fullmatch(offset)):
        return None
    if int(partition) >= 2**31 or int(offset) >= 2**63:
        return None
    return topic, int(partition), int(offset)


def origin_of(msg: Any, forwarded: Collection[str] = ()) -> tuple[str, int, int]:
    """Where a message first arrived: its yuqing-origin header when it sits on a topic the service forwards
    messages to itself (`forwarded`), else where it is. Never raises.

    Anyone who can write to an input topic can set headers, so the header is believed only where yuqing
    itself sets it; a malformed one there is treated as absent. Either way the answer is a real place: the
    message's own topic, partition and offset. The header only names a dead letter's origin, so a bad one
    never refuses a message that is otherwise good."""
    here = (msg.topic, msg.partition, msg.offset)
    if msg.topic not in forwarded:
        return here
    headers = msg.headers or ()
    try:
        items = list(headers.items() if isinstance(headers, dict) else headers)
    except (TypeError, ValueError):
        return here
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and item[0] == ORIGIN_HEADER:
            return _origin(item[1]) or here
    return here


def expect_key(key: bytes | None, expected: str, what: str) -> None:
    """DeadLetter("wrong_key") unless the message key is `expected`: a topic keyed by rule group (or thread)
    puts every event of a group on the partition that owns its state, and an event under another key would
    build a second copy of that state on the wrong partition."""
    if key != expected.encode():
        shown = "none" if key is None else repr(key[:80].decode("utf-8", "replace"))
        raise DeadLetter("wrong_key", f"key {shown} is not the {what} {expected!r}; events are keyed by it")


def envelope(raw: bytes | None) -> dict[str, Any]:
    """Bytes to the JSON object of an event of the schema version we read, or DeadLetter with a reason."""
    if raw is None:
        raise DeadLetter("empty", "message has no value (a tombstone)")
    if len(raw) > MAX_VALUE_BYTES:
        raise DeadLetter("too_large", f"value of {len(raw):,} bytes; at most {MAX_VALUE_BYTES:,} are read")
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
    if raw is not None and len(raw) <= MAX_VALUE_BYTES:
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


def _where(event: Any) -> str:
    msg = event.message
    return f"{msg.topic}[{msg.partition}]@{msg.offset}"


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
    """What the dead-letter topic keeps of a refused message: where it came from, why, and its bytes (the
    first 512 KiB of a bigger value, which value_size then says), bounded so that the record always fits."""
    kept = value[:_DEAD_VALUE_BYTES] if value is not None else b""
    shown_key = None if key is None else key[: 4 * _DEAD_KEY_CHARS].decode("utf-8", "replace")
    return DeadLetterRecord(
        event_time=datetime.now(UTC),
        service=service,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=None if shown_key is None else shown_key[:_DEAD_KEY_CHARS],
        reason=reason,
        detail=detail[:2000],
        value_base64=base64.b64encode(kept).decode(),
        value_size=None if value is None else len(value),
    )


class _Collector:
    def __init__(self, fn: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self.collect = fn


_SETTLE_TIMEOUT_SECONDS = 30.0
_KEEP_UNSETTLED = 1024  # done writes are dropped past this, for a worker that never settles


class SettledTable(faust.Table):
    """A faust table whose changelog writes can be awaited.

    faust sends a table's changelog records through a buffer and flushes it before committing offsets, but
    that flush (`ProducerBuffer.flush`) returns as soon as the buffer makes no progress for 0.1 s: offsets
    can then be committed while the writes they depend on are still in memory, and a crash loses both. The
    records written since the last `take_unsettled()` are kept here so that a worker can wait for the broker's
    acknowledgement itself: before an irreversible action (an alert sent), and before it acks an input."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        pending: list[asyncio.Future[Any]] = self.__dict__.setdefault("_yuqing_unsettled", [])
        pending.append(fut)
        if len(pending) > _KEEP_UNSETTLED:
            # exception() marks a failure as seen; failed writes stay so that whoever settles raises them.
            pending[:] = [f for f in pending if not f.done() or f.cancelled() or f.exception() is not None]
        return fut

    def take_unsettled(self) -> list[asyncio.Future[Any]]:
        pending: list[asyncio.Future[Any]] = self.__dict__.setdefault("_yuqing_unsettled", [])
        taken = list(pending)
        pending.clear()
        return taken


async def _settled(writes: list[asyncio.Future[Any]], seconds: float = _SETTLE_TIMEOUT_SECONDS) -> None:
    """Wait until the broker acknowledged every write; RetryLater if it failed one or took over `seconds`."""
    if not writes:
        return
    try:
        await asyncio.wait_for(asyncio.gather(*writes), seconds)
    except TimeoutError:
        raise RetryLater(f"table writes not acknowledged by Kafka within {seconds:.0f} s") from None
    except KafkaError as exc:
        raise RetryLater(f"a table write failed: {type(exc).__name__}: {exc}") from exc


async def _in_turn(acks: list[Callable[[], Awaitable[Any]]]) -> None:
    for ack in acks:
        await ack()


async def _nothing_to_ack() -> None:
    """A hold that only carries the acks owed to it."""


_GAP_READ_SECONDS = 30.0  # a read that gets nothing for this long is retried (RetryLater)
_GAP_READ_RECORDS = 1000  # records read and processed per round


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
        self.monotonic: Callable[[], float] = time.monotonic  # and this
        self.registry.register(_Collector(self._lag))
        (settings.data_dir / service).mkdir(parents=True, exist_ok=True)
        self.journal = CrashJournal(settings.data_dir / service / "journal")
        read_unreadable_records()
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
            Table=SettledTable,
        )
        self.dead_letter_topic = self.raw_topic(self.topics.dead_letter)
        # Created with the other topics (ensure_topics), co-partitioned with the service's inputs.
        self.ticks_name = f"{settings.topic_prefix}{service}.ticks"
        self.ticks_topic = self.raw_topic(self.ticks_name)
        self._lag_rows: dict[tuple[str, int], int] = {}
        self.stall = StallWatch(settings.stall_seconds)
        self._install_pages()

        self._lag_measured: tuple[float, frozenset[Any]] = (0.0, frozenset())
        # (ack, writes, where): acked in order, each once the writes of its processing are acknowledged.
        self._held: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], list[asyncio.Future[Any]], str]] = (
            asyncio.Queue()
        )
        self.sequence = InputSequence()
        self.gaps = Counter(
            "yuqing_input_gap_records_total",
            "Input records faust dropped as the worker was assigned its partitions: read directly from Kafka "
            "and processed in their turn (read), or deleted by retention before that (expired).",
            ["service", "outcome"],
            registry=self.registry,
        )
        self._patience = 5.0  # see every()
        # Acks of records read around faust (_catch_up), owed until the hold that follows them.
        self._owed: list[Callable[[], Awaitable[Any]]] = []

        @self.app.task
        async def _ack_settled() -> None:
            # One task, in order: an input is acked once the writes its processing made are acknowledged.
            while True:
                ack, writes, where = await self._held.get()
                try:
                    await _settled(writes, seconds=_SETTLE_TIMEOUT_SECONDS * 10)
                except RetryLater as exc:
                    # Never acked: the offset is not committed and a replacement processes the input again.
                    log.error("table writes of %s were not acknowledged, stopping: %s", where, exc)
                    await self.app.crash(exc)
                    return
                await ack()

        # A task, not a timer, so the first measurement comes as soon as the worker is ready; then every
        # 10 s, or at once when the assignment changed (the restart tests wait for a worker's lag), and every
        # second while an assigned input partition has no row yet: its end offset is known only once it is
        # fetched, after its tables are recovered, and a partition taken over from a dead worker should show
        # when that happens, not up to 10 s later (the scale-out scenarios measure recovery by it).
        @self.app.task
        async def _measure_lag() -> None:
            while True:
                try:
                    assigned = frozenset(self.app.consumer.assignment())
                    at, before = self._lag_measured
                    unmeasured = any(
                        _is_input(tp.topic) and (tp.topic, tp.partition) not in self._lag_rows
                        for tp in assigned
                    )
                    if assigned != before or unmeasured or time.monotonic() - at >= _LAG_REFRESH_SECONDS:
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
        self._patience = seconds  # an input partition behind its end for a tick period is stalled

        @self.app.timer(seconds)
        async def _tick() -> None:
            now = datetime.now(UTC).isoformat().encode()
            for partition in range(self.settings.partitions):
                await self.ticks_topic.send(key=TICK, value=now, partition=partition)

    async def dead_letter(self, event: Any, reason: str, detail: str, value: bytes | None = None) -> None:
        """`value` replaces the event's bytes when what failed was built from it (a notifier batch)."""
        msg = event.message
        raw = value if value is not None else event.value if isinstance(event.value, bytes) else None
        stand_in = stand_in_detail(msg) if value is None else None
        if stand_in is not None:  # what the handler made of a record the client could not parse
            reason, detail = "unreadable", stand_in
        topic, partition, offset = origin_of(msg)  # no topic of a faust worker is a forwarding one
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

        An input record (not a tick) is journaled while it is handled (services/common/journal.py): one
        that killed the process twice is dead-lettered as crash_loop instead of handled a third time.
        """
        msg = event.message
        topic = msg.topic
        tick = self.is_tick(event)
        journal = None if tick else self.journal.partition(topic, msg.partition, msg.offset)

        retrying = self._retrying(_where(event))

        async def attempt() -> None:
            if journal is None:
                await self._process(event, handler)
                return
            journal.begin(msg.offset)
            try:
                await self._process(event, handler)
            finally:  # also before a retry's wait: dying while Kafka is away is not this record's doing
                journal.end()

        with self.metrics.processing.labels(self.service).time():
            if journal is not None and journal.poisoned(msg.offset):
                await retry_transient(lambda: self._crash_loop(event), retrying, self.sleep)
            else:
                await retry_transient(attempt, retrying, self.sleep)
        # Ticks are the worker's own clock, not input: counting them kept "processed" moving while no post
        # was, so a stalled pipeline never showed (and the alert on it could not fire).
        if not tick:
            self.metrics.messages.labels(self.service, topic).inc()
            self.stall.progressed()

    def _retrying(self, where: str) -> Callable[[int, float, BaseException], None]:
        def retrying(attempt: int, delay: float, exc: BaseException) -> None:
            self.metrics.retries.labels(self.service).inc()
            log.warning(
                "transient failure on %s (attempt %d), retrying in %.1fs: %s: %s",
                where,
                attempt,
                delay,
                type(exc).__name__,
                exc,
            )

        return retrying

    async def consume(self, stream: Any, handler: Callable[[Any], Awaitable[None]]) -> None:
        """A worker's agent loop: every input record processed in order, each once (`in_order`), and acked
        only once the table writes its processing made are acknowledged (`ack_when_settled`)."""
        manual = stream.noack()
        async for event in manual.events():
            if await self.in_order(event, handler):
                self.ack_when_settled(manual, event)

    async def in_order(self, event: Any, handler: Callable[[Any], Awaitable[None]]) -> bool:
        """Process `event` (guarded) after any record of its partition that faust skipped, which is read
        directly from Kafka; skip a record processed before in this assignment (services/common/sequence.py).
        A tick first catches up the input partitions it stands for whose records stopped arriving.

        False when the event must not be acked: it belongs to an assignment that has ended (fetched before
        a rebalance, or one came while records before it were being read). Its offset then stays
        uncommitted, and whoever owns the partition now reads it again."""
        msg = event.message
        generation = self.app.consumer_generation_id
        current = getattr(msg, "generation_id", None) in (None, generation)
        if self.is_tick(event):
            if current and self._on_time(msg):
                await self._catch_up_stalled(msg.partition, handler, generation)
            await self.guarded(event, handler)
            return True
        if not current:
            return False
        topic, partition, offset = msg.topic, msg.partition, msg.offset
        if not await self._started(topic, partition, generation, _where(event)):
            return False
        arrival = self.sequence.place(topic, partition, offset)
        if arrival is Arrival.again:
            log.debug("%s processed before in this assignment: skipped", _where(event))
            return True
        if arrival is Arrival.gap:
            log.warning(
                "%s[%d]: offsets %s-%d never reached %s (dropped by faust as it was assigned the partition); "
                "reading them from Kafka",
                topic,
                partition,
                self.sequence.expects(topic, partition),
                offset - 1,
                self.service,
            )
            if not await self._catch_up(topic, partition, offset, handler, generation):
                return False
        await self.guarded(event, handler)
        self.sequence.done(topic, partition, offset, generation)
        return True

    async def _started(self, topic: str, partition: int, generation: int, where: str) -> bool:
        """The partition has a position in this assignment (see _begin); False if the assignment ended."""
        self.sequence.adopt(generation)
        if self.sequence.expects(topic, partition) is None:
            tp = TopicPartition(topic, partition)
            await retry_transient(lambda: self._begin([tp]), self._retrying(where), self.sleep)
        return (
            self.app.consumer_generation_id == generation
            and self.sequence.expects(topic, partition) is not None
        )

    def _on_time(self, tick: Any) -> bool:
        """A tick handled within a tick period of being sent: the worker keeps up with its inputs, so records
        fetched before the tick have reached it. A late tick (the worker blocked on a slow channel, or
        ticks that piled up while it was down) says nothing about what faust delivers."""
        sent = getattr(tick, "timestamp", None)
        return not isinstance(sent, int | float) or time.time() - sent <= self._patience

    async def _catch_up_stalled(
        self, partition: int, handler: Callable[[Any], Awaitable[None]], generation: int
    ) -> None:
        """On a tick: an input partition of the tick's partition whose position has not moved for a tick
        period while Kafka holds records past it is caught up to the end Kafka reported.

        These are records faust dropped with nothing after them to show the gap (the last tier change or
        operator action of its partition), which would otherwise wait for the next restart. A partition
        that is merely slow costs records read twice at most: faust's copies come later and are skipped."""
        consumer = self.app.consumer
        try:
            ends = {
                (tp.topic, tp.partition): consumer.highwater(tp)
                for tp in consumer.assignment()
                if tp.partition == partition and _is_input(tp.topic)
            }
        except (ConsumerNotStarted, AssertionError):  # not started, or aiokafka's "Partition is not assigned"
            return
        for (topic, _), end in sorted(ends.items()):
            if end is None:  # never fetched: faust cannot have dropped any of it
                continue
            if not await self._started(topic, partition, generation, f"{topic}[{partition}]"):
                return
            if not self.sequence.stalled(topic, partition, end, self.monotonic(), self._patience):
                continue
            log.warning(
                "%s[%d]: offsets %s-%d not delivered to %s by faust; reading them from Kafka",
                topic,
                partition,
                self.sequence.expects(topic, partition),
                end - 1,
                self.service,
            )
            if not await self._catch_up(topic, partition, end, handler, generation):
                return
            self._hold(_nothing_to_ack, f"{topic}[{partition}] (read around faust)")

    async def _catch_up(
        self,
        topic: str,
        partition: int,
        end: int,
        handler: Callable[[Any], Awaitable[None]],
        generation: int,
    ) -> bool:
        """Read the records of `topic`[`partition`] from the next one expected up to `end` (exclusive) from
        Kafka and process each, in order, as if faust had delivered it. False if the assignment ended.

        Their acks are owed to the next hold (see _hold), not held one by one: faust may count offsets it
        dropped as a gap it commits past as soon as any offset after them is acked, so none of them is
        acked before the writes of all of them are acknowledged."""
        retrying = self._retrying(f"{topic}[{partition}] (reading records faust dropped)")
        while True:
            start = self.sequence.expects(topic, partition)
            if self.app.consumer_generation_id != generation or start is None:
                self._owed.clear()
                return False
            if start >= end:
                return True
            read = functools.partial(
                read_between,
                self.settings,
                topic,
                partition,
                start,
                end,
                limit=_GAP_READ_RECORDS,
                seconds=_GAP_READ_SECONDS,
            )
            stretch = await retry_transient(read, retrying, self.sleep)
            if stretch.expired:
                log.error(
                    "%s[%d]: offsets %d-%d were deleted by retention before %s read them: lost",
                    topic,
                    partition,
                    start,
                    start + stretch.expired - 1,
                    self.service,
                )
                self.gaps.labels(self.service, "expired").inc(stretch.expired)
            for record in stretch.records:
                if self.app.consumer_generation_id != generation:
                    self._owed.clear()
                    return False
                replayed = Replayed.of(record)
                await self.guarded(replayed, handler)
                self.sequence.done(topic, partition, record.offset, generation)
                self.gaps.labels(self.service, "read").inc()
                self._owed.append(functools.partial(self._ack_replayed, replayed.message))
            self.sequence.advance(topic, partition, stretch.next_offset, generation)

    async def _ack_replayed(self, message: Any) -> None:
        """faust never delivered this record, and commits past it only once it is acked."""
        self.app.consumer.ack(message)

    async def _begin(self, tps: list[TopicPartition]) -> None:
        """Start the position of `tps` (and of every other input partition assigned) where the group
        resumes them: its committed offset, else the log start (auto_offset_reset=earliest)."""
        with contextlib.suppress(Exception):  # the consumer thread is not running yet
            tps = tps + [
                TopicPartition(tp.topic, tp.partition)
                for tp in self.app.consumer.assignment()
                if _is_input(tp.topic)
            ]
        missing = list({tp for tp in tps if self.sequence.expects(tp.topic, tp.partition) is None})
        if not missing:
            return
        generation = self.sequence.generation
        starts = await self._resume_offsets(missing)
        if self.sequence.generation == generation:
            for (topic, partition), offset in starts.items():
                self.sequence.begin(topic, partition, offset)

    async def _resume_offsets(self, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap, **client_kwargs(self.settings)
        )
        try:
            await admin.start()
            answer = await admin.list_consumer_group_offsets(self.app.conf.id, partitions=tps)
        finally:
            await admin.close()
        out: dict[tuple[str, int], int] = {}
        fresh = []
        for tp in tps:
            meta = answer.get(tp)
            if meta is not None and meta.offset >= 0:
                out[tp.topic, tp.partition] = int(meta.offset)
            else:
                fresh.append(tp)
        if fresh:
            for tp, start in (await log_starts(self.settings, fresh)).items():
                out[tp.topic, tp.partition] = start
        return out

    def handled(self, event: Any) -> None:
        """The part of handling that belongs to this record is over (the notifier then sends alerts that
        were due anyway): a death from here on does not count against the record."""
        journal = self.journal.get(event.message.topic, event.message.partition)
        if journal is not None:
            journal.end()

    async def _crash_loop(self, event: Any) -> None:
        msg = event.message
        log.error(
            "%s[%s]@%s killed %s twice: dead-lettered as crash_loop and skipped",
            msg.topic,
            msg.partition,
            msg.offset,
            self.service,
        )
        await self.dead_letter(
            event,
            "crash_loop",
            f"{self.service} died twice while handling this record; skipped so that its partition moves on",
        )

    async def _process(self, event: Any, handler: Callable[[Any], Awaitable[None]]) -> None:
        try:
            await handler(event)
        except DeadLetter as exc:
            reason, detail = exc.reason, exc.detail
        except Exception as exc:
            if is_transient(exc):
                raise
            log.exception(
                "processing failed for %s[%s]@%s",
                event.message.topic,
                event.message.partition,
                event.message.offset,
            )
            reason, detail = "processing_error", f"{type(exc).__name__}: {exc}"
        else:
            return
        await self.dead_letter(event, reason, detail)

    def home_partition(self, key: str) -> int:
        return home_partition(key, self.settings.partitions)

    def _take_unsettled(self) -> list[asyncio.Future[Any]]:
        tables = [t for t in self.app.tables.values() if isinstance(t, SettledTable)]
        return [w for t in tables for w in t.take_unsettled()]

    async def settle(self) -> None:
        """Return once Kafka has acknowledged every table write made so far (RetryLater if it does not)."""
        await _settled(self._take_unsettled())

    def ack_when_settled(self, stream: Any, event: Any) -> None:
        """Ack `event` (read from a `stream.noack()` stream) once the table writes made while processing it
        are acknowledged, without waiting here: faust commits acked offsets only, so an offset is never
        committed before the state that covers it is durable, however faust's own flush behaves."""
        self._hold(lambda: stream.ack(event), _where(event))

    def _hold(self, ack: Callable[[], Awaitable[Any]], where: str) -> None:
        owed, self._owed = self._owed, []
        if owed:
            owed.append(ack)
            ack = functools.partial(_in_turn, owed)
        self._held.put_nowait((ack, self._take_unsettled(), where))

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

    def is_tick(self, event: Any) -> bool:
        """A tick is whatever arrives on the worker's own ticks topic: a message elsewhere keyed like one is
        input like any other, not a way to make the worker skip it."""
        return bool(event.message.topic == self.ticks_name)

    async def send_model(self, topic: Any, key: str, model: BaseModel) -> None:
        await topic.send(key=key.encode(), value=json.dumps(model))
