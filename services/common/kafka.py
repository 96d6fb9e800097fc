"""Small aiokafka helpers: topic creation and reachability checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from schemas.topics import Topics
from services.common.exceptions import KafkaSetupError
from services.common.kafka_security import client_kwargs
from services.common.settings import CommonSettings

__all__ = [
    "SPREAD_SNAPSHOT_CONFIG",
    "cluster_brokers",
    "cluster_reachable",
    "ensure_changelogs",
    "ensure_topics",
    "ensure_topics_sync",
    "topic_configs",
]

log = logging.getLogger(__name__)

_METADATA_ATTEMPTS = 20


def cluster_brokers(bootstrap: str, timeout: float = 2.0, **client: Any) -> int:
    """How many brokers the cluster at `bootstrap` reports (0 if it does not answer). `client` are the
    client's security arguments (kafka_security.client_kwargs)."""

    async def _probe() -> int:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **client
        )
        try:
            await asyncio.wait_for(admin.start(), timeout)
            described = await asyncio.wait_for(admin.describe_cluster(), timeout)
            return len(described["brokers"])
        except (KafkaError, OSError, TimeoutError):
            return 0
        finally:
            await admin.close()

    return asyncio.run(_probe())


def cluster_reachable(bootstrap: str, timeout: float = 2.0, **client: Any) -> bool:
    return cluster_brokers(bootstrap, timeout, **client) > 0


def topic_configs(settings: CommonSettings, extra: dict[str, str]) -> dict[str, str]:
    """A topic's configs at creation: with 3 or more replicas, writes (acks=all) need a majority of them in
    sync (min.insync.replicas 2 of 3), so an acknowledged message survives the loss of any one broker and a
    lone leader cannot accept what it alone holds. Below 3 the broker's default stays."""
    rf = settings.replication_factor
    configs = dict(extra)
    if rf >= 3:
        configs.setdefault("min.insync.replicas", str(rf // 2 + 1))
    return configs


def _shared_config(topic: str) -> dict[str, str]:
    """Ticks are kept an hour; spread snapshots are compacted to the latest per rule group (a reader wants
    each group's live counts, not every reading)."""
    if topic.endswith(".ticks"):
        return {"retention.ms": "3600000"}
    if topic.endswith("spread-snapshots"):
        return dict(SPREAD_SNAPSHOT_CONFIG)
    return {}


# Compacted, with segments rolled hourly so that compaction keeps up with a reading every 15 s per group.
SPREAD_SNAPSHOT_CONFIG = {"cleanup.policy": "compact", "segment.ms": "3600000"}


def creation_errors(topic_errors: list[Any]) -> list[str]:
    """Per-topic failures in a CreateTopics response, 'topic: ErrorName (message)'; an existing topic is fine.

    The broker answers a create request with an error code per topic rather than failing the request, and
    aiokafka hands the response back as is: unchecked, a topic that could not be created (replication factor
    above the broker count, a policy violation) goes unnoticed until a worker fails to subscribe."""
    failed = []
    for item in topic_errors:
        topic, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        failed.append(
            f"{topic}: {for_code(code).__name__} (code {code}" + (f", {message})" if message else ")")
        )
    return failed


def short_topics(described: list[dict[str, Any]], partitions: int) -> list[tuple[str, int]]:
    """(topic, partition count) of existing topics with fewer partitions than configured."""
    return [
        (t["topic"], len(t["partitions"]))
        for t in described
        if t.get("error_code", 0) == 0 and len(t["partitions"]) < partitions
    ]


async def _create_missing(
    admin: AIOKafkaAdminClient,
    settings: CommonSettings,
    topics: list[str],
    existing: set[str],
    configs: Callable[[str], dict[str, str]],
) -> list[str]:
    """Create those of `topics` not in `existing` with the configured partitions, replication and each
    topic's `configs`; KafkaSetupError naming every topic the broker refused. Returns the created ones."""
    missing = [t for t in topics if t not in existing]
    if missing:
        response = await admin.create_topics(
            [
                NewTopic(
                    t,
                    settings.partitions,
                    settings.replication_factor,
                    topic_configs=topic_configs(settings, configs(t)),
                )
                for t in missing
            ]
        )
        failed = creation_errors(list(response.topic_errors))
        if failed:
            raise KafkaSetupError(
                f"Kafka at {settings.kafka_bootstrap} refused to create {len(failed)} topic(s) with "
                f"{settings.partitions} partitions and replication factor "
                f"{settings.replication_factor}: " + "; ".join(failed)
            )
    return missing


async def ensure_topics(settings: CommonSettings, retries: int = 30) -> list[str]:
    """Create every yuqing topic with the configured partitions; existing topics are left alone.

    Connection problems are retried (Kafka may still be starting); a topic the broker refuses to create
    raises KafkaSetupError at once. An existing topic with fewer partitions than configured is logged: it
    bounds parallelism, and co-partitioned topics must agree (faust refuses a mismatch)."""
    topics = Topics.with_prefix(settings.topic_prefix).all()
    last: Exception | None = None
    for attempt in range(retries):
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **client_kwargs(settings))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = await _create_missing(
                admin,
                settings,
                topics,
                existing,
                _shared_config,
            )
            present = [t for t in topics if t in existing]
            for topic, count in short_topics(
                await admin.describe_topics(present) if present else [], settings.partitions
            ):
                log.warning(
                    "topic %s has %d partitions, fewer than YUQING_PARTITIONS=%d: at most %d workers share "
                    "it, and co-partitioned topics must match (docs/operations.md#scaling)",
                    topic,
                    count,
                    settings.partitions,
                    count,
                )
            return missing
        except KafkaError as exc:
            last = exc
            log.warning("creating topics failed (attempt %d of %d): %s", attempt + 1, retries, exc)
            await asyncio.sleep(1)
        finally:
            await admin.close()
    raise KafkaSetupError(
        f"could not create topics on {settings.kafka_bootstrap} after {retries} attempts: {last}; "
        "expected a reachable Kafka (check YUQING_KAFKA_BOOTSTRAP)"
    )


async def ensure_changelogs(
    settings: CommonSettings, changelogs: Iterable[str], also: Iterable[str] = ()
) -> dict[str, int]:
    """Create the compacted changelog topics a worker's tables write to, before the worker starts, and wait
    until each of them and of `also` (its inputs) shows its partitions. Returns the partition counts.

    A topic created a moment ago can be described, and taken into a client's metadata, with no partitions
    until its metadata has spread. faust, left to create its own changelog, took such a snapshot and then
    refused every table write for minutes ("changelog topic ... has 0 partitions"): the escalation worker
    sent an incident's events, failed to save its row, and opened a new incident on the next tier change."""
    changelogs = list(changelogs)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await _create_missing(admin, settings, changelogs, existing, lambda _: {"cleanup.policy": "compact"})
        names = [*also, *changelogs]
        counts: dict[str, int] = {}
        for _ in range(_METADATA_ATTEMPTS):
            # Created a moment ago (here, or by a replica starting beside us): ask again rather than refuse.
            counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
            if all(counts.values()):
                break
            await asyncio.sleep(0.5)
        empty = sorted(t for t, n in counts.items() if not n)
        if empty:
            raise KafkaSetupError(f"topics still without partitions after creation: {', '.join(empty)}")
        return counts
    finally:
        await admin.close()


def ensure_topics_sync(settings: CommonSettings) -> list[str]:
    return asyncio.run(ensure_topics(settings))
