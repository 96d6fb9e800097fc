"""Every incident transition and deadline, with an injected clock (time is an argument; nothing sleeps)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.events import Deadline, IncidentActionKind, Tier
from services.common.config import EscalationConfig, SlaConfig
from services.escalation.exceptions import InvalidTransition
from tests.escalation.world import T0, World, at, change

A = IncidentActionKind
HOUR = 60


@pytest.fixture
def w() -> World:
    world = World()
    world.open(Tier.level2)
    return world


def kinds(out) -> list[str]:
    return [f"{e.kind.value}:{e.detail.split(' ')[0].rstrip(':')}" for e in out.events]


def test_the_whole_level2_lifecycle(w):
    w.act(A.ack, 5)
    assert w.state == "acknowledged"
    w.act(A.verified, 40)
    assert w.state == "facts_verified"
    w.publish(120)
    assert w.state == "statement_published"
    w.tier(Tier.none, Tier.level2, 5 * HOUR)
    assert w.state == "cooling"  # spread stopped after the statement
    closing = w.deadline("closing")
    assert closing.due_at == T0 + timedelta(hours=72)
    w.act(A.resolve, 26 * HOUR)
    assert w.state == "closed"
    w.act(A.postmortem_filed, 27 * HOUR)
    assert w.state == "postmortem_filed"
    assert {d.name: d.status for d in w.incident.public_deadlines()} == {
        "ack": "met",
        "facts_verified": "met",
        "statement_published": "met",
        "closing": "met",
        "postmortem_filed": "met",
    }


def test_resolve_needs_cooling_or_an_override_comment(w):
    w.act(A.ack, 5)
    with pytest.raises(InvalidTransition, match="resolve needs the cooling state"):
        w.act(A.resolve, 10)
    with pytest.raises(InvalidTransition, match="override:"):
        w.act(A.resolve, 10, comment="override:   ")
    out = w.act(A.resolve, 10, comment="override: duplicate of incident 42")
    assert w.state == "closed"
    # Deadlines not yet due when it closed are retired, not left pending for ever.
    assert {d.name: d.status for d in out.events[-1].deadlines} == {
        "ack": "met",
        "facts_verified": "superseded",
        "statement_published": "superseded",
        "postmortem_filed": "pending",
    }


def test_cooling_by_operator_action_only_after_the_statement(w):
    with pytest.raises(InvalidTransition, match="after the statement"):
        w.act(A.cooling, 5)
    w.publish(30)
    w.act(A.cooling, 3 * HOUR, comment="讨论降温")
    assert w.state == "cooling"
    assert w.deadline("closing").started_at == at(3 * HOUR)


def test_a_statement_published_when_the_tier_is_already_none_starts_cooling(w):
    w.act(A.ack, 5)
    w.tier(Tier.none, Tier.level2, 3 * HOUR)
    assert w.state == "acknowledged"  # no statement yet: spread stopping alone does not start cooling
    out = w.publish(4 * HOUR)
    assert [e.state.value for e in out.events[-2:]] == ["statement_published", "cooling"]


def test_the_closing_stage_reviews_at_24h_and_breaches_at_72h(w):
    w.publish(60)
    w.tier(Tier.none, Tier.level2, 5 * HOUR)
    assert w.tick(24 * HOUR - 1).events == []
    review = w.tick(24 * HOUR)
    assert kinds(review) == ["reminder:closing"]
    assert "closing review" in review.events[0].detail
    assert review.alerts[0].dedup_key.endswith("closing|review")
    assert w.tick(48 * HOUR).events == []  # one review, no fraction reminders
    late = w.tick(72 * HOUR)
    assert kinds(late)[0] == "sla_breached:closing"
    assert [a.audience for a in late.alerts] == ["group_lead"]


def test_spread_resuming_during_cooling_ends_it(w):
    w.publish(60)
    w.tier(Tier.none, Tier.level2, 5 * HOUR)
    w.tier(Tier.level3, Tier.none, 6 * HOUR)
    assert w.state == "statement_published"
    assert "closing" not in w.incident.deadlines
    assert [d.public().status for d in w.incident.past_deadlines] == ["superseded"]
    assert w.tick(80 * HOUR).events == []  # the retired closing deadline cannot breach


def test_reopen_starts_fresh_deadlines_and_drops_the_postmortem_clock():
    w = World()
    w.open(Tier.level3)
    with pytest.raises(InvalidTransition, match="only a closed one can be reopened"):
        w.act(A.reopen, 1)
    w.act(A.resolve, 1, comment="override: false alarm")
    out = w.act(A.reopen, 2)
    assert w.state == "acknowledged"
    with pytest.raises(InvalidTransition, match="after closing"):
        w.act(A.postmortem_filed, 3)
    current = {d.name: (d.started_at, d.due_at, d.public().status) for d in w.incident.deadlines.values()}
    assert current == {
        "facts_verified": (at(2), at(62), "pending"),
        "statement_published": (at(2), at(2 + 24 * HOUR), "pending"),
        "ack": (at(2), at(2), "met"),  # the reopener acknowledges
    }
    assert "postmortem_filed" not in w.incident.deadlines
    assert {d.name for d in out.events[-1].deadlines if d.status == "superseded"} >= {"postmortem_filed"}
    # Ten days later: nothing of the first round breaches; only the new round's own deadlines do, once each.
    late = w.tick(10 * 24 * HOUR)
    assert sorted(e.detail.split(" ")[0] for e in late.events if e.kind.value == "sla_breached") == [
        "facts_verified",
        "statement_published",
    ]
    assert w.tick(10 * 24 * HOUR + 1).events == []


def test_reopened_pages_do_not_reuse_the_first_rounds_dedup_keys():
    w = World()
    w.open(Tier.level2)
    first = w.tick(30).alerts
    w.act(A.resolve, 31, comment="override: test")
    w.act(A.reopen, 32)
    second = w.tick(32 + 60).alerts
    assert [a.kind.value for a in first if a.kind.value == "sla_breached"] == ["sla_breached"]
    assert [a.kind.value for a in second if a.kind.value == "sla_breached"] == ["sla_breached"]
    assert not {a.dedup_key for a in first} & {a.dedup_key for a in second}


def test_actions_on_a_closed_incident_are_refused(w):
    w.act(A.resolve, 10, comment="override: test")
    for kind in (A.ack, A.verified, A.statement_published, A.resolve, A.cooling):
        with pytest.raises(InvalidTransition, match="reopen it first"):
            w.act(kind, 11)


def test_follow_up_and_correction_are_recorded_without_a_transition(w):
    with pytest.raises(InvalidTransition, match="nothing verified or published"):
        w.act(A.correction, 3, comment="x")
    with pytest.raises(InvalidTransition, match="needs a comment"):
        w.act(A.follow_up, 3)
    w.act(A.verified, 10)
    out = w.act(A.correction, 20, comment="批次应为 2026-09")
    assert (out.events[0].kind.value, out.events[0].state.value, out.events[0].action) == (
        "noted",
        "facts_verified",
        A.correction,
    )
    w.act(A.resolve, 30, comment="override: done")
    w.act(A.follow_up, 40, comment="回访 3 位用户")  # 回访 happens after closing too
    assert w.state == "closed"


def test_deadlines_of_each_tier_from_detection():
    for tier, expected in (
        (Tier.level1, {"ack": 10, "meeting_convened": 30, "statement_published": 1440}),
        (Tier.level2, {"ack": 30, "facts_verified": 60, "statement_published": 1440}),
        (Tier.level3, {"ack": 30, "facts_verified": 60, "statement_published": 1440}),
    ):
        w = World()
        w.open(tier, now=at(3), detected=T0)  # 3 min of lag is within the bound: counted from detection
        due = {k: (v.due_at - T0) / timedelta(minutes=1) for k, v in w.incident.deadlines.items()}
        assert due == expected, tier


def test_a_stale_tier_change_starts_its_clocks_at_the_bound_and_pages_once():
    w = World()
    opened = w.open(Tier.level1, now=at(120), detected=T0)  # replayed two hours after detection
    assert "detected 120 min before it was processed" in opened.events[0].detail
    assert [a.kind.value for a in opened.alerts] == ["incident_opened"]
    assert w.deadline("ack").due_at == at(120 - 5 + 10)
    assert w.tick(120).events == []  # no breach, no ladder, no reminder already past on arrival
    assert w.pages(124) == []
    assert w.pages(125) == ["sla_breached:group_lead"]  # the ack deadline, then the ladder as usual


def test_a_detection_time_ahead_of_our_clock_cannot_extend_the_sla():
    w = World()
    w.open(Tier.level2, now=at(0), detected=at(30))
    assert w.deadline("ack").due_at == at(30)


def test_tier_up_tightens_pending_deadlines_and_supersedes_fact_checking(w):
    out = w.tier(Tier.level1, Tier.level2, 5)
    assert [a.kind.value for a in out.alerts] == ["tier_change"]
    assert "facts_verified superseded by meeting_convened" in out.events[0].detail
    assert w.deadline("ack").due_at == at(15)  # 30 min for level 2, 10 from now for level 1
    assert w.deadline("meeting_convened").due_at == at(35)
    assert w.deadline("facts_verified").status == "superseded"
    w.act(A.ack, 6)
    w.act(A.meeting_convened, 20)
    assert w.tick(61).events == []  # the superseded fact check cannot breach
    w.act(A.verified, 62)  # still allowed as a parallel step, but it meets nothing
    assert w.deadline("facts_verified").status == "superseded"


def test_reminders_fire_once_each_and_breaches_once(w):
    assert kinds(w.tick(14)) == []
    half = w.tick(15)
    assert kinds(half) == ["reminder:ack"]  # 50 % of 30 min
    assert kinds(w.tick(15.5)) == []
    most = w.tick(24)
    assert kinds(most) == ["reminder:ack"]  # 80 %
    # Each says which deadline and how far along: on a robot two reminders must not read the same.
    (first,), (second,) = half.alerts, most.alerts
    assert "时限 ack deadline, 50% of the time used" in first.body
    assert "时限 ack deadline, 80% of the time used" in second.body
    assert "sla_breached:ack" in kinds(w.tick(30))
    assert "sla_breached:ack" not in kinds(w.tick(31))
    w.act(A.verified, 35)
    assert all("facts_verified" not in k for k in kinds(w.tick(61)))  # met before due: no breach
    assert w.deadline("ack").status == "met_late"  # met by the verification after it was breached
    assert w.incident.deadlines["ack"].met_at == at(35)


def test_after_an_outage_only_the_latest_reminder_still_ahead_of_its_deadline_is_sent(w):
    """Escalation down from minute 14 to 26: the ack deadline's 50 % (15) and 80 % (24) moments passed unseen
    and the deadline (30) is still ahead. One reminder, the latest, says so; the other is not sent late."""
    assert kinds(w.tick(14)) == []
    out = w.tick(26)
    assert kinds(out) == ["reminder:ack"]
    assert out.events[0].detail == "ack: 80% of the time used (50% skipped: came due unseen)"
    assert [a.dedup_key.rsplit("|", 2)[-2:] for a in out.alerts] == [["ack", "0.8"]]
    assert kinds(w.tick(29)) == []  # and neither comes back


def test_after_an_outage_past_the_deadline_the_breach_is_sent_and_its_reminders_never(w):
    """Down from minute 14 to 40: the ack deadline (30) passed, so its reminders are dropped and the breach
    pages; the fact check (due 60) had its 50 % moment (30) pass unseen and gets that one reminder."""
    assert kinds(w.tick(14)) == []
    out = kinds(w.tick(40))
    assert "sla_breached:ack" in out
    assert "reminder:ack" not in out
    assert out.count("reminder:facts_verified") == 1
    assert "reminder:ack" not in kinds(w.tick(41))


@pytest.mark.parametrize(
    ("met", "breached", "status"),
    [
        (5, None, "met"),
        (10, None, "met"),
        (13, None, "met_late"),  # met late before any tick recorded the breach
        (13, 11, "met_late"),
        (None, 11, "breached"),
        (None, None, "pending"),
    ],
)
def test_deadline_status(met, breached, status):
    d = Deadline(
        name="ack",
        due_at=at(10),
        met_at=at(met) if met is not None else None,
        breached_at=at(breached) if breached is not None else None,
    )
    assert d.status == status


def test_the_core_never_writes_the_table_and_a_lost_save_fires_again_identically():
    w = World()
    w.open(Tier.level1)
    before = dict(w.incidents["g"])
    crashed = w.core.on_tick(w.incidents, at(10))  # published, then the worker died before saving
    assert w.incidents["g"] == before
    assert [a.audience for a in crashed.alerts if a.kind.value == "sla_breached"] == ["group_lead"]
    again = w.tick(10.5)  # the next worker fires it again: same ids and keys, so consumers drop the copy
    assert [e.event_id for e in again.events] == [e.event_id for e in crashed.events]
    assert [a.dedup_key for a in again.alerts] == [a.dedup_key for a in crashed.alerts]
    assert w.tick(11).events == []


def test_a_replayed_tier_change_is_ignored_even_after_closing():
    w = World()
    w.open(Tier.level2)
    w.act(A.resolve, 5, comment="override: test")
    out = w.core.on_tier_change(change(Tier.level2), w.incidents, at(6))
    assert (out.events, out.alerts, out.rows) == ([], [], {})


def test_the_detection_lag_bound_is_configured():
    w = World(EscalationConfig(sla=SlaConfig(max_detection_lag_minutes=0)))
    w.open(Tier.level2, now=at(3), detected=T0)
    assert w.deadline("ack").due_at == at(33)
