"""Parallel response steps, and the paging ladder: one page per rung per tick, per-tier policies."""

from __future__ import annotations

import pytest

from schemas.events import IncidentActionKind, Tier
from services.common.config import EscalationConfig, EscalationPolicy, LadderStep
from services.escalation.exceptions import InvalidTransition
from tests.escalation.world import World

A = IncidentActionKind


@pytest.mark.parametrize("first", [A.verified, A.meeting_convened])
def test_level1_meeting_and_verification_in_either_order(first):
    w = World()
    w.open(Tier.level1)
    second = A.meeting_convened if first == A.verified else A.verified
    w.act(first, 10)
    out = w.act(second, 20)
    deadlines = {d.name: d for d in out.events[-1].deadlines}
    assert deadlines["meeting_convened"].status == "met"
    assert deadlines["ack"].status == "met"
    with pytest.raises(InvalidTransition, match="already"):
        w.act(second, 25)
    w.publish(30)
    with pytest.raises(InvalidTransition, match="already statement_published"):
        w.act(first, 35)


def test_level2_has_no_meeting_step():
    w = World()
    w.open(Tier.level2)
    with pytest.raises(InvalidTransition, match="level-1 step"):
        w.act(A.meeting_convened, 5)


def test_level1_unacknowledged_pages_each_rung_once_per_tick_then_repeats_until_ack():
    # Level 1: ack due at 10 and the ladder's group lead at 10 (one page, not two); leadership at 20 by the
    # ladder; the missed meeting at 30 pages leadership once (the repeat waits); repeats every 10 after that.
    w = World()
    w.open(Tier.level1)
    assert w.pages(9.9) == []
    assert w.pages(10) == ["sla_breached:group_lead"]
    assert w.pages(15) == []
    assert w.pages(20) == ["escalation:leadership"]
    assert w.pages(29) == []
    assert w.pages(30) == ["sla_breached:leadership"]
    assert w.pages(39) == []
    assert w.pages(40) == ["escalation:leadership"]  # repeat 1
    w.act(A.ack, 41)
    assert w.pages(50) == []  # acknowledged: paging stops
    assert w.pages(60) == []
    assert w.pages(23 * 60) == []
    assert w.pages(24 * 60) == ["sla_breached:leadership"]  # a missed statement still escalates, once
    assert w.pages(25 * 60) == []


def test_a_late_tick_after_a_crash_catches_up_without_paging_a_rung_twice():
    w = World()
    w.open(Tier.level1)
    # The worker was down from minute 1 to 35: ack and meeting both breached, both ladder rungs due.
    assert w.pages(35) == ["sla_breached:group_lead", "sla_breached:leadership"]
    assert w.pages(36) == []


def test_breaches_page_the_ladder_of_the_incidents_own_tier():
    two_rungs = EscalationPolicy(
        steps=(
            LadderStep(audience="responder", after_minutes=0),
            LadderStep(audience="leadership", after_minutes=45),
        )
    )
    w = World(EscalationConfig(level2=two_rungs))
    w.open(Tier.level2)
    assert w.pages(30) == ["sla_breached:leadership"]  # level 2's next rung, not a global group lead
    assert w.pages(40) == ["escalation:leadership"]  # the top rung was reached: the policy's repeats
    assert w.pages(45) == []  # the ladder's own leadership rung: reached by the breach already
    assert w.pages(50) == ["escalation:leadership"]
    assert w.pages(60) == ["sla_breached:leadership"]  # facts not verified
    assert w.pages(70) == []  # two repeats by default, both sent
    assert w.incident.escalation_level == 1


def test_ladder_dedup_keys_are_distinct_and_stable():
    def keys() -> list[str]:
        w = World()
        w.open(Tier.level1)
        return [
            a.dedup_key
            for m in (10, 20, 30, 40, 50)
            for a in w.tick(m).alerts
            if a.kind.value in ("escalation", "sla_breached")
        ]

    first = keys()
    assert len(first) == len(set(first)) == 5
    assert keys() == first
