"""The consume loop of the batch runtime: fetch, handle, checkpoint, with per-partition state restored first.

Why not faust for this stage: faust spends about 100 µs of framework time on every event it hands an agent
(measured on this project's machine kind: an agent that does nothing tops out near 10,000 events/s, one that
forwards each event near 5,000/s), while a plain aiokafka consume->produce loop moves 60,000+ messages/s.
Scoring handles every post, so it runs here; the other workers keep faust (docs/benchmarks.md).

The model is faust's own, made explicit and batched:
- all input topics have the same partition count and the range assignor gives a worker the same partition
  numbers of each, so "partition p" is one unit of ownership (inputs, state and changelog partition p);
- state is a set of tables per partition (tables.py), written through to a compacted changelog topic per
  table (`{group_id}-{table}-changelog`, faust's naming, JSON rows), restored before a partition is
  processed;
- a batch of records is handled (handlers are plain functions), then committed in the steps of
  checkpoint.py: output, then changed rows, then offsets. That checkpoint runs while the next batch is
  handled, and checkpoints run in order;
- a record that kills the process twice is dead-lettered as crash_loop (services/common/journal.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from services.common import json
from services.common.exceptions import DeadLetter, KafkaSetupError, StateRowError
from services.common.journal import CrashJournal, PartitionJournal
from services.common.kafka import ensure_changelogs
from services.common.kafka_security import client_kwargs
from services.common.metrics import CommonMetrics, observe_many
from services.common.partitioned.checkpoint import Checkpoint, Checkpointer, Record
from services.common.partitioned.tables import Table
from services.common.settings import CommonSettings
from services.common.stall import StallWatch
from services.common.stream import dead_letter_record, lag_rows, origin_of
from services.common.unreadable import install as read_unreadable_records
from services.common.unreadable import stand_in_detail

__all__ = ["Batch", "PartitionedWorker"]

log = logging.getLogger(__name__)

_MAX_RECORDS = 2000
_YIELD_EVERY = 50
_FETCH_WAIT_MS = 20


@dataclass
class Batch:
    """What a handler sees: the partition it works on, that partition's tables and an outbox."""

    partition: int
    tables: dict[str, Table[Any]]
    out: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = field(default_factory=list)

    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        self.out.append((topic, key, value, headers))


Handler = Callable[[Any, Batch], None]  # (aiokafka ConsumerRecord, batch); raise DeadLetter to refuse one


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: PartitionedWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.worker._revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker._assigned({tp.partition for tp in assigned})


