"""The sink: keyword hits, tier changes and incident events from Kafka into the desk's store, each row once.

One replica writes at a time (`Store.acquire_writer`: a PostgreSQL advisory lock held by the connection that
writes; docs/store.md says why not a consumer group). The writer assigns itself every partition, seeks each
to the offset stored with the rows, and stores every batch's rows and next offsets in one transaction: a crash
between two batches re-reads only what was not stored, and a replay changes nothing (rows are upserted by
event id). A record that does not decode, or that the store refuses, goes to the dead-letter topic with its
reason. When the store or Kafka goes away the sink lets go of the lease, waits, and starts again from the
stored offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel

from schemas.events import IncidentEvent, KeywordHit, TierChange
from schemas.topics import Topics
from services.common import json
from services.common.exceptions import DeadLetter, KafkaSetupError
from services.common.kafka import ensure_topics
from services.common.kafka_security import client_kwargs
from services.common.metrics import CommonMetrics
from services.common.stream import dead_letter_record, decode
from services.common.unreadable import install as read_unreadable_records
from services.common.unreadable import stand_in_detail
from services.desk.exceptions import StoreRejected, StoreUnavailable
from services.desk.settings import DeskSettings
from services.desk.store import Event, Store, WriterLease

__all__ = ["Sink", "SinkMetrics"]

log = logging.getLogger(__name__)
_SERVICE = "desk"


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.common = CommonMetrics(registry, _SERVICE)
        self.stored = Counter(
            "yuqing_desk_stored_events_total",
            "Events the sink stored for the first time (a replayed one is not counted again).",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "yuqing_desk_sink_batch_seconds",
            "Time to store one batch (rows and offsets in one transaction).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.writer = Gauge(
            "yuqing_desk_sink_writer",
            "1 while this replica holds the store's writer lease.",
            registry=registry,
        )
        self.store_unavailable = Counter(
            "yuqing_desk_store_unavailable_total",
            "Times the sink found the store or Kafka unavailable and started again from the stored offsets.",
            registry=registry,
        )
        self.skipped = Counter(
            "yuqing_desk_sink_skipped_records_total",
            "Records Kafka deleted (retention) before the sink stored them, per input topic.",
            ["topic"],
            registry=registry,
        )


class Sink:
    def __init__(
        self,
        settings: DeskSettings,
        store: Store,
        metrics: SinkMetrics,
        stored: Callable[[], None],
        *,
        retry_seconds: float = 2.0,
        standby_seconds: float = 5.0,
        batch: int = 2000,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.stored = stored  # called after each batch: the read model takes the new rows in
        self.retry_seconds = retry_seconds
        self.standby_seconds = standby_seconds
        self.batch = batch
        topics = Topics.with_prefix(settings.topic_prefix)
        self.kinds: dict[str, type[BaseModel]] = {
            topics.keyword_hits: KeywordHit,
            topics.tier_changes: TierChange,
            topics.incidents: IncidentEvent,
        }
        self.dead_letter_topic = topics.dead_letter
        self.writing = False
        self.standby = asyncio.Event()  # set once another replica was found writing

    async def run(self, caught_up: asyncio.Event) -> None:
        """Write until cancelled; `caught_up` is set once the stored offsets reach where the topics ended
        when the sink first read them (or at once on a standby replica: the writer keeps the store)."""
        read_unreadable_records()
        while True:
            lease = await self._lease(caught_up)
            self.writing = True
            self.metrics.writer.set(1)
            try:
                await self._consume(lease, caught_up)
            except (StoreUnavailable, KafkaError, KafkaSetupError, OSError) as exc:
                self.metrics.store_unavailable.inc()
                log.warning("sink stopped, starting again from the stored offsets: %s", exc)
            except Exception:  # a bug must not stop the sink for good: it starts again from what is stored
                log.exception("sink failed, starting again from the stored offsets")
            finally:
                self.writing = False
                self.metrics.writer.set(0)
                await asyncio.to_thread(lease.close)
            await asyncio.sleep(self.retry_seconds)

    async def _lease(self, caught_up: asyncio.Event) -> WriterLease:
        while True:
            try:
                lease = await asyncio.to_thread(self.store.acquire_writer)
            except StoreUnavailable as exc:
                log.warning("store unavailable, retrying in %.0fs: %s", self.retry_seconds, exc)
                await asyncio.sleep(self.retry_seconds)
                continue
            if lease is not None:
                return lease
            # Another replica writes; this one serves from the store and stands by to take over.
            self.standby.set()
            caught_up.set()
            await asyncio.sleep(self.standby_seconds)

    async def _consume(self, lease: WriterLease, caught_up: asyncio.Event) -> None:
        await ensure_topics(self.settings, retries=1)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **client_kwargs(self.settings),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            **client_kwargs(self.settings),
        )
        await consumer.start()
        try:
            await producer.start()
            targets = await self._seek(consumer, producer, lease)
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=self.batch)
                if batch:
                    await self._store(batch, lease, producer)
                if not caught_up.is_set():
                    positions = {tp: await consumer.position(tp) for tp in targets}
                    if all(positions[tp] >= end for tp, end in targets.items()):
                        caught_up.set()
        finally:
            await producer.stop()
            await consumer.stop()

    async def _seek(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, lease: WriterLease
    ) -> dict[TopicPartition, int]:
        """Assign every partition and seek each to its stored offset; returns the end offsets now."""
        cluster = await producer.client.fetch_all_metadata()
        partitions: list[TopicPartition] = []
        for topic in self.kinds:
            found = cluster.partitions_for_topic(topic)
            if not found:
                raise KafkaSetupError(f"topic {topic} has no partitions in the cluster's metadata yet")
            partitions.extend(TopicPartition(topic, p) for p in sorted(found))
        consumer.assign(partitions)
        stored = await asyncio.to_thread(self.store.stored_offsets, lease.conn)
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            at = stored.get((tp.topic, tp.partition))
            if at is None:
                consumer.seek(tp, begins[tp])
            elif at > ends[tp]:
                # The stored offset is beyond the end: the topic was deleted and made anew. Its records are
                # new ones; the rows already stored stay (ids are content-derived, so a re-sent event dedups).
                log.warning(
                    "%s[%d] ends at %d, before the stored %d: topic recreated, reading it from its start",
                    tp.topic,
                    tp.partition,
                    ends[tp],
                    at,
                )
                consumer.seek(tp, begins[tp])
            elif at < begins[tp]:
                self.metrics.skipped.labels(tp.topic).inc(begins[tp] - at)
                log.error(
                    "%s[%d]: records %d..%d were deleted by retention before the desk stored them",
                    tp.topic,
                    tp.partition,
                    at,
                    begins[tp] - 1,
                )
                consumer.seek(tp, begins[tp])
            else:
                consumer.seek(tp, at)
        return ends

    async def _store(
        self, batch: dict[TopicPartition, list[Any]], lease: WriterLease, producer: AIOKafkaProducer
    ) -> None:
        started = time.perf_counter()
        events: list[tuple[Any, Event]] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp, records in batch.items():
            for record in records:
                offsets[(tp.topic, tp.partition)] = record.offset + 1
                try:
                    events.append((record, self._decode(record)))
                except DeadLetter as exc:
                    await self._dead_letter(producer, record, exc.reason, exc.detail)
        try:
            new = await asyncio.to_thread(self.store.write, [e for _, e in events], offsets, lease)
        except StoreRejected:
            new = await self._one_by_one(events, offsets, lease, producer)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        for record, _ in events:
            self.metrics.common.messages.labels(_SERVICE, record.topic).inc()
        if new:
            self.metrics.stored.inc(new)
        self.stored()

    async def _one_by_one(
        self,
        events: list[tuple[Any, Event]],
        offsets: dict[tuple[str, int], int],
        lease: WriterLease,
        producer: AIOKafkaProducer,
    ) -> int:
        """A batch the store refused: each event alone, the refused ones to the dead-letter topic, then the
        offsets (a crash in between stores the same events again, which changes nothing)."""
        new = 0
        for record, event in events:
            try:
                new += await asyncio.to_thread(self.store.write, [event], None, lease)
            except StoreRejected as exc:
                await self._dead_letter(producer, record, "processing_error", f"the store refused it: {exc}")
        await asyncio.to_thread(self.store.write, [], offsets, lease)
        return new

    def _decode(self, record: Any) -> Event:
        detail = stand_in_detail(record)
        if detail is not None:
            raise DeadLetter("unreadable", detail)
        event: Event = decode(self.kinds[record.topic], record.value)  # type: ignore[assignment]
        return event

    async def _dead_letter(self, producer: AIOKafkaProducer, record: Any, reason: str, detail: str) -> None:
        value = dead_letter_record(
            _SERVICE, record.topic, record.partition, record.offset, record.key, record.value, reason, detail
        )
        # Keyed by the source topic, as the faust workers key theirs (services/common/stream.py).
        await producer.send_and_wait(
            self.dead_letter_topic, key=record.topic.encode(), value=json.dumps(value)
        )
        self.metrics.common.dead_letters.labels(_SERVICE, reason).inc()
        log.warning(
            "dead letter from %s[%s]@%s: %s %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            detail[:300],
        )
