"""The notifier pipeline as stages: dedup -> send with retry -> record. No Kafka here."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any

from schemas.events import Alert, Delivery, DeliveryOutcome
from services.common.clock import Clock, system_clock
from services.notifier.channels import Channel

__all__ = ["Dispatcher"]


class Dispatcher:
    """Sends an alert to every channel once per dedup key; every attempt becomes a Delivery."""

    def __init__(
        self,
        channels: list[Channel],
        max_attempts: int = 5,
        clock: Clock = system_clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        base_delay: float = 0.5,
    ) -> None:
        self.channels = channels
        self.max_attempts = max_attempts
        self.clock = clock
        self.sleep = sleep
        self.base_delay = base_delay

    async def dispatch(self, alert: Alert, log: MutableMapping[str, dict[str, Any]]) -> list[Delivery]:
        out: list[Delivery] = []
        for channel in self.channels:
            key = f"{alert.dedup_key}|{channel.name}"
            if log.get(key, {}).get("outcome") == DeliveryOutcome.delivered.value:
                continue  # sent before a restart or rebalance: never page twice
            for attempt in range(1, self.max_attempts + 1):
                retryable, error = await channel.send(alert)
                now = self.clock()
                if error is None:
                    out.append(self._record(alert, channel.name, DeliveryOutcome.delivered, attempt, "", now))
                    log[key] = {"outcome": DeliveryOutcome.delivered.value, "at": now.isoformat()}
                    break
                last = not retryable or attempt == self.max_attempts
                outcome = DeliveryOutcome.failed if last else DeliveryOutcome.retrying
                out.append(self._record(alert, channel.name, outcome, attempt, error, now))
                if last:
                    log[key] = {
                        "outcome": DeliveryOutcome.failed.value,
                        "at": now.isoformat(),
                        "error": error,
                    }
                    break
                # Exponential backoff with full jitter; not a security use of random.
                await self.sleep(random.uniform(0, self.base_delay * 2 ** (attempt - 1)))  # noqa: S311
        return out

    @staticmethod
    def _record(
        alert: Alert, channel: str, outcome: DeliveryOutcome, attempt: int, error: str, now: datetime
    ) -> Delivery:
        latency = (now - alert.hit_time).total_seconds() if alert.hit_time else None
        return Delivery(
            event_time=now,
            alert_id=alert.event_id,
            dedup_key=alert.dedup_key,
            channel=channel,
            outcome=outcome,
            attempt=attempt,
            error=error[:500],
            latency_seconds=latency,
        )