class PartitionedWorker:
    """Runs `handlers` (one per input topic) over batches, and `tick` per owned partition every
    `tick_seconds` (with tables, so that time-driven decisions are saved like any other).

    `tables` makes each table of a partition, empty, by name. `forwarded` names the input topics the service
    writes to itself with a yuqing-origin header (the only ones where that header is believed:
    stream.origin_of)."""

    def __init__(
        self,
        service: str,
        settings: CommonSettings,
        handlers: dict[str, Handler],
        tables: Mapping[str, Callable[[], Table[Any]]],
        metrics: CommonMetrics,
        dead_letter_topic: str,
        tick: Callable[[Batch], None] | None = None,
        tick_seconds: float = 30.0,
        forwarded: Collection[str] = (),
    ) -> None:
        self.service = service
        self.settings = settings
        self.handlers = handlers
        self.tables = dict(tables)
        self.metrics = metrics
        self.dead_letter_topic = dead_letter_topic
        self.tick = tick
        self.tick_seconds = tick_seconds
        self.forwarded = frozenset(forwarded)
        self.journal = CrashJournal(settings.data_dir / service / "journal")
        read_unreadable_records()
        self.group_id = f"{settings.topic_prefix}{service}"
        self.changelogs = {name: f"{self.group_id}-{name}-changelog" for name in tables}
        self.state: dict[int, dict[str, Table[Any]]] = {}
        self.stall = StallWatch(settings.stall_seconds)
        self.lag: dict[tuple[str, int], int] = {}
        self.settled = False  # False while joining, rebalancing or restoring: table reads may be partial
        self.checkpointer = Checkpointer(
            service, lambda: self.producer, lambda: self.consumer, metrics, on_retry=self._kafka_failing
        )
        self._lock = asyncio.Lock()
        self._checkpointing: asyncio.Future[None] | None = None
        self._failure: Exception | None = None
        self._done: dict[TopicPartition, int] = {}  # next offset to process, per input partition
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    # -- ownership ------------------------------------------------------------------------------------

    def owned_partitions(self) -> set[int] | None:
        return set(self.state) if self.settled else None

    def merged(self, table: str) -> dict[str, Any]:
        """Every owned partition's rows of `table` (for metrics and read-only views)."""
        out: dict[str, Any] = {}
        for tables in list(self.state.values()):
            out.update(tables[table].items())
        return out

    async def _revoked(self, partitions: set[int]) -> None:
        self.settled = False
        async with self._lock:  # the batch being handled finishes, is produced and committed first
            try:
                await self._settle()
            except Exception as exc:  # raised in the loop, not lost inside aiokafka's rebalance callback
                self._failure = exc
            for p in partitions:
                self.state.pop(p, None)
            self.journal.forget(partitions)
            self._done = {tp: o for tp, o in self._done.items() if tp.partition not in partitions}
            self.lag = {k: v for k, v in self.lag.items() if k[1] not in partitions}

    async def _assigned(self, partitions: set[int]) -> None:
        async with self._lock:
            for p in set(self.state) - partitions:
                self.state.pop(p)
            new = sorted(partitions - set(self.state))
            if new:
                started = time.monotonic()
                restored = await self._restore(new)
                log.info(
                    "%s: restored partitions %s (%d rows) in %.1fs",
                    self.service,
                    new,
                    restored,
                    time.monotonic() - started,
                )
            self.settled = True

    async def _restore(self, partitions: list[int]) -> int:
        """Rebuild the tables of `partitions` from their changelogs, read from the start to their end."""
        tps = {
            TopicPartition(topic, p): (name, p) for name, topic in self.changelogs.items() for p in partitions
        }
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            **client_kwargs(self.settings),
        )
        await reader.start()
        rows_of: dict[int, dict[str, dict[str, bytes]]] = {
            p: {name: {} for name in self.tables} for p in partitions
        }
        restored = 0
        try:
            reader.assign(list(tps))
            ends = await reader.end_offsets(list(tps))
            pending = {tp for tp, end in ends.items() if end > 0}
            await reader.seek_to_beginning(*pending)
            while pending:
                fetched = await reader.getmany(*pending, timeout_ms=1000)
                for tp, records in fetched.items():
                    name, p = tps[tp]
                    data = rows_of[p][name]
                    for r in records:
                        key = json.loads(r.key)
                        if r.value is None:
                            data.pop(key, None)
                        else:
                            data[key] = r.value
                        restored += 1
                # By position, not by the last record's offset: compaction can remove the records just
                # before the end (an old tombstone), and the end would then never be seen.
                for tp in list(pending):
                    if await reader.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await reader.stop()
        for p, names in rows_of.items():
            tables = {}
            for name, rows in names.items():
                table = tables[name] = self.tables[name]()
                try:
                    table.restore(rows)
                except StateRowError as exc:
                    raise StateRowError(f"{self.changelogs[name]}[{p}]: {exc}") from None
            self.state[p] = tables
        return restored

    # -- the loop -------------------------------------------------------------------------------------

    async def ensure_changelogs(self) -> None:
        """Compacted changelog topics, one per table, partitioned like the inputs."""
        counts = await ensure_changelogs(self.settings, self.changelogs.values(), also=self.handlers)
        if len(set(counts.values())) != 1:
            raise KafkaSetupError(
                f"{self.service} needs its input and changelog topics to have the same partition count "
                f"(partition p of each is processed together): {counts}"
            )

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_changelogs()
        s = self.settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            **client_kwargs(s),
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=int(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_seconds * 1000),
            rebalance_timeout_ms=int(max(s.session_timeout_seconds * 2, 10.0) * 1000),
            max_partition_fetch_bytes=4 << 20,
            # One fetch per broker is in flight at a time. The default long poll (500 ms) on an input that is
            # momentarily empty (keyword-hits, fed by this very worker) held back posts.raw behind it.
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            **client_kwargs(s),
        )
        await self._producer.start()
        try:
            await self._consumer.start()
            try:
                self._consumer.subscribe(list(self.handlers), listener=_Listener(self))
                await self._loop(stop)
            finally:
                self.settled = False
                await self._consumer.stop()  # leaves the group: partitions move at once, not after a timeout
        finally:
            await self._producer.stop()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"{self.service} is not running")
        return self._consumer

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"{self.service} is not running")
        return self._producer

    async def _loop(self, stop: asyncio.Event) -> None:
        """Fetch, handle, and hand the batch to a checkpoint that runs while the next batch is handled
        (checkpoints run one after another, in order; a batch is handled against the state its predecessors
        left in memory, so overlapping changes nothing but the idle time spent waiting for acks)."""
        last_tick = time.monotonic()
        last_lag = 0.0
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if self._failure is not None:
                    raise self._failure
                fetch = asyncio.ensure_future(self.consumer.getmany(timeout_ms=500, max_records=_MAX_RECORDS))
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetch
                    break
                records = fetch.result()
                async with self._lock:
                    batches = await self._handle(records)
                    if self.tick is not None and time.monotonic() - last_tick >= self.tick_seconds:
                        last_tick = time.monotonic()
                        batches.update(self._ticks(batches, self.tick))
                    if batches:
                        checkpoint = self._checkpoint(batches, records)
                        await self._settle()  # the previous checkpoint, which this one must follow
                        self._checkpointing = asyncio.ensure_future(self._commit(checkpoint))
                if time.monotonic() - last_lag >= 1.0:
                    last_lag = time.monotonic()
                    await self._measure_lag()
        finally:
            stopping.cancel()
            await self._settle()

    async def _settle(self) -> None:
        """Wait for the checkpoint in flight; its failure (a CheckpointError) stops the worker."""
        running, self._checkpointing = self._checkpointing, None
        if running is not None:
            await running

    def _batch(self, batches: dict[int, Batch], partition: int) -> Batch:
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = Batch(partition, self.state[partition])
        return batch

    async def _handle(self, records: dict[TopicPartition, list[Any]]) -> dict[int, Batch]:
        """Run the handlers over a fetch. Every few records the event loop gets a turn: the previous batch's
        checkpoint, the next fetch and /healthz make progress while this one is handled (measured: without it
        the worker waited on acks and fetches a fifth of the time)."""
        batches: dict[int, Batch] = {}
        took: list[float] = []
        for tp, messages in records.items():
            if tp.partition not in self.state or not messages:
                continue  # revoked while the fetch was returning: its next owner processes it
            batch = self._batch(batches, tp.partition)
            handler = self.handlers[tp.topic]
            journal = self.journal.partition(tp.topic, tp.partition, messages[0].offset)
            if journal.suspects(messages[0].offset):
                await self._handle_suspects(tp, messages, batch, handler, journal, took)
            else:
                journal.batch(messages[-1].offset)  # once per fetch: no write per record on the hot path
                for n, record in enumerate(messages, 1):
                    if n % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                    started = time.perf_counter()
                    try:  # _handle_one inlined: a call more per post is measurable here
                        handler(record, batch)
                    except Exception as exc:
                        self._refuse(batch, record, exc)
                    took.append(time.perf_counter() - started)
            self.metrics.messages.labels(self.service, tp.topic).inc(len(messages))
        observe_many(self.metrics.processing.labels(self.service), took)
        if batches:
            self.stall.progressed()
        return batches

    def _handle_one(self, handler: Handler, record: Any, batch: Batch) -> None:
        try:
            handler(record, batch)
        except Exception as exc:
            self._refuse(batch, record, exc)

    def _refuse(self, batch: Batch, record: Any, exc: Exception) -> None:
        """Dead-letter a record its handler raised on (called in the except block: logs the traceback)."""
        if isinstance(exc, DeadLetter):
            self._dead_letter(batch, record, exc.reason, exc.detail)
            return
        log.exception("processing failed for %s[%s]@%s", record.topic, record.partition, record.offset)
        self._dead_letter(batch, record, "processing_error", f"{type(exc).__name__}: {exc}")

    async def _handle_suspects(
        self,
        tp: TopicPartition,
        messages: list[Any],
        batch: Batch,
        handler: Handler,
        journal: PartitionJournal,
        took: list[float],
    ) -> None:
        """After the process died on this partition: records it may have died on are handled one at a time
        with their offset journaled, and one it died on twice is dead-lettered instead (crash_loop)."""
        as_run = False
        for n, record in enumerate(messages, 1):
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            started = time.perf_counter()
            if journal.poisoned(record.offset):
                log.error(
                    "%s[%s]@%s killed %s twice: dead-lettered as crash_loop and skipped",
                    tp.topic,
                    tp.partition,
                    record.offset,
                    self.service,
                )
                self._dead_letter(
                    batch,
                    record,
                    "crash_loop",
                    f"{self.service} died twice while handling this record; skipped so that its partition "
                    "moves on",
                )
            elif journal.suspect(record.offset):
                journal.begin(record.offset)
                try:
                    self._handle_one(handler, record, batch)
                finally:
                    journal.end()
            else:
                if not as_run:
                    journal.batch(messages[-1].offset)
                    as_run = True
                self._handle_one(handler, record, batch)
            took.append(time.perf_counter() - started)

    def _ticks(self, batches: dict[int, Batch], tick: Callable[[Batch], None]) -> dict[int, Batch]:
        for partition in list(self.state):
            batch = self._batch(batches, partition)
            try:
                tick(batch)
            except Exception:
                log.exception("%s: tick failed on partition %d", self.service, partition)
        return batches

    def _dead_letter(self, batch: Batch, record: Any, reason: str, detail: str) -> None:
        stand_in = stand_in_detail(record)
        if stand_in is not None:  # what the handler made of a record the client could not parse
            reason, detail = "unreadable", stand_in
        topic, partition, offset = origin_of(record, self.forwarded)
        value = dead_letter_record(
            self.service, topic, partition, offset, record.key, record.value, reason, detail
        )
        self.metrics.dead_letters.labels(self.service, reason).inc()
        log.warning("dead letter from %s[%s]@%s: %s %s", topic, partition, offset, reason, detail[:300])
        batch.send(self.dead_letter_topic, topic.encode(), json.dumps(value))

    def _checkpoint(self, batches: dict[int, Batch], records: dict[TopicPartition, list[Any]]) -> Checkpoint:
        """The batch's output, changed table rows (encoded now: the next batch changes the same tables) and
        the input offsets to commit after both."""
        outputs: list[Record] = [
            (topic, None, key, value, headers)
            for b in batches.values()
            for topic, key, value, headers in b.out
        ]
        changes: list[Record] = []
        for partition, batch in batches.items():
            for name, table in batch.tables.items():
                topic = self.changelogs[name]
                for key, value in table.take_changes():
                    changes.append((topic, partition, json.dumps(key), value, None))
        offsets = {
            tp: msgs[-1].offset + 1 for tp, msgs in records.items() if msgs and tp.partition in self.state
        }
        return Checkpoint(outputs, changes, offsets)

    async def _commit(self, checkpoint: Checkpoint) -> None:
        if await self.checkpointer.commit(checkpoint):
            self._done.update(checkpoint.offsets)

    def _kafka_failing(self) -> None:
        self.lag = {}  # Kafka is failing, not this worker: no stall verdict from stale lag

    async def _measure_lag(self) -> None:
        """Lag per assigned input partition (stream.lag_rows): its end offset minus the next offset to
        process, which is this worker's last commit, else the group's, else the log start."""
        consumer = self._consumer
        if consumer is None or not self.settled:
            return
        try:
            ends = {tp: end for tp in consumer.assignment() if (end := consumer.highwater(tp)) is not None}
            for tp in [tp for tp in ends if tp not in self._done]:
                committed = await consumer.committed(tp)
                if committed is not None:
                    # A commit may have landed while we asked: never go back behind it.
                    self._done.setdefault(tp, committed)
            fresh = [tp for tp in ends if tp not in self._done]
            starts = await consumer.beginning_offsets(fresh) if fresh else {}
            rows = lag_rows(
                [(tp.topic, tp.partition) for tp in ends],
                {(tp.topic, tp.partition): end for tp, end in ends.items()},
                {(tp.topic, tp.partition): done for tp, done in self._done.items()},
                {(tp.topic, tp.partition): start for tp, start in starts.items()},
            )
            for tp, start in starts.items():
                self._done.setdefault(tp, start)
        except Exception as exc:  # unreachable cluster, mid-rebalance: no figure rather than a stale one
            log.debug("lag not measured: %s", exc)
            rows = {}
        self.lag = rows
