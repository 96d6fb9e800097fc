"""Notifier worker: keyword-hits are grouped, alerts are sent once per dedup key, deliveries recorded."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

from schemas.events import Alert, AlertKind, KeywordHit
from services.common.clock import system_clock
from services.common.config import load_config
from services.common.stream import StreamShell, decode
from services.notifier.channels import build_channel
from services.notifier.core import Dispatcher
from services.notifier.exceptions import DeliveryFailed
from services.notifier.grouping import HitGrouper
from services.notifier.routing import Router
from services.notifier.settings import NotifierSettings

__all__ = ["build"]


def build(settings: NotifierSettings) -> StreamShell:
    shell = StreamShell("notifier", settings)
    n = load_config(settings.config_file).notifier
    grouper = HitGrouper(n)
    channels = {c.name: build_channel(c) for c in n.channels}
    events = Counter(
        "yuqing_notifier_events_total",
        "Retries, rate-limited waits and fallbacks, per channel.",
        ["event", "channel"],
        registry=shell.registry,
    )
    dispatcher = Dispatcher(
        channels,
        n.max_attempts,
        router=Router(n.routes, tuple(channels)),
        oncall=n.oncall,
        rate_per_minute={name: n.rate_per_minute for name in channels},
        observe=lambda event, channel: events.labels(event, channel).inc(),
    )
    t = shell.topics
    deliveries_topic = shell.raw_topic(t.deliveries)
    pending = shell.table("pending-hits")
    delivery_log = shell.table("delivery-log")
    latency = Histogram(
        "yuqing_alert_latency_seconds",
        "From keyword hit (detection) to delivery.",
        buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1200, 3600),
        registry=shell.registry,
    )
    outcomes = Counter(
        "yuqing_notifications_total",
        "Delivery attempts by channel and outcome.",
        ["channel", "outcome"],
        registry=shell.registry,
    )

    async def deliver(alert: Alert) -> None:
        deliveries = await dispatcher.dispatch(alert, delivery_log)
        for d in deliveries:
            outcomes.labels(d.channel, d.outcome.value).inc()
            if d.outcome.value == "delivered" and d.latency_seconds is not None:
                latency.observe(max(0.0, d.latency_seconds))
            await shell.send_model(deliveries_topic, d.dedup_key, d)
        if deliveries and not any(d.outcome.value == "delivered" for d in deliveries):
            failed = {d.channel: d.error for d in deliveries if d.outcome.value == "failed"}
            raise DeliveryFailed(alert.dedup_key, failed)

    async def handle(event: Any) -> None:
        now = system_clock()
        if not shell.is_tick(event):
            if event.message.topic == t.keyword_hits:
                hit = decode(KeywordHit, event.value)
                if hit.first_seen:
                    grouper.add(hit, pending, now)
            else:
                alert = decode(Alert, event.value)
                if alert.kind in (AlertKind.incident_opened, AlertKind.tier_change):
                    grouper.set_tier(alert.group, alert.tier, pending)
                await deliver(alert)
        # Only the groups of this event's partition: see StreamShell.tick_keys.
        for batch in grouper.due(pending, now, shell.tick_keys(event, pending)):
            await deliver(batch)

    @shell.app.agent(shell.raw_topic(t.alerts, t.keyword_hits, shell.ticks_name), name="notifier")
    async def _notify(stream: Any) -> None:
        async for event in stream.events():
            await shell.guarded(event, handle)

    shell.every(settings.tick_seconds)
    return shell
