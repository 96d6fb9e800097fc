"""The faust shell: tick ownership, retries and dead letters, the origin header, the crash-loop rule."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError

from schemas.events import DeadLetterRecord
from services.common import json
from services.common.exceptions import DeadLetter, RetryLater
from services.common.settings import CommonSettings
from services.common.stream import (
    MAX_VALUE_BYTES,
    ORIGIN_HEADER,
    SettledTable,
    StreamShell,
    _settled,
    dead_letter_record,
    expect_key,
    lag_rows,
    origin_of,
)
from tests.conftest import create_topic, produce

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
        message=SimpleNamespace(topic=topic, partition=1, offset=42, headers=[], key=key, value=value),
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


async def _commit(kafka: str, group: str, topic: str, offset: int) -> None:
    """Where `group` resumes `topic`[0]: what a worker's consumer group had committed before it started."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): offset})
    finally:
        await consumer.stop()


class _Consumer:
    """faust's consumer as in_order sees it: the assignment, the end offsets it fetched, and acks."""

    def __init__(self, ends: dict[str, int | None]) -> None:
        self.ends = ends
        self.acked: list[tuple[str, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(t, 0) for t in self.ends}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp.topic]

    def ack(self, message: Any) -> bool:
        self.acked.append((message.topic, message.offset))
        return True


class _Stream:
    """The agent's noack stream: acks of the records faust delivered."""

    def __init__(self, consumer: _Consumer) -> None:
        self.consumer = consumer

    async def ack(self, event: Any) -> bool:
        return self.consumer.ack(event.message)


def _at(topic: str, offset: int, value: bytes = b"x", generation: int | None = None) -> SimpleNamespace:
    message = SimpleNamespace(
        topic=topic, partition=0, offset=offset, headers=[], key=b"g", value=value, generation_id=generation
    )
    return SimpleNamespace(key=b"g", value=value, message=message)


async def _run_held(shell: StreamShell) -> None:
    while not shell._held.empty():
        ack, _, _ = shell._held.get_nowait()
        await ack()


@pytest.mark.kafka
async def test_records_faust_dropped_are_read_from_kafka_first_and_each_is_processed_once(
    kafka: str, prefix: str, tmp_path: Path
) -> None:
    """faust's drop at assignment: the agent is handed offset 5 while its group resumes at 2. Offsets 2-4 are
    read from Kafka and processed first, in order (a poison record among them is dead-lettered as any other),
    and acked together with 5, once their writes are acknowledged; faust's later copy of 3 is skipped; an
    event fetched in an assignment that has ended is neither processed nor acked."""
    topic = f"{prefix}hits"
    await create_topic(kafka, topic)
    values = [b"v0", b"v1", b"v2", b"garbage", b"v4", b"v5", b"v6", b"v7"]
    await produce(kafka, topic, [(b"g", v) for v in values])
    shell = _shell(tmp_path, partitions=1, bootstrap=kafka)
    consumer = _Consumer({topic: len(values)})
    shell.app.consumer = consumer  # type: ignore[assignment]
    stream = _Stream(consumer)
    sent = _Sent()
    shell.dead_letter_topic = sent
    await _commit(kafka, shell.app.conf.id, topic, 2)
    seen: list[tuple[int, bytes]] = []

    async def handler(event: Any) -> None:
        if event.value == b"garbage":
            raise DeadLetter("invalid_json", "not JSON")
        seen.append((event.message.offset, event.value))

    async def deliver(event: SimpleNamespace) -> bool:
        processed = await shell.in_order(event, handler)
        if processed:
            shell.ack_when_settled(stream, event)
        return processed

    five = _at(topic, 5, b"v5")
    assert await deliver(five)
    assert seen == [(2, b"v2"), (4, b"v4"), (5, b"v5")]
    (dead,) = [DeadLetterRecord.model_validate_json(v) for _, v in sent.records]
    assert (dead.reason, dead.source_topic, dead.offset, base64.b64decode(dead.value_base64)) == (
        "invalid_json",
        topic,
        3,
        b"garbage",
    )
    assert shell._held.qsize() == 1  # 2-4 owed to 5's ack: none acked before the writes of all are settled
    await _run_held(shell)
    assert consumer.acked == [(topic, 2), (topic, 3), (topic, 4), (topic, 5)]
    assert _sample(shell, "yuqing_input_gap_records_total", service="test", outcome="read") == 3
    assert _sample(shell, "yuqing_messages_processed_total", service="test", topic=topic) == 4

    assert await deliver(_at(topic, 3, b"garbage"))  # faust's own copy: acked, not processed again
    assert await deliver(_at(topic, 6, b"v6"))
    assert not await deliver(_at(topic, 7, b"v7", generation=41))  # fetched before this assignment
    assert [o for o, _ in seen] == [2, 4, 5, 6]
    assert len(sent.records) == 1
    assert shell.sequence.expects(topic, 0) == 7


