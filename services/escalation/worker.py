"""Escalation worker: tier-changes and incident-actions -> incidents and alerts; ticks fire deadlines.

Inputs are processed in order, each once, and acked only once the incident row their processing wrote is
acknowledged (StreamShell.consume): a tier change or an operator's action that faust dropped as the worker
was assigned its partitions is read from Kafka and processed in its turn, instead of waiting for the next
restart (services/common/sequence.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge

from schemas.events import IncidentAction, TierChange
from services.common import json
from services.common.clock import system_clock
from services.common.config import load_config
from services.common.exceptions import DeadLetter
from services.common.links import sign_link
from services.common.stream import StreamShell, decode, expect_key
from services.escalation.core import EscalationCore, Incident, Outcome
from services.escalation.exceptions import InvalidTransition
from services.escalation.settings import EscalationSettings
from services.escalation.workdays import SHANGHAI

__all__ = ["build"]


def _link_maker(settings: EscalationSettings) -> Callable[[str, str, datetime], str | None] | None:
    if settings.link_secret is None:
        return None
    secret = settings.link_secret.get_secret_value().encode()
    ttl = timedelta(hours=settings.link_ttl_hours)
    base = settings.public_url.rstrip("/")

    def make(incident_id: str, group: str, now: datetime) -> str:
        return f"{base}/v1/ack/{sign_link(secret, incident_id, group, 'ack', now, ttl)}"

    return make


def build(settings: EscalationSettings) -> StreamShell:
    shell = StreamShell("escalation", settings)
    config = load_config(settings.config_file)
    core = EscalationCore(config.escalation, ack_link=_link_maker(settings))
    core.calendar.warn_missing(
        system_clock().astimezone(SHANGHAI).date(),
        f"{settings.config_file} (YUQING_CONFIG_FILE)"
        if settings.config_file
        else "a config file of your own (YUQING_CONFIG_FILE; the bundled example is in use)",
    )
    t = shell.topics
    incidents_topic = shell.raw_topic(t.incidents)
    alerts_topic = shell.raw_topic(t.alerts)
    incidents = shell.table("incidents")
    breaches = Counter(
        "yuqing_sla_breaches_total",
        "SLA deadlines breached, per deadline.",
        ["deadline"],
        registry=shell.registry,
    )
    open_gauge = Gauge(
        "yuqing_incidents_open", "Open incidents on this worker's partitions.", registry=shell.registry
    )

    async def publish(out: Outcome) -> None:
        """Output first, then state (docs/reliability.md): a crash in between fires again after recovery,
        with the same event ids and dedup keys, instead of recording a page that was never sent. The row is
        written only once the broker acknowledged the output: the changelog record goes to another partition,
        possibly another broker, and could otherwise land first."""
        sent = []
        for ev in out.events:
            if ev.kind.value == "sla_breached":
                breaches.labels(ev.detail.split(" ")[0]).inc()
            sent.append(await incidents_topic.send(key=ev.group.encode(), value=json.dumps(ev)))
        for alert in out.alerts:
            sent.append(await alerts_topic.send(key=alert.group.encode(), value=json.dumps(alert)))
        for delivery in sent:
            await delivery
        out.save(incidents)

    async def handle(event: Any) -> None:
        now = system_clock()
        if shell.is_tick(event):
            await publish(core.on_tick(incidents, now, shell.tick_keys(event, incidents)))
            open_gauge.set(
                sum(1 for row in incidents.values() if row and Incident.model_validate(row).is_open)
            )
            return
        if event.message.topic == t.tier_changes:
            change = decode(TierChange, event.value)
            expect_key(event.key, change.group, "rule group")
            await publish(core.on_tier_change(change, incidents, now))
            return
        action = decode(IncidentAction, event.value)
        expect_key(event.key, action.group, "rule group")
        try:
            await publish(core.on_action(action, incidents))
        except InvalidTransition as exc:
            raise DeadLetter("invalid_transition", str(exc)) from None

    @shell.app.agent(shell.raw_topic(t.tier_changes, t.incident_actions, shell.ticks_name), name="escalation")
    async def _escalate(stream: Any) -> None:
        await shell.consume(stream, handle)

    shell.every(settings.tick_seconds)
    return shell
