"""A record aiokafka cannot parse becomes a stand-in a worker dead-letters, not a fetch that fails forever.

aiokafka decodes every header key as UTF-8 while it parses a fetched record batch. Kafka's Java client only
writes UTF-8 there, but librdkafka, sarama and others write whatever bytes they are given. One header key
that is not UTF-8 made every fetch of its partition raise UnicodeDecodeError from getmany(), before any
record reached the worker: no dead letter, no way past it, and the same failure after every restart, in the
batch loop and in faust's consumer alike. One message from an outside producer stopped scoring for good,
and the records fetched before it in the same response were dropped with it.

install() makes each fetch that meets such a record end with a stand-in: a record at the first offset not
delivered, without key or value, whose only header (UNREADABLE_HEADER) names the error. The next fetch
starts after it; the worker dead-letters the stand-in with reason `unreadable` (stand_in_detail). aiokafka
parses a record batch from its start, so the records after the bad one in the same producer batch cannot be
read either: each becomes a stand-in of its own, one fetch each, and its dead letter names its offset (the
bytes can be read with another client, e.g. `kcat -C -t <topic> -p <partition> -o <offset> -c 1`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.structs import ConsumerRecord

__all__ = ["UNREADABLE_HEADER", "install", "stand_in_detail"]

UNREADABLE_HEADER = "yuqing-unreadable"
# In every stand-in's header, so that no producer can make a record of its own pass for one.
_TOKEN = secrets.token_hex(16)


class _TolerantPartitionRecords(fetcher.PartitionRecords):
    def _unpack_records(self) -> Iterator[Any]:
        try:
            yield from super()._unpack_records()
        except UnicodeDecodeError as exc:
            # next_fetch_offset is the first offset not yet delivered: the bad record, or one after it in
            # the same batch (a fetch from there parses the batch from its start and fails again).
            offset: int = self.next_fetch_offset  # type: ignore[has-type]
            self.next_fetch_offset = offset + 1
            detail = (
                f"the Kafka client cannot parse this record ({type(exc).__name__}: {exc}; a header key "
                "must be UTF-8), nor a later one in the same producer batch; read its bytes with another "
                "client"
            )
            yield ConsumerRecord(
                topic=self._tp.topic,
                partition=self._tp.partition,
                offset=offset,
                timestamp=int(time.time() * 1000),
                timestamp_type=0,
                key=None,
                value=None,
                checksum=None,
                serialized_key_size=-1,
                serialized_value_size=-1,
                headers=[(UNREADABLE_HEADER, f"{_TOKEN} {detail}".encode())],
            )


def install() -> None:
    """Make aiokafka's fetcher build the tolerant kind of PartitionRecords (idempotent)."""
    fetcher.PartitionRecords = _TolerantPartitionRecords


def stand_in_detail(record: Any) -> str | None:
    """The error a stand-in carries, or None for any real record (`record`: aiokafka's or faust's)."""
    headers = record.headers
    if record.value is not None or not isinstance(headers, list) or len(headers) != 1:
        return None
    item = headers[0]
    if not (isinstance(item, tuple) and len(item) == 2 and item[0] == UNREADABLE_HEADER):
        return None
    if not isinstance(item[1], bytes):
        return None
    token, _, detail = item[1].partition(b" ")
    if not secrets.compare_digest(token, _TOKEN.encode()):
        return None
    return detail.decode("utf-8", "replace")