@pytest.mark.kafka
async def test_records_faust_dropped_with_nothing_after_them_are_read_on_a_tick(
    kafka: str, prefix: str, tmp_path: Path
) -> None:
    """A tier change that was the last record of its partition, dropped by faust, shows no gap: the partition
    stops short of its end. A tick that finds it there for a tick period reads the rest from Kafka (from the
    committed offset, or the log start for a group that never committed); a partition faust never fetched is
    left alone, one whose records are arriving is not read twice, and a tick handled late judges nothing."""
    changes, alerts, quiet = f"{prefix}tier-changes", f"{prefix}alerts", f"{prefix}incident-actions"
    for topic in (changes, alerts, quiet):
        await create_topic(kafka, topic)
    await produce(kafka, changes, [(b"g", f"c{i}".encode()) for i in range(3)])
    await produce(kafka, alerts, [(b"g", f"a{i}".encode()) for i in range(6)])
    await produce(kafka, quiet, [(b"g", b"q0")])
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:  # the log of tier changes starts at 1: a group that never committed begins there, not at 0
        await admin.delete_records({TopicPartition(changes, 0): RecordsToDelete(before_offset=1)})
    finally:
        await admin.close()
    shell = _shell(tmp_path, partitions=1, bootstrap=kafka)
    await _commit(kafka, shell.app.conf.id, alerts, 2)
    consumer = _Consumer({changes: 3, alerts: 6, quiet: None, shell.ticks_name: 9})
    clock = [0.0]
    shell.monotonic = lambda: clock[0]
    shell.every(2.0)  # a partition behind its end for 2 s is stalled
    shell.app.consumer = consumer  # type: ignore[assignment]
    stream = _Stream(consumer)
    seen: list[tuple[str, int]] = []

    async def handler(event: Any) -> None:
        if not shell.is_tick(event):
            seen.append((event.message.topic, event.message.offset))

    async def deliver(event: SimpleNamespace) -> None:
        if await shell.in_order(event, handler):
            shell.ack_when_settled(stream, event)

    def a_tick(sent: float | None = None) -> SimpleNamespace:
        message = SimpleNamespace(
            topic=shell.ticks_name, partition=0, offset=0, headers=[], generation_id=None, timestamp=sent
        )
        return SimpleNamespace(key=b"__tick__", value=b"now", message=message)

    tick = a_tick()
    await deliver(tick)
    await deliver(_at(alerts, 2))  # alerts are arriving
    assert seen == [(alerts, 2)]
    clock[0] = 1.0
    await deliver(tick)  # ticks that piled up while the worker was down come in a rush
    assert seen == [(alerts, 2)]
    clock[0] = 2.0
    await deliver(a_tick(sent=time.time() - 3))  # sent a tick period ago: the worker is behind, not faust
    assert seen == [(alerts, 2)]
    await deliver(tick)
    await deliver(_at(alerts, 3))
    assert seen == [(alerts, 2), (changes, 1), (changes, 2), (alerts, 3)]  # tier changes stood still
    await deliver(_at(changes, 2))  # faust's copy, had it come after all: not processed twice
    await deliver(tick)
    clock[0] = 4.0
    await deliver(tick)
    assert seen[-1] == (alerts, 5)  # now alerts stood still
    assert seen.count((changes, 2)) == 1
    assert (quiet, 0) not in seen  # never fetched: nothing of it dropped
    await _run_held(shell)
    # Each processed record acked (faust itself ignores the second ack of (changes, 2)).
    assert {(t, o) for t, o in consumer.acked if t != shell.ticks_name} == set(seen)


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

    await shell.guarded(_event(topic=shell.ticks_name, key=b"__tick__"), handler)
    await shell.guarded(_event(topic="t.keyword-hits", key=b"xinghe"), handler)
    assert _sample(shell, "yuqing_messages_processed_total", service="test", topic=shell.ticks_name) == 0
    assert _sample(shell, "yuqing_messages_processed_total", service="test", topic="t.keyword-hits") == 1


