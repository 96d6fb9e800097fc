"""Notifier worker: keyword-hits are grouped, forecasts become warnings, alerts are sent once per dedup key,
deliveries recorded.

Crash safety (docs/reliability.md): a due batch is frozen in its row and every send recorded as an attempt,
and both are acknowledged by Kafka before the request leaves, so a crash re-sends the same alert with the same
id (never a re-formed batch under a new key). An input is acked only once the table writes its processing
made are acknowledged, so a committed offset never runs ahead of the coverage it depends on; and inputs are
processed in order, each once (StreamShell.consume), so covered_to never passes a hit faust dropped
at start-up (services/common/sequence.py).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

from schemas.events import Alert, AlertKind, DeliveryOutcome, KeywordHit, TierChange, TierForecast
from services.common import json
from services.common.clock import system_clock
from services.common.config import load_config
from services.common.stream import StreamShell, decode, expect_key
from services.notifier.briefer import run_briefings
from services.notifier.channels import build_channel
from services.notifier.core import Dispatcher, send_batches
from services.notifier.exceptions import DeliveryFailed
from services.notifier.forecasts import ForecastWarnings
from services.notifier.grouping import HitGrouper
from services.notifier.routing import Router
from services.notifier.settings import NotifierSettings

__all__ = ["build"]


def build(settings: NotifierSettings) -> StreamShell:
    shell = StreamShell("notifier", settings)
    n = load_config(settings.config_file).notifier
    grouper = HitGrouper(n)
    warnings = ForecastWarnings()
    channels = {c.name: build_channel(c) for c in n.channels}
    events = Counter(
        "yuqing_notifier_events_total",
        "Retries, rate-limited waits, fallbacks and unrouted alerts, per channel.",
        ["event", "channel"],
        registry=shell.registry,
    )
    dispatcher = Dispatcher(
        channels,
        n.max_attempts,
        router=Router(n.routes, tuple(channels), n.unrouted_channels),
        oncall=n.oncall,
        rate_per_minute={c.name: c.rate for c in n.channels},
        observe=lambda event, channel: events.labels(event, channel).inc(),
        settle=shell.settle,
    )
    t = shell.topics
    deliveries_topic = shell.raw_topic(t.deliveries)
    pending = shell.table("pending-hits")
    delivery_log = shell.table("delivery-log")
    forecast_warnings = shell.table("forecast-warnings")
    latency = Histogram(
        "yuqing_alert_latency_seconds",
        "From the earliest keyword hit behind an alert (its detection) to the alert's first delivery.",
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
            await shell.send_model(deliveries_topic, d.dedup_key, d)
        first = next((d for d in deliveries if d.outcome == DeliveryOutcome.delivered), None)
        if first is not None and alert.hit_time is not None:
            # Once per alert, however many channels carried it: on-call staff wait for the first one.
            latency.observe(max(0.0, (first.event_time - alert.hit_time).total_seconds()))
        if deliveries and first is None:
            failed = {d.channel: d.error for d in deliveries if d.outcome == DeliveryOutcome.failed}
            raise DeliveryFailed(alert.dedup_key, failed)

    async def handle(event: Any) -> None:
        now = system_clock()
        if not shell.is_tick(event):
            topic = event.message.topic
            if topic == t.keyword_hits:
                hit = decode(KeywordHit, event.value)
                expect_key(event.key, hit.group, "rule group")
                if hit.first_seen:
                    grouper.add(hit, pending, now, event.message.partition, event.message.offset)
            elif topic == t.tier_changes:
                tc = decode(TierChange, event.value)
                expect_key(event.key, tc.group, "rule group")
                grouper.set_tier(tc.group, tc.tier, pending)  # down as well as up
                warnings.tier_changed(tc, forecast_warnings)
            elif topic == t.tier_forecasts:
                fc = decode(TierForecast, event.value)
                expect_key(event.key, fc.group, "rule group")
                warning = warnings.add(fc, forecast_warnings)
                if warning is not None:
                    await deliver(warning)
            else:
                alert = decode(Alert, event.value)
                expect_key(event.key, alert.group, "rule group")
                if alert.kind in (AlertKind.incident_opened, AlertKind.tier_change):
                    grouper.set_tier(alert.group, alert.tier, pending)
                await deliver(alert)
            # What follows sends batches that were due anyway: a death there is not this record's.
            shell.handled(event)

        async def dead_letter(batch: Alert, reason: str, detail: str) -> None:
            await shell.dead_letter(event, reason, detail, value=json.dumps(batch))

        # Only the groups of this event's partition: see StreamShell.tick_keys.
        batches = grouper.due(pending, now, shell.tick_keys(event, pending))
        if batches:
            # Frozen before anything is sent: a crash then re-sends these very batches, with the same keys.
            await shell.settle()
        await send_batches(
            batches,
            deliver,
            dead_letter,
            lambda batch: grouper.delivered(batch, pending, system_clock()),
        )

    @shell.app.agent(
        shell.raw_topic(t.alerts, t.keyword_hits, t.tier_changes, t.tier_forecasts, shell.ticks_name),
        name="notifier",
    )
    async def _notify(stream: Any) -> None:
        await shell.consume(stream, handle)

    if settings.briefings:
        alerts_out = shell.raw_topic(t.alerts)

        async def publish(alert: Alert) -> None:
            await shell.send_model(alerts_out, alert.group, alert)

        @shell.app.task
        async def _briefings() -> None:
            await run_briefings(settings, n, publish)

    shell.every(settings.tick_seconds)
    return shell
