"""Working days on the Chinese calendar, make-up workdays (调休) included."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

__all__ = ["SHANGHAI", "add_working_days", "is_workday"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
log = logging.getLogger(__name__)


def is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        # The package only knows the years the State Council has published; beyond that, Mon-Fri.
        log.warning("no Chinese holiday data for %s; counting Monday-Friday as working days", day.year)
        return day.weekday() < 5


def add_working_days(start: datetime, days: int) -> datetime:
    """End (23:59:59 Asia/Shanghai) of the `days`-th working day after `start`'s local date."""
    local = start.astimezone(SHANGHAI).date()
    counted = 0
    while counted < days:
        local += timedelta(days=1)
        if is_workday(local):
            counted += 1
    return datetime.combine(local, time(23, 59, 59), tzinfo=SHANGHAI)
