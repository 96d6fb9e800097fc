"""The notifier pipeline as stages: route -> dedup -> rate-limit -> send with retry -> fallback -> record.

No Kafka here; time, sleeping, randomness and the wait for durable state are injected.

Every send is recorded as an attempt in the delivery log, and `settle` waits until that record is durable,
before the request leaves: after a crash the log tells which alerts may already have reached a channel. Such
an alert is sent again, because a lost alert is worse than a repeat, but never silently twice: a channel that
drops a second copy by the alert's id (a webhook receiver keyed on `X-Yuqing-Event-Id`) gets the same
request, and a channel people read (robots, email, the console) gets it marked as a possible repeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from schemas.events import Alert, Delivery, DeliveryOutcome
from services.common.clock import Clock, system_clock
from services.common.exceptions import DeadLetter, RetryLater
from services.notifier.channels import Channel
from services.notifier.exceptions import NotifierError
from services.notifier.ratelimit import TokenBucket
from services.notifier.routing import OnCall, Router

__all__ = ["Dispatcher", "send_batches"]

log = logging.getLogger(__name__)

_MAX_RETRY_AFTER = 30.0  # a channel asking for longer is failed over instead of stalling the partition
_ATTEMPTED = "attempted"


async def _nothing_to_settle() -> None:
    """A plain dict as the delivery log is durable at once."""


class Dispatcher:
    """Sends an alert to its routed channels once per dedup key; every attempt becomes a Delivery."""

    def __init__(
        self,
        channels: Mapping[str, Channel] | list[Channel],
        max_attempts: int = 5,
        clock: Clock = system_clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        base_delay: float = 0.5,
        router: Router | None = None,
        oncall: OnCall | None = None,
        rate_per_minute: Mapping[str, float | None] | None = None,
        observe: Callable[[str, str], None] = lambda event, channel: None,
        settle: Callable[[], Awaitable[None]] = _nothing_to_settle,
    ) -> None:
        self.channels = channels if isinstance(channels, Mapping) else {c.name: c for c in channels}
        self.max_attempts = max_attempts
        self.clock = clock
        self.sleep = sleep
        self.base_delay = base_delay
        self.router = router or Router((), tuple(self.channels))
        self.oncall = oncall
        self.buckets = {
            name: TokenBucket(rate, clock()) for name, rate in (rate_per_minute or {}).items() if rate
        }
        self.observe = observe
        self.settle = settle

    async def dispatch(self, alert: Alert, log: MutableMapping[str, dict[str, Any]]) -> list[Delivery]:
        now = self.clock()
        primary, fallback, routed = self.router.route(alert, now)
        if not routed:
            for name in primary:
                self.observe("unrouted", name)
        alert = self._with_oncall(alert, now)
        out: list[Delivery] = []
        delivered = [await self._deliver(alert, name, log, out) for name in primary]
        if primary and not any(delivered) and fallback:
            for name in fallback:
                self.observe("fallback", name)
                await self._deliver(alert, name, log, out)
        return out

    def _with_oncall(self, alert: Alert, now: datetime) -> Alert:
        who = self.oncall.who(alert.audience, now) if self.oncall else None
        if not who:
            return alert
        return alert.model_copy(update={"body": f"{alert.body}\n\n值班 on call ({alert.audience}): @{who}"})

    async def _deliver(
        self, alert: Alert, name: str, log: MutableMapping[str, dict[str, Any]], out: list[Delivery]
    ) -> bool:
        channel = self.channels.get(name)
        if channel is None:
            raise NotifierError(
                f"channel {name!r} is routed to but not configured; have {sorted(self.channels)}"
            )
        key = f"{alert.dedup_key}|{name}"
        before = log.get(key) or {}
        if before.get("outcome") == DeliveryOutcome.delivered.value:
            return True  # sent before a restart or rebalance: never page twice
        # Any other record is an earlier attempt whose outcome never reached the log (a crash while the
        # request was out) or a failure that may have come after the channel had the message.
        again = bool(before)
        if again:
            self.observe("resent" if channel.dedups_by_id else "possible_repeat", name)
        log[key] = {"outcome": _ATTEMPTED, "at": self.clock().isoformat()}
        await self.settle()  # on record before anything leaves
        for attempt in range(1, self.max_attempts + 1):
            await self._respect_rate_limit(name)
            retryable, error, wait = await channel.send(alert, again and not channel.dedups_by_id)
            now = self.clock()
            if error is None:
                out.append(self._record(alert, name, DeliveryOutcome.delivered, attempt, "", now))
                log[key] = {"outcome": DeliveryOutcome.delivered.value, "at": now.isoformat()}
                return True
            # Backoff with full jitter, or the channel's Retry-After. Not a security use of random.
            delay = random.uniform(0, self.base_delay * 2 ** (attempt - 1))  # noqa: S311
            too_long = wait is not None and wait > _MAX_RETRY_AFTER
            if wait is not None:
                delay = max(delay, wait)
                if too_long:
                    error = (
                        f"{error} (asked to wait {wait:.0f} s, over {_MAX_RETRY_AFTER:.0f} s: failed over)"
                    )
            last = not retryable or attempt == self.max_attempts or too_long
            out.append(
                self._record(
                    alert,
                    name,
                    DeliveryOutcome.failed if last else DeliveryOutcome.retrying,
                    attempt,
                    error,
                    now,
                )
            )
            if last:
                log[key] = {
                    "outcome": DeliveryOutcome.failed.value,
                    "at": now.isoformat(),
                    "error": error[:300],
                }
                return False
            self.observe("retry", name)
            await self.sleep(delay)
        return False

    async def _respect_rate_limit(self, name: str) -> None:
        bucket = self.buckets.get(name)
        if bucket is None:
            return
        wait = bucket.wait_for(self.clock())
        if wait > 0:
            self.observe("rate_limited", name)
            await self.sleep(wait)
            bucket.wait_for(self.clock())

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


async def send_batches(
    batches: list[Alert],
    deliver: Callable[[Alert], Awaitable[None]],
    dead_letter: Callable[[Alert, str, str], Awaitable[None]],
    done: Callable[[Alert], None],
) -> None:
    """Deliver each batch on its own: one that fails is dead-lettered (as the alert, not the tick that
    released it) and the others still go. A batch is `done` only once its outcome is recorded.

    RetryLater (Kafka did not acknowledge the attempt's record) is not a failure of the batch: it propagates,
    the event is processed again (StreamShell.guarded), and the batch, still frozen, is sent then."""
    for batch in batches:
        try:
            await deliver(batch)
        except RetryLater:
            raise
        except DeadLetter as exc:
            await dead_letter(batch, exc.reason, exc.detail)
        except Exception as exc:
            log.exception("delivering batch %s failed", batch.dedup_key)
            await dead_letter(batch, "processing_error", f"{type(exc).__name__}: {exc}")
        done(batch)
