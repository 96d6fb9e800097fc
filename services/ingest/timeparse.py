"""Publish times as platforms and crawlers write them, to aware UTC datetimes."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

__all__ = ["SHANGHAI", "parse_time"]

# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact for any post
# and needs no tz database on the host.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

# Seconds reach 1e11 only in the year 5138, milliseconds are above it from 1973 on.
_MS_THRESHOLD = 1e11

_NUMERIC = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII)
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
# Weibo: "Sat Nov 21 10:00:00 +0800 2026". Parsed by hand because %a/%b follow the process locale.
_WEIBO = re.compile(
    r"(?:[A-Za-z]{3}\s+)?([A-Za-z]{3})\s+(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})\s+([+-])(\d{2}):?(\d{2})\s+(\d{4})",
    re.ASCII,
)
# 2026/11/21 10:00:00, 2026年11月21日 10:00, 2026-1-5 9:00, 2026.11.21 (naive: Beijing time).
_CHINESE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]*(\d{1,2})\s*[:：时]\s*(\d{1,2})(?:\s*[:：分]\s*(\d{1,2})(?:\.(\d{1,6}))?\s*秒?|\s*分)?)?",
    re.ASCII,
)

_ACCEPTED = (
    "epoch seconds or milliseconds (number or numeric string), ISO 8601 such as "
    "'2026-11-21T10:00:00+08:00', '2026-11-21 10:00:00' or '2026-11-21T02:00:00Z', "
    "Weibo's 'Sat Nov 21 10:00:00 +0800 2026', RFC 2822 'Sat, 21 Nov 2026 10:00:00 +0800', "
    "'2026/11/21 10:00:00', '2026年11月21日 10:00'; times without an offset are Asia/Shanghai"
)


def parse_time(value: object) -> datetime:
    """The instant `value` names, as an aware UTC datetime; ValueError if it names none."""
    try:
        parsed = _parse(value)
    except (ValueError, OverflowError, OSError):
        # fromtimestamp and the datetime constructor signal out-of-range values in three ways.
        parsed = None
    if parsed is None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ValueError(f"unrecognised time {shown}; expected {_ACCEPTED}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHANGHAI)
    return parsed.astimezone(UTC)


def _parse(value: object) -> datetime | None:
    if isinstance(value, bool):
        return None  # True is an int to Python, never a time to a platform
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if _NUMERIC.fullmatch(text):
        return _from_epoch(float(text))
    if m := _WEIBO.fullmatch(text):
        return _from_weibo(m)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    if m := _CHINESE.fullmatch(text):
        year, month, day, hour, minute, second, fraction = m.groups()
        return datetime(  # noqa: DTZ001 - naive on purpose: parse_time puts it in Beijing time
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
    return _from_rfc2822(text)


def _from_epoch(number: float) -> datetime | None:
    if not math.isfinite(number):
        return None
    if abs(number) >= _MS_THRESHOLD:
        number /= 1000
    return datetime.fromtimestamp(number, UTC)


def _from_weibo(m: re.Match[str]) -> datetime | None:
    month = _MONTHS.get(m.group(1).lower())
    if month is None:
        return None
    day, hour, minute, second = (int(g) for g in m.group(2, 3, 4, 5))
    offset = timedelta(hours=int(m.group(7)), minutes=int(m.group(8)))
    tz = timezone(-offset if m.group(6) == "-" else offset)
    return datetime(int(m.group(9)), month, day, hour, minute, second, tzinfo=tz)


def _from_rfc2822(text: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # RFC 2822's "-0000" means UTC with the sender's zone unknown, not local time.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
