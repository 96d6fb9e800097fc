"""The Kafka producer of an HTTP service (ingest, desk), connected in the background.

An HTTP service must answer while Kafka is down: /healthz 200, /readyz and every route that produces 503, so
that an orchestrator does not restart it in a loop. `connect` creates the topics and starts the producer,
retrying until Kafka answers; until then `get` raises KafkaConnectionError naming the bootstrap servers.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from services.common.exceptions import KafkaSetupError
from services.common.kafka import ensure_topics
from services.common.kafka_security import client_kwargs
from services.common.settings import CommonSettings

__all__ = ["Producer"]

log = logging.getLogger(__name__)


class Producer:
    """acks=all and idempotent: a send is acknowledged once every in-sync replica has it."""

    def __init__(self, settings: CommonSettings, request_timeout_seconds: float) -> None:
        self.settings = settings
        self.request_timeout_seconds = request_timeout_seconds
        self._producer: AIOKafkaProducer | None = None

    async def connect(self) -> None:
        delay = 0.5
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                request_timeout_ms=int(self.request_timeout_seconds * 1000),
                **client_kwargs(self.settings),
            )
            try:
                await ensure_topics(self.settings, retries=1)
                await producer.start()
                break
            except (KafkaError, KafkaSetupError, OSError) as exc:
                await producer.stop()
                log.warning(
                    "Kafka at %s not usable yet, retrying in %.0fs: %s",
                    self.settings.kafka_bootstrap,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self._producer = producer

    def get(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaConnectionError(f"not connected to Kafka at {self.settings.kafka_bootstrap} yet")
        return self._producer

    async def unavailable(self) -> str | None:
        """Why Kafka cannot take a message now (for /readyz); None when it can."""
        try:
            await asyncio.wait_for(self.get().client.fetch_all_metadata(), 3.0)
        except (KafkaError, TimeoutError, OSError) as exc:
            return str(exc) or type(exc).__name__
        return None

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
