"""Small aiokafka helpers: topic creation and reachability checks."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from services.common.settings import CommonSettings
from services.common.topics import Topics

__all__ = ["cluster_reachable", "ensure_topics", "ensure_topics_sync"]

log = logging.getLogger(__name__)


def cluster_reachable(bootstrap: str, timeout: float = 2.0) -> bool:
    async def _probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
            await asyncio.wait_for(admin.describe_cluster(), timeout)
            return True
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await admin.close()

    return asyncio.run(_probe())


async def ensure_topics(settings: CommonSettings, retries: int = 30) -> list[str]:
    """Create every yuqing topic with the configured partitions; existing topics are left alone."""
    topics = Topics.with_prefix(settings.topic_prefix).all()
    for attempt in range(retries):
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                new = [
                    NewTopic(
                        t,
                        settings.partitions,
                        settings.replication_factor,
                        topic_configs={"retention.ms": "3600000"} if t.endswith(".ticks") else {},
                    )
                    for t in missing
                ]
                try:
                    await admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass
            return missing
        except KafkaError as exc:
            log.warning("creating topics failed (attempt %d): %s", attempt + 1, exc)
            await asyncio.sleep(1)
        finally:
            await admin.close()
    raise RuntimeError(f"could not create topics on {settings.kafka_bootstrap}")


def ensure_topics_sync(settings: CommonSettings) -> list[str]:
    return asyncio.run(ensure_topics(settings))
