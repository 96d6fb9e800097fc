"""Reading a stretch of a partition around faust, on a real broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete

from services.common.exceptions import RetryLater
from services.common.gapread import Replayed, read_between
from services.common.settings import CommonSettings
from tests.conftest import create_topic, produce

pytestmark = pytest.mark.kafka


@pytest.fixture
def settings(kafka: str) -> CommonSettings:
    return CommonSettings(kafka_bootstrap=kafka)


async def _ten(kafka: str, topic: str) -> None:
    await create_topic(kafka, topic)
    await produce(kafka, topic, [(b"g", f"v{i}".encode()) for i in range(10)])


async def _until_end(kafka: str, tp: TopicPartition, end: int, within: float = 20.0) -> None:
    consumer: AIOKafkaConsumer[bytes, bytes] = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + within
        while (await consumer.end_offsets([tp]))[tp] < end:
            assert asyncio.get_running_loop().time() < deadline, f"{tp} never reached offset {end}"
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def test_reads_exactly_the_stretch_in_bounded_rounds(
    kafka: str, prefix: str, settings: CommonSettings
) -> None:
    topic = f"{prefix}hits"
    await _ten(kafka, topic)
    first = await read_between(settings, topic, 0, 2, 8, limit=4, seconds=10)
    assert [r.offset for r in first.records] == [2, 3, 4, 5]
    assert (first.next_offset, first.expired) == (6, 0)
    rest = await read_between(settings, topic, 0, first.next_offset, 8, limit=4, seconds=10)
    assert [(r.offset, r.value) for r in rest.records] == [(6, b"v6"), (7, b"v7")]  # not 8: the end is apart
    assert rest.next_offset == 8
    event = Replayed.of(rest.records[0])
    assert (event.message.topic, event.message.partition, event.message.offset) == (topic, 0, 6)
    assert (event.key, event.value, event.message.value) == (b"g", b"v6", b"v6")


async def test_an_offset_without_a_record_still_ends_the_stretch(
    kafka: str, prefix: str, settings: CommonSettings
) -> None:
    """A transaction's commit marker takes an offset that no consumer ever sees."""
    topic = f"{prefix}hits"
    await create_topic(kafka, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, transactional_id=f"{prefix}tx")
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send_and_wait(topic, key=b"g", value=f"v{i}".encode())
    finally:
        await producer.stop()
    # The coordinator writes the commit marker after the commit returns: wait for it to take offset 3.
    await _until_end(kafka, TopicPartition(topic, 0), 4)
    await produce(kafka, topic, [(b"g", b"after")])  # offset 4: 3 is the commit marker
    got = await read_between(settings, topic, 0, 0, 4, limit=100, seconds=10)
    assert [r.offset for r in got.records] == [0, 1, 2]
    assert got.next_offset == 4


async def test_records_deleted_before_anyone_read_them_are_counted_not_invented(
    kafka: str, prefix: str, settings: CommonSettings
) -> None:
    topic = f"{prefix}hits"
    await _ten(kafka, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(before_offset=4)})
    finally:
        await admin.close()
    got = await read_between(settings, topic, 0, 2, 6, limit=100, seconds=10)
    assert (got.expired, [r.offset for r in got.records], got.next_offset) == (2, [4, 5], 6)
    gone = await read_between(settings, topic, 0, 0, 3, limit=100, seconds=10)
    assert (gone.expired, gone.records, gone.next_offset) == (3, [], 3)


async def test_records_kafka_does_not_give_are_a_retry_not_a_silent_skip(
    kafka: str, prefix: str, settings: CommonSettings
) -> None:
    topic = f"{prefix}hits"
    await _ten(kafka, topic)
    with pytest.raises(RetryLater, match=r"hits\[0\]: offsets 10-14 not read within 1 s"):
        await read_between(settings, topic, 0, 8, 15, limit=100, seconds=1)
