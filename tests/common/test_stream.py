"""The shell's tick ownership: a tick touches only the rows whose key is home on its own partition."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.settings import CommonSettings
from services.common.stream import StreamShell

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


@pytest.mark.kafka
async def test_home_partition_is_where_kafka_puts_the_key(kafka: str, prefix: str, tmp_path: Path) -> None:
    topic = f"{prefix}keyed"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
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
