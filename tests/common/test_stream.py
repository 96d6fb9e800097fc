"""The shell's tick ownership: a tick touches only the rows whose key is home on its own partition."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError

from schemas.events import DeadLetterRecord
from services.common.exceptions import DeadLetter, RetryLater
from services.common.settings import CommonSettings
from services.common.stream import SettledTable, StreamShell, _settled, lag_rows
from tests.conftest import create_topic

GROUPS = [f"group-{i}" for i in range(40)] + ["小米", "华为", "*"]


def _shell(tmp_path: Path, partitions: int, bootstrap: str = "127.0.0.1:1") -> StreamShell:
    settings = CommonSettings(kafka_bootstrap=bootstrap, partitions=partitions, data_dir=tmp_path)
    return StreamShell("test", settings)


def test_tick_keys_partition_the_table(tmp_path: Path) -> None:
    shell = _shell(tmp_path, partitions=3)
    table: dict[str, dict[str, int]] = {g: {} for g in GROUPS}
    owned = [shell.tick_keys(SimpleNamespace(message=SimpleNamespace(partition=p)), table) for p in range(3)]
    assert sorted(k for keys in owned for k in keys) == sorted(GROUPS)  # every row has exactly one owner
    assert all(owned)  # 43 keys over 3 partitions: each partition owns some
    assert not set(owned[0]) & set(owned[1])


async def test_settled_waits_for_every_write_and_turns_a_lost_one_into_retry_later() -> None:
    loop = asyncio.get_running_loop()
    acked: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
    waiting = asyncio.ensure_future(_settled(acked))
    for f in acked[:2]:
        f.set_result(None)
    await asyncio.sleep(0)
    assert not waiting.done()  # one write is still out: not settled
    acked[2].set_result(None)
    await waiting
    failed: asyncio.Future[Any] = loop.create_future()
    failed.set_exception(KafkaTimeoutError())
    with pytest.raises(RetryLater, match="a table write failed: KafkaTimeoutError"):
        await _settled([failed])
    with pytest.raises(RetryLater, match="not acknowledged by Kafka within 0 s"):
        await _settled([loop.create_future()], seconds=0.01)


def test_every_table_of_a_shell_can_be_settled(tmp_path: Path) -> None:
    shell = _shell(tmp_path, partitions=1)
    assert isinstance(shell.table("rows"), SettledTable)


@pytest.mark.kafka
async def test_home_partition_is_where_kafka_puts_the_key(kafka: str, prefix: str, tmp_path: Path) -> None:
    topic = f"{prefix}keyed"
    await create_topic(kafka, topic, partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        for g in GROUPS:
            await producer.send_and_wait(topic, key=g.encode(), value=b"x")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest")
    await consumer.start()
    landed: dict[str, int] = {}
    try:
        while len(landed) < len(GROUPS):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                landed.update({r.key.decode(): r.partition for r in records})
    finally:
        await consumer.stop()
    shell = _shell(tmp_path, partitions=3, bootstrap=kafka)
    assert landed == {g: shell.home_partition(g) for g in GROUPS}


class _Sent:
    """Stands in for the dead-letter topic: records what would have been produced."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []

    async def send(self, key: bytes, value: bytes) -> None:
        self.records.append((key, value))


def _event(topic: str = "t.posts.raw", key: bytes = b"weibo:1", value: bytes = b"{}") -> SimpleNamespace:
    return SimpleNamespace(
        key=key,
        value=value,
        message=SimpleNamespace(topic=topic, partition=1, offset=42, headers=None),
    )


def _guarded_shell(tmp_path: Path) -> tuple[StreamShell, _Sent, list[float]]:
    shell = _shell(tmp_path, partitions=3)
    sent = _Sent()
    shell.dead_letter_topic = sent
    waits: list[float] = []

    async def _sleep(seconds: float) -> None:
        waits.append(seconds)

    shell.sleep = _sleep
    return shell, sent, waits


