"""Follow event topics from their beginning into an in-memory view, in every process that needs one.

The desk's read model and the notifier's briefing book each want every partition of a few topics (a view of
all rule groups, whichever worker owns them), so they read without a consumer group: each process sees
everything, and replicas need no coordination. A record that does not decode is skipped with a warning (its
producer dead-letters what it cannot process; a view has nothing to add); one the Kafka client cannot parse
comes through as a stand-in without a value (services/common/unreadable.py) and is skipped alike, instead of
stopping the view for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from services.common.kafka_security import client_kwargs
from services.common.settings import CommonSettings
from services.common.unreadable import install as read_unreadable_records

__all__ = ["follow_topics"]

log = logging.getLogger(__name__)


async def follow_topics(
    settings: CommonSettings,
    kinds: Mapping[str, type[BaseModel]],
    apply: Callable[[Any], None],
    caught_up: asyncio.Event | None = None,
    *,
    retry_seconds: float = 2.0,
) -> None:
    """Apply every record of the topics in `kinds` (topic -> event model), decoded, from the beginning; then
    follow them until cancelled. A Kafka error restarts from the beginning after `retry_seconds` (`apply`
    must ignore an event it has seen: ids are deterministic). `caught_up` is set once every partition has
    been read up to where it ended when this call first reached Kafka, so that a view is known complete."""
    read_unreadable_records()
    while True:
        consumer = AIOKafkaConsumer(
            *kinds,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **client_kwargs(settings),
        )
        try:
            await consumer.start()
            ends: dict[TopicPartition, int] | None = None
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        _apply(kinds, apply, record)
                if caught_up is not None and not caught_up.is_set() and consumer.assignment():
                    if ends is None:
                        ends = await consumer.end_offsets(list(consumer.assignment()))
                    if all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                        caught_up.set()
        except KafkaError as exc:
            log.warning("following %s failed, starting again: %s", ", ".join(kinds), exc)
            await asyncio.sleep(retry_seconds)
        finally:
            await consumer.stop()


def _apply(kinds: Mapping[str, type[BaseModel]], apply: Callable[[Any], None], record: Any) -> None:
    if record.value is None:
        log.warning(
            "skipping a record without a value at %s:%s@%s", record.topic, record.partition, record.offset
        )
        return
    try:
        event = kinds[record.topic].model_validate_json(record.value)
    except ValidationError:
        log.warning(
            "skipping an undecodable record at %s:%s@%s", record.topic, record.partition, record.offset
        )
        return
    apply(event)
