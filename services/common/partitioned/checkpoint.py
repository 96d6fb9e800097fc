"""A batch's checkpoint: its output, then the state it changed, then its input offsets, in numbered steps.

1. produce outputs: every record the handlers sent, queued on the producer, one record batch per partition;
2. flush outputs: wait until the broker has acknowledged each of them;
3. write state: the changed table rows to their changelogs (one record per changed key), acknowledged too;
4. commit offsets: the input offsets after the batch.

Quix Streams' checkpointing/checkpoint.py commits in the same order. A transient Kafka error repeats steps 1-2
(or step 3) whole, which downstream tolerates (event ids are deterministic); any other error raises the
step's own exception (services.common.exceptions) and stops the worker. Its successor replays from the last
commit against the state written so far, so outputs may repeat, and state never runs ahead of the output it
follows from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.partitioner import DefaultPartitioner

from services.common.exceptions import (
    CheckpointError,
    OffsetsNotCommitted,
    OutputsNotFlushed,
    OutputsNotProduced,
    StateNotWritten,
)
from services.common.metrics import CommonMetrics
from services.common.stream import is_transient, retry_transient

__all__ = ["Checkpoint", "Checkpointer", "Record"]

log = logging.getLogger(__name__)

_PARTITIONER = DefaultPartitioner()

# (topic, partition or None for the key's partition, key, value or None for a tombstone, headers)
Record = tuple[str, int | None, bytes | None, bytes | None, list[tuple[str, bytes]] | None]

_Step = tuple[type[CheckpointError], str]
_PRODUCE_OUTPUTS: _Step = (OutputsNotProduced, "1 (produce outputs)")
_FLUSH_OUTPUTS: _Step = (OutputsNotFlushed, "2 (flush outputs)")
_WRITE_STATE: _Step = (StateNotWritten, "3 (write state)")
_COMMIT_OFFSETS: _Step = (OffsetsNotCommitted, "4 (commit offsets)")


@dataclass(frozen=True)
class Checkpoint:
    """What one handled batch leaves behind: output records, changed table rows (already encoded: the next
    batch changes the same tables) and the input offsets to commit after both."""

    outputs: list[Record]
    changes: list[Record]
    offsets: dict[TopicPartition, int]


class Checkpointer:
    """Runs checkpoints against the worker's producer and consumer (looked up when a checkpoint runs)."""

    def __init__(
        self,
        service: str,
        producer: Callable[[], AIOKafkaProducer],
        consumer: Callable[[], AIOKafkaConsumer],
        metrics: CommonMetrics,
        on_retry: Callable[[], None],
    ) -> None:
        self.service = service
        self._producer = producer
        self._consumer = consumer
        self._metrics = metrics
        self._on_retry = on_retry
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests replace it: no real waits

    async def commit(self, checkpoint: Checkpoint) -> bool:
        """Steps 1-4; False when Kafka refused the commit because the group had moved the partitions on (their
        new owner replays from the last commit)."""
        await self._deliver(checkpoint.outputs, _PRODUCE_OUTPUTS, _FLUSH_OUTPUTS)
        await self._deliver(checkpoint.changes, _WRITE_STATE, _WRITE_STATE)
        if not checkpoint.offsets:
            return True
        try:
            await self._consumer().commit(checkpoint.offsets)
        except CommitFailedError as exc:
            log.warning("%s: commit refused, partitions moved: %s", self.service, exc)
            return False
        except Exception as exc:
            raise self._failed(_COMMIT_OFFSETS, exc) from exc
        return True

    async def _deliver(self, records: list[Record], produce: _Step, flush: _Step) -> None:
        if not records:
            return

        async def attempt() -> None:
            try:
                acks = await self._produce(records)
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise self._failed(produce, exc) from exc
            try:
                await asyncio.gather(*acks)
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise self._failed(flush, exc) from exc

        await retry_transient(attempt, self._retrying, self.sleep)

    def _failed(self, step: _Step, exc: BaseException) -> CheckpointError:
        kind, name = step
        return kind(f"{self.service}: checkpoint step {name} failed: {type(exc).__name__}: {exc}")

    def _retrying(self, attempt: int, delay: float, exc: BaseException) -> None:
        self._metrics.retries.labels(self.service).inc()
        self._on_retry()
        log.warning(
            "%s: sending failed (attempt %d), retrying in %.1fs: %s", self.service, attempt, delay, exc
        )

    async def _produce(self, records: list[Record]) -> list[asyncio.Future[Any]]:
        """Queue `records` as one record batch per topic partition (keyed ones on the partition Kafka's
        default partitioner picks), in order; a producer send() per record cost a third of the checkpoint."""
        producer = self._producer()
        by_tp: dict[tuple[str, int], list[Record]] = {}
        partitions: dict[str, list[int]] = {}
        # A batch's hits and tier changes share a few group keys: murmur2 (pure Python) once per key.
        placed: dict[tuple[str, bytes], int] = {}
        for record in records:
            topic, partition, key = record[0], record[1], record[2]
            if partition is None:
                if key is not None and (topic, key) in placed:
                    partition = placed[topic, key]
                else:
                    if topic not in partitions:
                        partitions[topic] = sorted(await producer.partitions_for(topic))
                    every = partitions[topic]
                    partition = _PARTITIONER(key, every, every)
                    if key is not None:
                        placed[topic, key] = partition
            by_tp.setdefault((topic, partition), []).append(record)
        acks = []
        for (topic, partition), items in by_tp.items():
            batch = producer.create_batch()
            for _, _, key, value, headers in items:
                if batch.append(key=key, value=value, timestamp=None, headers=headers or []) is None:
                    acks.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers or [])
            acks.append(await producer.send_batch(batch, topic, partition=partition))
        return acks