def test_only_the_ticks_topic_carries_ticks(tmp_path: Path) -> None:
    """A message elsewhere keyed like a tick is input: taken for a tick, it was skipped without a trace."""
    shell = _shell(tmp_path, partitions=1)
    assert shell.is_tick(_event(topic=shell.ticks_name, key=b"__tick__"))
    assert not shell.is_tick(_event(topic="t.keyword-hits", key=b"__tick__"))


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


def _record(headers: object, topic: str = "y.scoring.threads") -> SimpleNamespace:
    return SimpleNamespace(topic=topic, partition=3, offset=77, headers=headers)


@pytest.mark.parametrize(
    "value",
    [
        b"nopipes",
        b"\xff\xfe|1|2",  # not UTF-8
        "y.posts.raw|1|２".encode(),  # a full-width digit: int() takes it, Kafka has no such offset
        b"y.posts.raw|one|2",
        b"y.posts.raw|1|-2",
        b"y.posts.raw|-1|2",
        b"y.posts.raw|1|99999999999999999999999",  # beyond a Kafka offset (int64)
        b"y.posts.raw|4294967296|2",
        b"y.posts.raw|1|2|3",
        b"|1|2",
        b"bad topic!|1|2",
        b"y.posts.raw|1|" + b"9" * 10_000,  # huge
        b"",
        None,
        "not bytes",
    ],
)
def test_a_malformed_origin_header_is_treated_as_absent(value: object) -> None:
    assert origin_of(_record([(ORIGIN_HEADER, value)]), forwarded={"y.scoring.threads"}) == (
        "y.scoring.threads",
        3,
        77,
    )


@pytest.mark.parametrize("headers", [None, [], {}, [("other", b"x")], [(b"\xff", b"x")], [("x",)], 5])
def test_odd_header_lists_never_raise(headers: object) -> None:
    assert origin_of(_record(headers), forwarded={"y.scoring.threads"}) == ("y.scoring.threads", 3, 77)


def test_the_origin_header_is_believed_only_on_a_forwarding_topic() -> None:
    headers = [(ORIGIN_HEADER, b"y.posts.raw|1|2")]
    assert origin_of(_record(headers), forwarded={"y.scoring.threads"}) == ("y.posts.raw", 1, 2)
    assert origin_of(_record({ORIGIN_HEADER: b"y.posts.raw|1|2"}), forwarded={"y.scoring.threads"}) == (
        "y.posts.raw",
        1,
        2,
    )
    # On posts.raw anyone may set it: it must not point a dead letter somewhere else.
    assert origin_of(_record(headers, topic="y.posts.raw"), forwarded={"y.scoring.threads"}) == (
        "y.posts.raw",
        3,
        77,
    )
    assert origin_of(_record(headers)) == ("y.scoring.threads", 3, 77)


