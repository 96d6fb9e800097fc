"""Every incident transition and deadline, with an injected clock (time is an argument; nothing sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import IncidentAction, IncidentActionKind, Tier, TierChange
from services.common.config import EscalationConfig
from services.escalation.core import EscalationCore, Incident
from services.escalation.exceptions import InvalidTransition

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
A = IncidentActionKind


def change(tier: Tier, previous: Tier = Tier.none, at: datetime = T0) -> TierChange:
    direction = "up" if tier.severity > previous.severity else "down"
    return TierChange(
        event_time=at,
        group="g",
        previous=previous,
        tier=tier,
        direction=direction,
        reason="threshold",
        window_end=at,
        counts={},
        detected_at=at,
    )


@pytest.fixture
def world() -> tuple[EscalationCore, dict[str, dict[str, Any]], str]:
    core, incidents = EscalationCore(EscalationConfig()), dict[str, dict[str, Any]]()
    iid = core.on_tier_change(change(Tier.level2), incidents, T0).events[0].incident_id
    return core, incidents, iid


def act(world, kind: A, minutes: float):
    core, incidents, iid = world
    return core.on_action(
        IncidentAction(
            event_time=T0 + timedelta(minutes=minutes), incident_id=iid, group="g", action=kind, actor="a"
        ),
        incidents,
    )


def state(world) -> str:
    return Incident.model_validate(world[1]["g"]).state.value


def deadlines(world) -> dict[str, Any]:
    return Incident.model_validate(world[1]["g"]).deadlines


def test_the_whole_level2_lifecycle(world):
    act(world, A.ack, 5)
    assert state(world) == "acknowledged"
    act(world, A.verified, 40)
    assert state(world) == "facts_verified"
    act(world, A.statement_published, 120)
    assert state(world) == "statement_published"
    core, incidents, _ = world
    core.on_tier_change(
        change(Tier.none, Tier.level2, T0 + timedelta(hours=5)), incidents, T0 + timedelta(hours=5)
    )
    assert state(world) == "cooling"  # spread stopped after the statement
    act(world, A.resolve, 26 * 60)
    assert state(world) == "closed"
    act(world, A.postmortem_filed, 27 * 60)
    assert state(world) == "postmortem_filed"
    d = deadlines(world)
    assert {k: v.met_at is not None for k, v in d.items()} == {
        "ack": True,
        "facts_verified": True,
        "statement_published": True,
        "postmortem_filed": True,
    }


def test_reopen_only_after_closing_and_it_needs_a_new_close(world):
    with pytest.raises(InvalidTransition, match="only a closed one can be reopened"):
        act(world, A.reopen, 1)
    act(world, A.resolve, 10)
    act(world, A.reopen, 20)
    assert state(world) == "acknowledged"
    with pytest.raises(InvalidTransition, match="after closing"):
        act(world, A.postmortem_filed, 30)


def test_actions_on_a_closed_incident_are_refused(world):
    act(world, A.resolve, 10)
    for kind in (A.ack, A.verified, A.statement_published, A.resolve):
        with pytest.raises(InvalidTransition, match="reopen it first"):
            act(world, kind, 11)


def test_deadlines_of_each_tier_from_detection():
    for tier, expected in (
        (Tier.level1, {"ack": 10, "meeting_convened": 30, "statement_published": 1440}),
        (Tier.level2, {"ack": 30, "facts_verified": 60, "statement_published": 1440}),
        (Tier.level3, {"ack": 30, "facts_verified": 60, "statement_published": 1440}),
    ):
        core, incidents = EscalationCore(EscalationConfig()), dict[str, dict[str, Any]]()
        core.on_tier_change(change(tier), incidents, T0)
        due = {
            k: (v.due_at - T0) / timedelta(minutes=1)
            for k, v in Incident.model_validate(incidents["g"]).deadlines.items()
        }
        assert due == expected, tier


def test_tier_up_tightens_pending_deadlines_and_adds_the_meeting(world):
    core, incidents, _ = world
    at = T0 + timedelta(minutes=5)
    out = core.on_tier_change(change(Tier.level1, Tier.level2, at), incidents, at)
    assert [a.kind.value for a in out.alerts] == ["tier_change"]
    d = deadlines(world)
    assert d["ack"].due_at == at + timedelta(minutes=10)  # 30 min for level 2, 10 from now for level 1
    assert d["meeting_convened"].due_at == at + timedelta(minutes=30)
    assert d["facts_verified"].due_at == T0 + timedelta(minutes=60)  # not loosened


def test_reminders_fire_once_each_and_breaches_once(world):
    core, incidents, _ = world

    def kinds(minutes: float) -> list[str]:
        return [
            f"{e.kind.value}:{e.detail.split(' ')[0]}"
            for e in core.on_tick(incidents, T0 + timedelta(minutes=minutes)).events
        ]

    assert kinds(14) == []
    assert kinds(15) == ["reminder:ack"]  # 50 % of 30 min
    assert kinds(15.5) == []
    assert kinds(24) == ["reminder:ack"]  # 80 %
    assert "sla_breached:ack" in kinds(30)
    assert "sla_breached:ack" not in kinds(31)
    act(world, A.verified, 35)
    assert all("facts_verified" not in k for k in kinds(61))  # met before due: no breach
