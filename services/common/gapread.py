"""Input records read directly from Kafka, around faust: the ones a worker's stream never delivered.

See services/common/sequence.py for why. A short-lived consumer without a group is assigned the one
partition and reads a bounded stretch of it; nothing is committed here (the worker acks what it processed,
in order, through faust).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from faust.types.tuples import Message

from services.common.exceptions import RetryLater
from services.common.kafka_security import client_kwargs
from services.common.settings import CommonSettings

__all__ = ["Replayed", "Stretch", "log_starts", "read_between"]

_POLL_MS = 500


@dataclass(frozen=True)
class Replayed:
    """A record read around faust, shaped as the faust event a handler and the dead-letter path expect."""

    message: Any
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> Replayed:
        message = Message(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp / 1000.0,
            timestamp_type=record.timestamp_type,
            headers=list(record.headers or ()),
            key=record.key,
            value=record.value,
            checksum=None,
        )
        return cls(message, record.key, record.value)


@dataclass
class Stretch:
    """What one read found between two offsets."""

    records: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    next_offset: int = 0  # where to go on from: past the last record read, or past offsets without one
    expired: int = 0  # offsets at the start deleted by retention before anyone read them


async def read_between(
    settings: CommonSettings, topic: str, partition: int, start: int, end: int, *, limit: int, seconds: float
) -> Stretch:
    """The records of `topic`[`partition`] from `start` up to `end` (exclusive), at most `limit` of them.

    Offsets without a record (compaction, transaction markers) are passed over by position, so a stretch
    ending in one still ends. RetryLater when Kafka gives nothing for `seconds`: the caller retries, and the
    partition waits (it shows as lag and a stalled pipeline) rather than going on without the records."""
    tp = TopicPartition(topic, partition)
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=int(seconds * 1000),
        **client_kwargs(settings),
    )
    try:
        await consumer.start()
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        begin = max(start, first)
        out = Stretch(next_offset=begin, expired=min(end, begin) - start)
        if begin >= end:
            out.next_offset = end
            return out
        consumer.seek(tp, begin)
        deadline = time.monotonic() + seconds
        while out.next_offset < end and len(out.records) < limit:
            if time.monotonic() > deadline:
                missing = f"offsets {out.next_offset}-{end - 1}"
                raise RetryLater(f"{topic}[{partition}]: {missing} not read within {seconds:.0f} s")
            fetched = await consumer.getmany(tp, timeout_ms=_POLL_MS, max_records=limit - len(out.records))
            out.records.extend(r for r in fetched.get(tp, ()) if r.offset < end)
            out.next_offset = min(end, await consumer.position(tp))
        return out
    finally:
        await consumer.stop()


async def log_starts(settings: CommonSettings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The first offset still in the log of each partition: where a group without a committed offset
    begins (auto_offset_reset=earliest)."""
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, **client_kwargs(settings)
    )
    try:
        await consumer.start()
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    return {tp: int(offset) for tp, offset in starts.items()}
