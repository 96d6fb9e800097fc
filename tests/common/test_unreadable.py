"""A record aiokafka cannot parse (a header key that is not UTF-8) ends its fetch as a stand-in, instead of
making every fetch of the partition fail: the records before it are delivered, and the next fetch starts
after it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.record.memory_records import MemoryRecords

from services.common.unreadable import UNREADABLE_HEADER, install, stand_in_detail


class RawHeaderKey(str):
    """A header key that encodes to arbitrary bytes: what librdkafka or sarama may write."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawHeaderKey:
        key = super().__new__(cls, "x")
        key.raw = raw
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def record_batch(base: int, records: list[tuple[bytes, bytes | None]]) -> bytes:
    """One producer batch at offset `base`: (value, header key or None) per record."""
    builder = _DefaultRecordBatchBuilderPy(
        2, 0, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=0, batch_size=1 << 20
    )
    for n, (value, header_key) in enumerate(records):
        headers = [] if header_key is None else [(RawHeaderKey(header_key), b"v")]
        builder.append(n, timestamp=None, key=b"k", value=value, headers=headers)
    buffer = bytearray(builder.build())
    buffer[0:8] = base.to_bytes(8, "big")  # the base offset, as the broker assigns it
    return bytes(buffer)


def fetch(data: bytes, offset: int) -> list[Any]:
    tp = TopicPartition("y.posts.raw", 0)
    records = fetcher.PartitionRecords(tp, MemoryRecords(data), [], offset, None, None, True, 0)
    return list(records)


@pytest.fixture(autouse=True)
def _installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetcher, "PartitionRecords", fetcher.PartitionRecords)  # undone after the test
    install()


def test_without_the_fix_one_bad_header_key_fails_the_whole_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    original = fetcher.PartitionRecords.__mro__[1]
    data = record_batch(0, [(b"a", None), (b"bad", b"\xff\xfe")])
    tp = TopicPartition("y.posts.raw", 0)
    with pytest.raises(UnicodeDecodeError):
        list(original(tp, MemoryRecords(data), [], 0, None, None, True, 0))


def test_the_records_before_it_are_delivered_and_the_fetch_ends_with_a_stand_in() -> None:
    data = record_batch(0, [(b"a", None), (b"b", None)]) + record_batch(
        2, [(b"c", None), (b"bad", b"\xff\xfe"), (b"after", None)]
    )
    got = fetch(data, 0)
    assert [(r.offset, r.value) for r in got] == [(0, b"a"), (1, b"b"), (2, b"c"), (3, None)]
    stand_in = got[-1]
    detail = stand_in_detail(stand_in)
    assert detail is not None
    assert "UnicodeDecodeError" in detail
    assert "header key" in detail
    assert stand_in.key is None


def test_each_later_record_of_the_bad_batch_gets_its_own_stand_in_then_reading_goes_on() -> None:
    data = record_batch(2, [(b"c", None), (b"bad", b"\xff\xfe"), (b"lost", None)])
    later = record_batch(5, [(b"d", None)])
    assert [(r.offset, r.value) for r in fetch(data + later, 4)] == [(4, None)]
    assert [(r.offset, r.value) for r in fetch(later, 5)] == [(5, b"d")]


def test_no_producer_can_forge_a_stand_in() -> None:
    forged = SimpleNamespace(value=None, headers=[(UNREADABLE_HEADER, b"0" * 32 + b" a fake error")])
    assert stand_in_detail(forged) is None
    assert stand_in_detail(SimpleNamespace(value=None, headers=[(UNREADABLE_HEADER, b"\xff\xfe")])) is None
    assert stand_in_detail(SimpleNamespace(value=None, headers=[])) is None
    assert stand_in_detail(SimpleNamespace(value=b"x", headers=None)) is None
