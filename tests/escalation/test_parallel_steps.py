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