def test_a_dead_letter_record_always_fits_on_its_topic() -> None:
    huge = b"x" * (3 * MAX_VALUE_BYTES)
    record = dead_letter_record("s", "y.posts.raw", 0, 1, b"k" * 100_000, huge, "too_large", "d" * 10_000)
    assert record.value_size == len(huge)
    assert base64.b64decode(record.value_base64) == huge[:MAX_VALUE_BYTES]
    assert record.key == "k" * 1024
    assert len(json.dumps(record)) < 1_000_000  # the broker's default message.max.bytes
    tombstone = dead_letter_record("s", "y.posts.raw", 0, 1, None, None, "empty", "")
    assert (tombstone.value_size, tombstone.value_base64, tombstone.key) == (None, "", None)
    odd_key = dead_letter_record("s", "y.posts.raw", 0, 1, b"\xff\xfeab", b"v", "wrong_key", "")
    assert odd_key.key == "\ufffd\ufffdab"


def test_a_wrong_key_is_named() -> None:
    expect_key(b"xinghe", "xinghe", "rule group")
    for key in (None, b"other", b"\xff\xfe", b"x" * 10_000):
        with pytest.raises(DeadLetter) as caught:
            expect_key(key, "xinghe", "rule group")
        assert caught.value.reason == "wrong_key"
        assert "'xinghe'" in caught.value.detail
        assert len(caught.value.detail) < 200


class _Died(BaseException):
    """Stands for the process dying (os._exit, OOM kill): nothing after it runs, journal.end() included."""


def _dies(shell: StreamShell) -> Callable[[Any], Awaitable[None]]:
    async def handler(event: Any) -> None:
        journal = shell.journal.get(event.message.topic, event.message.partition)
        assert journal is not None
        journal.end = lambda: None  # type: ignore[method-assign]
        raise _Died

    return handler


async def test_a_record_that_kills_the_worker_twice_is_dead_lettered(tmp_path: Path, caplog) -> None:
    handled: list[int] = []

    async def works(event: Any) -> None:
        handled.append(event.message.offset)

    def at(offset: int) -> SimpleNamespace:
        event = _event(topic="t.keyword-hits", key=b"xinghe")
        event.message.offset = offset
        return event

    first, _, _ = _guarded_shell(tmp_path)
    await first.guarded(at(4), works)
    with pytest.raises(_Died):
        await first.guarded(at(5), _dies(first))
    # Restarted: 4 was not committed and comes again; 5 is handled again, and kills it again.
    second, sent, _ = _guarded_shell(tmp_path)
    await second.guarded(at(4), works)
    with pytest.raises(_Died):
        await second.guarded(at(5), _dies(second))
    assert sent.records == []
    third, sent, _ = _guarded_shell(tmp_path)
    await third.guarded(at(4), works)
    with caplog.at_level("ERROR"):
        await third.guarded(at(5), _dies(third))  # not run: dead-lettered
    await third.guarded(at(6), works)
    assert handled == [4, 4, 4, 6]
    (record,) = [DeadLetterRecord.model_validate_json(v) for _, v in sent.records]
    assert (record.reason, record.source_topic, record.offset) == ("crash_loop", "t.keyword-hits", 5)
    assert _sample(third, "yuqing_dead_letters_total", service="test", reason="crash_loop") == 1
    assert _sample(third, "yuqing_messages_processed_total", service="test", topic="t.keyword-hits") == 3
    assert any(r.levelname == "ERROR" and "crash_loop" in r.getMessage() for r in caplog.records)


async def test_a_death_after_the_record_was_handled_does_not_count_against_it(tmp_path: Path) -> None:
    """The notifier marks a hit handled before sending due alerts: dying in the send, twice, is no poison."""
    shell, _, _ = _guarded_shell(tmp_path)
    handled: list[int] = []

    async def dies_after(event: Any) -> None:
        handled.append(event.message.offset)
        shell.handled(event)
        raise _Died

    for _ in range(3):
        shell, sent, _ = _guarded_shell(tmp_path)
        with pytest.raises(_Died):
            await shell.guarded(_event(topic="t.keyword-hits"), dies_after)
    assert handled == [42, 42, 42]
    assert sent.records == []
