"""Level 1: the emergency meeting and the fact check are parallel steps; either may come first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.events import IncidentAction, IncidentActionKind, Tier, TierChange
from services.common.config import EscalationConfig
from services.escalation.core import EscalationCore
from services.escalation.exceptions import InvalidTransition

T0 = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)


def _open(tier: Tier) -> tuple[EscalationCore, dict, str]:
    core, incidents = EscalationCore(EscalationConfig()), dict[str, Any]()
    tc = TierChange(
        event_time=T0,
        group="g",
        previous=Tier.none,
        tier=tier,
        direction="up",
        reason="threshold",
        window_end=T0,
        counts={},
        detected_at=T0,
    )
    out = core.on_tier_change(tc, incidents, T0)
    return core, incidents, out.events[0].incident_id


def _act(core: EscalationCore, incidents: dict, iid: str, action: IncidentActionKind, minutes: int):
    return core.on_action(
        IncidentAction(
            event_time=T0 + timedelta(minutes=minutes), incident_id=iid, group="g", action=action, actor="a"
        ),
        incidents,
    )


@pytest.mark.parametrize("first", [IncidentActionKind.verified, IncidentActionKind.meeting_convened])
def test_level1_meeting_and_verification_in_either_order(first):
    core, incidents, iid = _open(Tier.level1)
    second = (
        IncidentActionKind.meeting_convened
        if first == IncidentActionKind.verified
        else IncidentActionKind.verified
    )
    _act(core, incidents, iid, first, 10)
    out = _act(core, incidents, iid, second, 20)
    deadlines = {d.name: d for d in out.events[-1].deadlines}
    assert deadlines["meeting_convened"].status == "met"
    assert deadlines["ack"].status == "met"
    with pytest.raises(InvalidTransition, match="already"):
        _act(core, incidents, iid, second, 25)
    _act(core, incidents, iid, IncidentActionKind.statement_published, 30)
    with pytest.raises(InvalidTransition, match="already statement_published"):
        _act(core, incidents, iid, first, 35)


def test_level2_has_no_meeting_step():
    core, incidents, iid = _open(Tier.level2)
    with pytest.raises(InvalidTransition, match="level-1 step"):
        _act(core, incidents, iid, IncidentActionKind.meeting_convened, 5)


def test_ladder_pages_each_rung_after_its_delay_then_repeats_until_ack():
    core, incidents, iid = _open(
        Tier.level1
    )  # level 1: group lead at 10 min, leadership at 20, repeat every 10

    def pages(minutes: float) -> list[str]:
        out = core.on_tick(incidents, T0 + timedelta(minutes=minutes))
        return [f"{a.kind.value}:{a.audience}" for a in out.alerts if a.kind.value == "escalation"]

    assert pages(9.9) == []
    assert pages(10) == ["escalation:group_lead"]
    assert pages(15) == []
    assert pages(20) == ["escalation:leadership"]
    assert pages(29) == []
    assert pages(30) == ["escalation:leadership"]  # repeat 1
    _act(core, incidents, iid, IncidentActionKind.ack, 31)
    assert pages(40) == []  # acknowledged: paging stops
    assert pages(200) == []


def test_ladder_dedup_keys_are_distinct_and_stable():
    def keys() -> list[str]:
        core, incidents, _ = _open(Tier.level1)
        return [
            a.dedup_key
            for m in (10, 20, 30, 40)
            for a in core.on_tick(incidents, T0 + timedelta(minutes=m)).alerts
            if a.kind.value == "escalation"
        ]

    first = keys()
    assert len(first) == len(set(first)) == 4
    assert keys() == first
