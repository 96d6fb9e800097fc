"""The post-mortem deadline: 3 working days on the Chinese calendar, holidays and make-up workdays (调休)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from schemas.events import IncidentAction, IncidentActionKind, Tier, TierChange
from services.common.config import EscalationConfig
from services.escalation.core import EscalationCore
from services.escalation.workdays import SHANGHAI, add_working_days, is_workday


def sh(y: int, m: int, d: int, hh: int = 15) -> datetime:
    return datetime(y, m, d, hh, 0, tzinfo=SHANGHAI)


def end_of(y: int, m: int, d: int) -> datetime:
    return datetime.combine(datetime(y, m, d).date(), time(23, 59, 59), tzinfo=SHANGHAI)  # noqa: DTZ001


@pytest.mark.parametrize(
    ("closed", "due", "why"),
    [
        (
            sh(2026, 9, 30),
            end_of(2026, 10, 10),
            "National Day Oct 1-7 skipped; Sat Oct 10 is a make-up workday",
        ),
        (sh(2026, 9, 18), end_of(2026, 9, 22), "Sun Sep 20 is a make-up workday"),
        (sh(2026, 9, 24), end_of(2026, 9, 30), "Fri Sep 25 (Mid-Autumn) and the weekend are skipped"),
        (sh(2026, 11, 20), end_of(2026, 11, 25), "an ordinary Friday: the weekend is skipped"),
        (sh(2027, 1, 8), end_of(2027, 1, 13), "no published calendar for 2027: Monday to Friday"),
    ],
)
def test_three_working_days(closed, due, why):
    assert add_working_days(closed, 3) == due, why


def test_days_are_counted_from_the_shanghai_date_not_utc():
    closed = datetime(2026, 11, 19, 17, 0, tzinfo=UTC)  # Fri Nov 20, 01:00 in Shanghai
    assert add_working_days(closed, 3) == end_of(2026, 11, 25)


def test_make_up_workdays_and_holidays():
    assert is_workday(datetime(2026, 10, 10).date())  # noqa: DTZ001 - a Saturday 调休
    assert not is_workday(datetime(2026, 10, 5).date())  # noqa: DTZ001 - a Monday of National Day


def test_closing_an_incident_sets_the_postmortem_deadline_and_filing_meets_it():
    core, incidents = EscalationCore(EscalationConfig()), dict[str, dict[str, Any]]()
    t0 = sh(2026, 9, 29, 10).astimezone(UTC)
    tc = TierChange(
        event_time=t0,
        group="g",
        previous=Tier.none,
        tier=Tier.level3,
        direction="up",
        reason="threshold",
        window_end=t0,
        counts={},
        detected_at=t0,
    )
    iid = core.on_tier_change(tc, incidents, t0).events[0].incident_id

    def act(kind: IncidentActionKind, at: datetime):
        return core.on_action(
            IncidentAction(event_time=at, incident_id=iid, group="g", action=kind, actor="a"), incidents
        )

    closed = act(IncidentActionKind.resolve, sh(2026, 9, 30).astimezone(UTC))
    deadline = {d.name: d for d in closed.events[-1].deadlines}["postmortem_filed"]
    assert deadline.due_at == end_of(2026, 10, 10)
    # Not filed: the tick on the day after the deadline breaches it, once.
    late = core.on_tick(incidents, end_of(2026, 10, 10) + timedelta(seconds=1))
    assert [e.detail.split(" ")[0] for e in late.events if e.kind.value == "sla_breached"] == [
        "postmortem_filed"
    ]
    assert core.on_tick(incidents, end_of(2026, 10, 11)).events == []
    filed = act(IncidentActionKind.postmortem_filed, sh(2026, 10, 12))
    assert filed.events[-1].state.value == "postmortem_filed"
