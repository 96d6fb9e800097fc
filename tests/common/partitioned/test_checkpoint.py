"""The checkpoint's steps run in order (outputs, flushed, then state, then offsets); a transient Kafka error
repeats a step whole, and any other error stops at its step with that step's own exception."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaTimeoutError, MessageSizeTooLargeError, UnknownError
from prometheus_client import CollectorRegistry

from services.common.exceptions import (
    OffsetsNotCommitted,
    OutputsNotFlushed,
    OutputsNotProduced,
    StateNotWritten,
)
from services.common.metrics import CommonMetrics
from services.common.partitioned.checkpoint import Checkpoint, Checkpointer

OUT = ("t.out", None, b"k", b"v", None)
ROW = ("t.counts-changelog", 0, b'"k"', b"1", None)
OFFSETS = {TopicPartition("t.in", 0): 7}


class _Batch:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def append(self, key: bytes | None, value: bytes | None, timestamp: None, headers: Any) -> object:
        self.values.append(value)
        return object()


class _Kafka:
    """A producer and consumer that record what the checkpoint asked of them, and fail when told to."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.fail: dict[str, list[BaseException]] = {}

    def _maybe_fail(self, step: str) -> None:
        errors = self.fail.get(step)
        if errors:
            raise errors.pop(0)

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[None]:
        self._maybe_fail(f"produce {topic}")
        self.log.append(f"produce {topic} {batch.values}")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        errors = self.fail.get(f"ack {topic}")
        if errors:
            ack.set_exception(errors.pop(0))
        else:
            ack.set_result(None)
            self.log.append(f"acked {topic}")
        return ack

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self._maybe_fail("commit")
        self.log.append(f"commit {offsets[TopicPartition('t.in', 0)]}")


def _checkpointer(kafka: _Kafka) -> tuple[Checkpointer, list[int]]:
    retried: list[int] = []
    checkpointer = Checkpointer(
        "toy",
        lambda: kafka,
        lambda: kafka,
        CommonMetrics(CollectorRegistry(), "toy"),
        lambda: retried.append(1),
    )

    async def no_wait(seconds: float) -> None:
        return None

    checkpointer.sleep = no_wait
    return checkpointer, retried


async def test_outputs_are_acknowledged_before_state_is_written_and_offsets_come_last() -> None:
    kafka = _Kafka()
    checkpointer, _ = _checkpointer(kafka)
    assert await checkpointer.commit(Checkpoint([OUT, OUT], [ROW], OFFSETS))
    assert kafka.log == [
        "produce t.out [b'v', b'v']",  # one record batch per partition
        "acked t.out",
        "produce t.counts-changelog [b'1']",
        "acked t.counts-changelog",
        "commit 7",
    ]


async def test_a_transient_failure_sends_the_whole_step_again() -> None:
    kafka = _Kafka()
    kafka.fail = {"ack t.out": [KafkaTimeoutError("broker away")]}
    checkpointer, retried = _checkpointer(kafka)
    assert await checkpointer.commit(Checkpoint([OUT], [ROW], OFFSETS))
    assert kafka.log[:2] == ["produce t.out [b'v']", "produce t.out [b'v']"]
    assert kafka.log[-1] == "commit 7"
    assert retried == [1]
    registry = checkpointer._metrics.registry
    assert registry.get_sample_value("yuqing_processing_retries_total", {"service": "toy"}) == 1


@pytest.mark.parametrize(
    ("where", "error", "raised", "step"),
    [
        ("produce t.out", MessageSizeTooLargeError("too big"), OutputsNotProduced, "1 (produce outputs)"),
        ("ack t.out", MessageSizeTooLargeError("too big"), OutputsNotFlushed, "2 (flush outputs)"),
        ("produce t.counts-changelog", UnknownError("?"), StateNotWritten, "3 (write state)"),
        ("ack t.counts-changelog", UnknownError("?"), StateNotWritten, "3 (write state)"),
        ("commit", UnknownError("?"), OffsetsNotCommitted, "4 (commit offsets)"),
    ],
)
async def test_a_permanent_failure_stops_at_its_step(
    where: str, error: Exception, raised: type[Exception], step: str
) -> None:
    kafka = _Kafka()
    kafka.fail = {where: [error]}
    checkpointer, _ = _checkpointer(kafka)
    with pytest.raises(
        raised, match=f"toy: checkpoint step {step.replace('(', '.').replace(')', '.')} failed"
    ):
        await checkpointer.commit(Checkpoint([OUT], [ROW], OFFSETS))
    assert not any(line.startswith("commit") for line in kafka.log)
    if raised in (OutputsNotProduced, OutputsNotFlushed):
        assert not any("changelog" in line for line in kafka.log)  # no state ahead of its output


async def test_a_commit_refused_after_a_rebalance_is_not_an_error() -> None:
    kafka = _Kafka()
    kafka.fail = {"commit": [CommitFailedError("moved")]}
    checkpointer, _ = _checkpointer(kafka)
    assert await checkpointer.commit(Checkpoint([OUT], [ROW], OFFSETS)) is False
