"""The consume loop: state comes back from its changelog, moves with its partition, and a refused message is
dead-lettered, never dropped."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from schemas.events import DeadLetterRecord
from services.common import json
from services.common.exceptions import DeadLetter, KafkaSetupError
from services.common.metrics import CommonMetrics
from services.common.partitioned import Batch, PartitionedWorker, Table
from services.common.settings import CommonSettings
from tests.conftest import collect, create_topic, produce


class _Count:
    """Rows that are plain counts."""

    def encode(self, count: int) -> bytes:
        return json.dumps(count)

    def decode(self, data: bytes) -> int:
        return int(json.loads(data))


def _counts_table(changelog: bool = True) -> Table[int]:
    return Table(_Count(), changelog=changelog)


class _Counter:
    """A toy stage: counts messages per key in a table and emits the running count."""

    def __init__(self, sink: str) -> None:
        self.sink = sink

    def handle(self, record: Any, batch: Batch) -> None:
        if record.value == b"poison":
            raise DeadLetter("invalid_schema", "poison")
        counts = batch.tables["counts"]
        key = record.key.decode()
        counts.set(key, (counts.get(key) or 0) + 1)
        batch.send(
            self.sink, record.key, json.dumps({"key": key, "count": counts[key], "p": batch.partition})
        )


def _worker(
    kafka: str, prefix: str, tmp_path: Path, source: str, sink: str, partitions: int
) -> PartitionedWorker:
    settings = CommonSettings(
        kafka_bootstrap=kafka,
        topic_prefix=prefix,
        partitions=partitions,
        data_dir=tmp_path,
        session_timeout_seconds=6,
    )
    return PartitionedWorker(
        "toy",
        settings,
        handlers={source: _Counter(sink).handle},
        tables={"counts": _counts_table},
        metrics=CommonMetrics(CollectorRegistry(), "toy"),
        dead_letter_topic=f"{prefix}dead-letter",
    )


async def _topics(kafka: str, prefix: str, source_partitions: int, sink_partitions: int) -> tuple[str, str]:
    source, sink = f"{prefix}in", f"{prefix}out"
    await create_topic(kafka, source, source_partitions)
    await create_topic(kafka, sink, sink_partitions)
    await create_topic(kafka, f"{prefix}dead-letter")
    return source, sink


@asynccontextmanager
async def _running(worker: PartitionedWorker) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _until(condition: Callable[[], bool], within: float = 60.0) -> None:
    for _ in range(int(within * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


def _counts(values: list[bytes]) -> list[tuple[str, int]]:
    return [(v["key"], v["count"]) for v in map(json.loads, values)]


@pytest.mark.kafka
async def test_state_comes_back_from_the_changelog_after_a_restart(
    kafka: str, prefix: str, tmp_path: Path
) -> None:
    source, sink = await _topics(kafka, prefix, 1, 1)
    await produce(kafka, source, [(b"a", b"1"), (b"b", b"1"), (b"a", b"1")])
    first = _worker(kafka, prefix, tmp_path, source, sink, 1)
    async with _running(first):
        await _until(lambda: first.lag.get((source, 0)) == 0)
    # A new process: nothing in memory, the counts are read back from the changelog before any input.
    await produce(kafka, source, [(b"a", b"1"), (b"b", b"poison"), (b"b", b"1")])
    second = _worker(kafka, prefix, tmp_path, source, sink, 1)
    async with _running(second):
        await _until(lambda: second.lag.get((source, 0)) == 0)
        assert second.merged("counts") == {"a": 3, "b": 2}
    values = await collect(kafka, sink, lambda v: len(v) >= 5, within=10)
    assert _counts(values) == [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]  # none repeated, none lost
    dead = await collect(kafka, f"{prefix}dead-letter", lambda v: len(v) >= 1, within=10)
    record = DeadLetterRecord.model_validate_json(dead[0])
    assert (record.source_topic, record.offset, record.reason) == (source, 4, "invalid_schema")
    # One changelog record per key per batch, not per change: "a" changed twice in the first batch.
    changelog = await collect(kafka, f"{prefix}toy-counts-changelog", lambda v: len(v) >= 4, within=5)
    assert len(changelog) <= 4


@pytest.mark.kafka
async def test_a_partition_and_its_state_move_to_the_worker_that_stays(
    kafka: str, prefix: str, tmp_path: Path
) -> None:
    source, sink = await _topics(kafka, prefix, 2, 2)
    keys = [f"k{i}".encode() for i in range(8)]
    one, two = (_worker(kafka, prefix, tmp_path, source, sink, 2) for _ in range(2))
    async with _running(one):
        async with _running(two):
            await _until(
                lambda: (
                    sorted(map(sorted, (one.owned_partitions() or {9}, two.owned_partitions() or {9})))
                    == [[0], [1]]
                )
            )
            await produce(kafka, source, [(k, b"1") for k in keys])
            await _until(lambda: len(one.merged("counts")) + len(two.merged("counts")) == 8)
        # `two` left the group: `one` takes its partition, with the counts made there.
        await _until(lambda: one.owned_partitions() == {0, 1})
        await produce(kafka, source, [(k, b"1") for k in keys])
        await _until(lambda: one.merged("counts") == {k.decode(): 2 for k in keys})
    values = await collect(kafka, sink, lambda v: len(v) >= 16, within=10)
    assert sorted(_counts(values)) == sorted([(k.decode(), n) for k in keys for n in (1, 2)])


@pytest.mark.kafka
async def test_inputs_and_changelogs_must_share_a_partition_count(
    kafka: str, prefix: str, tmp_path: Path
) -> None:
    source, sink = await _topics(kafka, prefix, 2, 1)
    worker = _worker(kafka, prefix, tmp_path, source, sink, 1)  # its changelog gets 1 partition
    with pytest.raises(KafkaSetupError, match="same partition count"):
        await worker.run(asyncio.Event())


class _Died(BaseException):
    """Stands for the process dying: nothing after it runs, journal writes included."""


def _records(source: str, values: list[bytes]) -> dict[TopicPartition, list[Any]]:
    return {
        TopicPartition(source, 0): [
            ConsumerRecord(source, 0, offset, 0, 0, b"k", value, None, len(b"k"), len(value), [])
            for offset, value in enumerate(values)
        ]
    }


def _restarted(tmp_path: Path, handle: Callable[[Any, Batch], None]) -> PartitionedWorker:
    worker = _worker("127.0.0.1:1", "t.", tmp_path, "t.in", "t.out", 1)
    worker.handlers = {"t.in": handle}
    worker.state = {0: {"counts": _counts_table()}}
    return worker


async def test_a_record_that_kills_the_worker_twice_is_dead_lettered_and_the_rest_handled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = _records("t.in", [b"a", b"b", b"kill", b"c"])
    seen: list[bytes] = []

    def handle(record: Any, batch: Batch) -> None:
        if record.value == b"kill":
            journal = worker.journal.get("t.in", 0)
            assert journal is not None
            journal.end = lambda: None  # type: ignore[method-assign]
            raise _Died
        seen.append(record.value)
        batch.send("t.out", record.key, record.value)

    worker = _restarted(tmp_path, handle)
    with pytest.raises(_Died):  # in a run: the journal knows only the range 0-3
        await worker._handle(records)
    worker = _restarted(tmp_path, handle)
    with pytest.raises(_Died):  # one at a time: the journal names offset 2
        await worker._handle(records)
    worker = _restarted(tmp_path, handle)
    with caplog.at_level(logging.ERROR):
        batches = await worker._handle(records)
    assert seen == [b"a", b"b", b"a", b"b", b"a", b"b", b"c"]
    out = batches[0].out
    assert [v for t, _, v, _ in out if t == "t.out"] == [b"a", b"b", b"c"]
    (dead,) = [DeadLetterRecord.model_validate_json(v) for t, _, v, _ in out if t == "t.dead-letter"]
    assert (dead.reason, dead.source_topic, dead.offset) == ("crash_loop", "t.in", 2)
    assert base64.b64decode(dead.value_base64) == b"kill"
    labels = {"service": "toy", "reason": "crash_loop"}
    assert worker.metrics.registry.get_sample_value("yuqing_dead_letters_total", labels) == 1
    assert any(r.levelname == "ERROR" and "crash_loop" in r.getMessage() for r in caplog.records)


async def test_a_batch_is_journaled_before_it_is_handled_not_per_record(tmp_path: Path) -> None:
    writes: list[int] = []
    worker = _restarted(tmp_path, lambda record, batch: None)
    await worker._handle(_records("t.in", [b"a"]))  # opens the journal
    journal = worker.journal.get("t.in", 0)
    assert journal is not None
    real = journal._write

    def counting() -> None:
        writes.append(1)
        real()

    journal._write = counting  # type: ignore[method-assign]
    await worker._handle(_records("t.in", [b"x"] * 500))
    assert len(writes) == 1