def _sample(shell: StreamShell, name: str, **labels: str) -> float:
    value = shell.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.mark.parametrize(
    "error",
    [KafkaConnectionError("broker down"), KafkaTimeoutError(), TimeoutError(), RetryLater("send timed out")],
    ids=["connection", "kafka-timeout", "timeout", "retry-later"],
)
async def test_transient_send_failures_are_retried_in_place_not_dead_lettered(tmp_path: Path, error) -> None:
    shell, sent, waits = _guarded_shell(tmp_path)
    calls = []

    async def handler(event: object) -> None:
        calls.append(event)
        if len(calls) <= 3:
            raise error

    await shell.guarded(_event(), handler)
    assert len(calls) == 4
    assert sent.records == []
    assert waits == [0.5, 1.0, 2.0]  # capped exponential backoff
    assert _sample(shell, "yuqing_processing_retries_total", service="test") == 3
    assert _sample(shell, "yuqing_messages_processed_total", service="test", topic="t.posts.raw") == 1
    assert _sample(shell, "yuqing_dead_letters_total", service="test", reason="processing_error") == 0


async def test_backoff_is_capped(tmp_path: Path) -> None:
    shell, _, waits = _guarded_shell(tmp_path)
    failures = iter(range(10))

    async def handler(event: object) -> None:
        if next(failures, None) is not None:
            raise KafkaConnectionError("broker down")

    await shell.guarded(_event(), handler)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


async def test_permanent_errors_are_dead_lettered_once(tmp_path: Path) -> None:
    shell, sent, waits = _guarded_shell(tmp_path)
    calls = []

    async def handler(event: object) -> None:
        calls.append(event)
        raise MessageSizeTooLargeError()  # a KafkaError that retrying cannot fix

    await shell.guarded(_event(value=b'{"a": 1}'), handler)
    assert len(calls) == 1
    assert waits == []
    (key, value) = sent.records[0]
    record = DeadLetterRecord.model_validate_json(value)
    assert key == b"t.posts.raw"
    assert record.reason == "processing_error"
    assert record.source_topic == "t.posts.raw"
    assert record.offset == 42
    assert record.detail.startswith("MessageSizeTooLargeError")
    assert base64.b64decode(record.value_base64) == b'{"a": 1}'
    assert _sample(shell, "yuqing_dead_letters_total", service="test", reason="processing_error") == 1


async def test_a_failing_dead_letter_send_is_retried_too(tmp_path: Path) -> None:
    shell, sent, waits = _guarded_shell(tmp_path)
    real_send = sent.send
    failures = iter([KafkaConnectionError("broker down")])

    async def flaky_send(key: bytes, value: bytes) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        await real_send(key, value)

    sent.send = flaky_send  # type: ignore[method-assign]

    async def handler(event: object) -> None:
        raise DeadLetter("invalid_json", "not JSON")

    await shell.guarded(_event(), handler)
    assert waits == [0.5]
    assert [DeadLetterRecord.model_validate_json(v).reason for _, v in sent.records] == ["invalid_json"]


async def test_ticks_are_not_counted_as_processed_messages(tmp_path: Path) -> None:
    shell, _, _ = _guarded_shell(tmp_path)

    async def handler(event: object) -> None:
        return None

    await shell.guarded(_event(topic="t.test.ticks", key=b"__tick__"), handler)
    await shell.guarded(_event(topic="t.keyword-hits", key=b"xinghe"), handler)
    assert _sample(shell, "yuqing_messages_processed_total", service="test", topic="t.test.ticks") == 0
    assert _sample(shell, "yuqing_messages_processed_total", service="test", topic="t.keyword-hits") == 1


def test_lag_is_measured_from_the_committed_offset_or_the_log_start() -> None:
    partitions = [("y.posts.raw", 0), ("y.posts.raw", 1), ("y.keyword-hits", 0), ("y.alerts", 0)]
    ends = {("y.posts.raw", 0): 120, ("y.posts.raw", 1): 50, ("y.keyword-hits", 0): 10}
    committed = {("y.posts.raw", 0): 100, ("y.posts.raw", 1): -1, ("y.keyword-hits", 0): 12}
    starts = {("y.posts.raw", 1): 30}  # retention dropped the first 30: a new group starts there
    assert lag_rows(partitions, ends, committed, starts) == {
        ("y.posts.raw", 0): 20,
        ("y.posts.raw", 1): 20,
        ("y.keyword-hits", 0): 0,  # a commit past the last fetched end is not negative lag
    }


def test_lag_leaves_out_ticks_changelogs_and_the_assignor() -> None:
    from services.common.stream import _is_input

    assert _is_input("yuqing.posts.raw")
    assert _is_input("yuqing.scoring.threads")
    assert not _is_input("yuqing.scoring.ticks")
    assert not _is_input("yuqing.scoring-tiers-changelog")
    assert not _is_input("yuqing.scoring-__assignor-__leader")
