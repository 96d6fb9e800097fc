"""The post-mortem deadline: N working days on the Chinese calendar, holidays and make-up workdays (调休)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

import pytest

from schemas.events import IncidentActionKind, Tier
from services.common.config import CalendarConfig, EscalationConfig, SlaConfig
from services.escalation.workdays import SHANGHAI, WorkCalendar
from tests.escalation.world import T0, World

A = IncidentActionKind
CALENDAR = WorkCalendar()
# What an operator would add once the State Council publishes 2027: 元旦 Fri Jan 1 to Sun Jan 3.
WITH_2027 = WorkCalendar(CalendarConfig(holidays=(date(2027, 1, 1), date(2027, 1, 2), date(2027, 1, 3))))


def sh(y: int, m: int, d: int, hh: int = 15) -> datetime:
    return datetime(y, m, d, hh, 0, tzinfo=SHANGHAI)


def end_of(y: int, m: int, d: int) -> datetime:
    return datetime.combine(date(y, m, d), time(23, 59, 59), tzinfo=SHANGHAI)


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
        (sh(2025, 12, 31), end_of(2026, 1, 6), "元旦 Jan 1-2 skipped, Sun Jan 4 is a make-up workday"),
    ],
)
def test_three_working_days_on_the_published_calendar(closed, due, why):
    assert CALENDAR.add_working_days(closed, 3) == (due, False), why


def test_a_year_without_calendar_data_is_counted_monday_to_friday_and_marked_approximate():
    # 2027 is not in chinese-calendar 1.11: 元旦 (Fri Jan 1) would be counted as a working day.
    assert CALENDAR.add_working_days(sh(2026, 12, 31), 3) == (end_of(2027, 1, 5), True)
    # With the year's holidays in the config, 元旦 is skipped and the answer is exact.
    assert WITH_2027.add_working_days(sh(2026, 12, 31), 3) == (end_of(2027, 1, 6), False)
    assert WITH_2027.knows(2027)
    assert not CALENDAR.knows(2027)


def test_extra_workdays_override_a_weekend():
    calendar = WorkCalendar(CalendarConfig(holidays=(date(2027, 1, 1),), extra_workdays=(date(2027, 1, 2),)))
    assert calendar.is_workday(date(2027, 1, 2)) == (True, True)
    assert calendar.add_working_days(sh(2026, 12, 31), 1) == (end_of(2027, 1, 2), False)


def test_a_day_cannot_be_both_holiday_and_workday():
    with pytest.raises(
        ValueError, match=r"both as holidays and as extra_workdays: \[datetime.date\(2027, 1, 2\)\]"
    ):
        CalendarConfig(holidays=(date(2027, 1, 2),), extra_workdays=(date(2027, 1, 2),))


def test_start_up_warns_about_next_years_missing_calendar(caplog):
    with caplog.at_level(logging.WARNING, logger="services.escalation.workdays"):
        assert CALENDAR.warn_missing(date(2026, 11, 20)) == [2027]
        assert WITH_2027.warn_missing(date(2026, 11, 20)) == []
    assert len(caplog.records) == 1
    assert "no Chinese holiday calendar for 2027" in caplog.records[0].getMessage()
    assert "escalation.calendar.holidays" in caplog.records[0].getMessage()


def test_the_warning_names_the_keys_and_the_file_to_fill_in(caplog):
    with caplog.at_level(logging.WARNING, logger="services.escalation.workdays"):
        CALENDAR.warn_missing(date(2026, 11, 20), "/etc/yuqing/yuqing.yaml (YUQING_CONFIG_FILE)")
    message = caplog.records[0].getMessage()
    assert "list its days off under escalation.calendar.holidays" in message
    assert "make-up workdays (调休) under escalation.calendar.extra_workdays" in message
    assert "in /etc/yuqing/yuqing.yaml (YUQING_CONFIG_FILE) (dates as 2027-01-01)" in message


def test_days_are_counted_from_the_shanghai_date_not_utc():
    closed = datetime(2026, 11, 19, 17, 0, tzinfo=UTC)  # Fri Nov 20, 01:00 in Shanghai
    assert CALENDAR.add_working_days(closed, 3) == (end_of(2026, 11, 25), False)


def test_make_up_workdays_and_holidays():
    assert CALENDAR.is_workday(date(2026, 10, 10)) == (True, True)  # a Saturday 调休
    assert CALENDAR.is_workday(date(2026, 10, 5)) == (False, True)  # a Monday of National Day


def _closed_level3(w: World, when: datetime) -> None:
    minutes = (when - T0) / timedelta(minutes=1)
    w.open(Tier.level3, minutes - 60)
    w.act(A.resolve, minutes, comment="override: handled by phone")


def test_closing_sets_the_postmortem_deadline_and_filing_meets_it():
    w = World()
    closed_at = sh(2026, 9, 30).astimezone(UTC)
    _closed_level3(w, closed_at)
    assert w.deadline("postmortem_filed").due_at == end_of(2026, 10, 10)
    assert not w.deadline("postmortem_filed").approximate
    # Not filed: the tick after the deadline breaches it, once.
    minutes = (end_of(2026, 10, 10) - T0) / timedelta(minutes=1)
    late = w.tick(minutes + 1 / 60)
    assert [e.detail.split(" ")[0] for e in late.events if e.kind.value == "sla_breached"] == [
        "postmortem_filed"
    ]
    assert w.tick(minutes + 60 * 24).events == []
    filed = w.act(A.postmortem_filed, minutes + 60 * 36)
    assert filed.events[-1].state.value == "postmortem_filed"
    assert w.deadline("postmortem_filed").status == "met_late"


def test_the_working_day_count_is_configured_and_an_approximate_deadline_says_so():
    w = World(EscalationConfig(sla=SlaConfig(postmortem_working_days=5)))
    _closed_level3(w, sh(2026, 12, 31).astimezone(UTC))
    closing = w.incident.timeline[-1]["detail"]
    d = w.deadline("postmortem_filed")
    assert (d.due_at, d.approximate) == (end_of(2027, 1, 7), True)
    assert "5 working days, approximate: no holiday calendar for that year" in closing
