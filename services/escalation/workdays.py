"""Working days on the Chinese calendar, make-up workdays (调休) included.

The State Council publishes each year's holidays in the autumn before, and the chinese-calendar package
only knows the years published when it was released. Operators fill the gap with `escalation.calendar` in
the config file; a year known to neither is counted Monday to Friday and the result is marked approximate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

from services.common.config import CalendarConfig

__all__ = ["SHANGHAI", "WorkCalendar"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
log = logging.getLogger(__name__)


class WorkCalendar:
    def __init__(self, overrides: CalendarConfig | None = None) -> None:
        overrides = overrides or CalendarConfig()
        self._holidays = frozenset(overrides.holidays)
        self._extra_workdays = frozenset(overrides.extra_workdays)
        self._override_years = frozenset(d.year for d in self._holidays)

    def knows(self, year: int) -> bool:
        """Whether `year`'s holidays are known, from the package or from the config."""
        if year in self._override_years:
            return True
        try:
            chinese_calendar.is_workday(date(year, 1, 1))
        except NotImplementedError:
            return False
        return True

    def is_workday(self, day: date) -> tuple[bool, bool]:
        """(is a working day, known from calendar data rather than guessed as Monday to Friday)."""
        if day in self._holidays:
            return False, True
        if day in self._extra_workdays:
            return True, True
        try:
            return bool(chinese_calendar.is_workday(day)), True
        except NotImplementedError:
            return day.weekday() < 5, day.year in self._override_years

    def add_working_days(self, start: datetime, days: int) -> tuple[datetime, bool]:
        """End (23:59:59 Asia/Shanghai) of the `days`-th working day after `start`'s local date, and whether
        any day counted was guessed (no holiday data for its year)."""
        local = start.astimezone(SHANGHAI).date()
        counted, approximate = 0, False
        while counted < days:
            local += timedelta(days=1)
            working, known = self.is_workday(local)
            approximate |= not known
            counted += working
        return datetime.combine(local, time(23, 59, 59), tzinfo=SHANGHAI), approximate

    def warn_missing(self, today: date, config_file: str = "the config file") -> list[int]:
        """Log, once at start-up, each of this year and next that has no holiday data, naming the config
        keys that fill it in; return those years."""
        missing = [y for y in _years(today) if not self.knows(y)]
        for year in missing:
            log.warning(
                "no Chinese holiday calendar for %d: post-mortem deadlines in %d are counted Monday to "
                "Friday and marked approximate. From the State Council's schedule for %d, list its days "
                "off under escalation.calendar.holidays and its make-up workdays (调休) under "
                "escalation.calendar.extra_workdays in %s (dates as %d-01-01), or upgrade chinese-calendar.",
                year,
                year,
                year,
                config_file,
                year,
            )
        return missing


def _years(today: date) -> Iterable[int]:
    return (today.year, today.year + 1)
