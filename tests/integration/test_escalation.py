"""Escalation over real Kafka: deadlines fire once, survive SIGKILL, and an ack link stops the paging."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import httpx
import pytest

from schemas.events import Alert, IncidentEvent, Tier, TierChange
from services.common import json
from tests.conftest import collect, produce, write_config
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.kafka

FAST_SLA = {
    "sla": {
        "level1": {"ack_minutes": 0.25, "response_minutes": 0.5, "statement_hours": 1},
        "level2": {"ack_minutes": 30, "response_minutes": 60},
        "level3": {"ack_minutes": 30, "response_minutes": 60},
        "reminder_fractions": [],
    }
}


def level1_change(group: str = "xinghe") -> TierChange:
    now = datetime.now(UTC)
    return TierChange(
        event_time=now,
        group=group,
        previous=Tier.none,
        tier=Tier.level1,
        direction="up",
        reason="threshold",
        window_end=now,
        counts={"2h": 120_000},
        detected_at=now,
    )


def incident_events(values: list[bytes]) -> list[IncidentEvent]:
    return [IncidentEvent.model_validate_json(v) for v in values]


async def test_breach_pages_the_group_lead_and_survives_sigkill(kafka, topics, stack_factory, tmp_path):
    config = write_config(tmp_path / "c.yaml", escalation=FAST_SLA)
    stack = stack_factory(config, services=("escalation",), extra_env={"YUQING_TICK_SECONDS": "1"})
    await produce(kafka, topics.tier_changes, [(b"xinghe", json.dumps(level1_change()))])
    opened = await collect(kafka, topics.incidents, lambda v: len(v) >= 1)
    assert incident_events(opened)[0].kind.value == "opened"

    # Kill the worker before the 15 s ack deadline, as a crash would, and start a new one.
    stack.kill("escalation")
    stack.start_one("escalation")

    def both_breached(values: list[bytes]) -> bool:
        return sum(e.kind.value == "sla_breached" for e in incident_events(values)) >= 2

    values = await collect(kafka, topics.incidents, both_breached, within=90)
    await asyncio.sleep(4)  # a few more ticks: nothing may fire twice
    values = await collect(kafka, topics.incidents, lambda v: False, within=3)
    events = incident_events(values)
    breaches = [e.detail.split(" ")[0] for e in events if e.kind.value == "sla_breached"]
    assert sorted(breaches) == ["ack", "meeting_convened"]
    assert len({e.event_id for e in events}) == len(events)
    alerts = [
        Alert.model_validate_json(v) for v in await collect(kafka, topics.alerts, lambda v: len(v) >= 3)
    ]
    breach_alerts = [a for a in alerts if a.kind.value == "sla_breached"]
    assert [a.audience for a in breach_alerts][:2] == ["group_lead", "leadership"]
    assert len({a.dedup_key for a in breach_alerts}) == len(breach_alerts)


async def test_ack_through_signed_link_stops_paging(kafka, topics, stack_factory, tmp_path):
    config = write_config(tmp_path / "c.yaml", escalation=FAST_SLA)
    secret = {"YUQING_LINK_SECRET": "link-key", "YUQING_TICK_SECONDS": "1"}
    stack = stack_factory(config, services=("ingest", "escalation"), extra_env=secret)
    api = f"http://127.0.0.1:{stack.api_port}"
    secret["YUQING_PUBLIC_URL"] = api
    stack.kill("escalation")
    stack.env.update(secret)
    stack.start_one("escalation")
    await wait_ready(api, stack)
    await produce(kafka, topics.tier_changes, [(b"xinghe", json.dumps(level1_change()))])
    alerts = await collect(kafka, topics.alerts, lambda v: len(v) >= 1)
    alert = Alert.model_validate_json(alerts[0])
    assert alert.ack_url is not None
    assert alert.ack_url.startswith(f"{api}/v1/ack/")
    async with httpx.AsyncClient() as client:
        for _ in range(50):  # the API's read model must have seen the incident
            page = await client.get(alert.ack_url)
            if "opened" in page.text:
                break
            await asyncio.sleep(0.2)
        assert page.status_code == 200
        assert "Acknowledge" in page.text
        done = await client.post(alert.ack_url)
        assert done.status_code == 200, done.text
        again = await client.post(alert.ack_url)
        assert again.status_code == 409
        token = alert.ack_url.rsplit("/", 1)[1]
        tampered = re.sub(r"\.(.)", lambda m: "." + ("A" if m.group(1) != "A" else "B"), token, count=1)
        assert (await client.post(f"{api}/v1/ack/{tampered}")).status_code == 403

    def acked(values: list[bytes]) -> bool:
        return any(e.state.value == "acknowledged" for e in incident_events(values))

    await collect(kafka, topics.incidents, acked, within=30)
    await asyncio.sleep(17)  # past the 15 s ack deadline
    events = incident_events(await collect(kafka, topics.incidents, lambda v: False, within=3))
    ack_breaches = [e for e in events if e.kind.value == "sla_breached" and e.detail.startswith("ack")]
    assert ack_breaches == []
    transition = next(e for e in events if e.state.value == "acknowledged")
    assert transition.actor.startswith("link:")
