"""Publish times as platforms and crawlers write them, to aware UTC datetimes."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

__all__ = ["SHANGHAI", "TimeBounds", "parse_time"]

# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact for any post
# and needs no tz database on the host.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

# Seconds reach 1e11 only in the year 5138, milliseconds are above it from 1973 on.
_MS_THRESHOLD = 1e11
# No time is written in more characters than this; a longer value is refused before any pattern sees it,
# so no pattern can be made to backtrack over a long run of blanks.
_MAX_CHARS = 64

_NUMERIC = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII)
# 20261121, 202611211000, 20261121100000: compact Beijing times, told from epochs by their length.
_COMPACT = re.compile(r"((?:19|20)\d\d)(\d\d)(\d\d)(?:(\d\d)(\d\d)(\d\d)?)?", re.ASCII)
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
# Zone names as Chinese servers print them. CST is China Standard Time there, never US Central: Java's
# Date.toString() on a Beijing host writes "Sat Nov 21 10:00:00 CST 2026".
_ZONES = {"cst": 8, "hkt": 8, "bjt": 8, "gmt": 0, "utc": 0, "z": 0}
# Weibo "Sat Nov 21 10:00:00 +0800 2026" and Java "Sat Nov 21 10:00:00 CST 2026". Parsed by hand because
# %a/%b follow the process locale. Blanks are collapsed to one space before matching.
_WEIBO = re.compile(
    r"(?:[A-Za-z]{3} )?([A-Za-z]{3}) (\d{1,2}) (\d{1,2}):(\d{2}):(\d{2}) "
    r"(?:([+-])(\d{2}):?(\d{2})|([A-Za-z]{1,4})) (\d{4})",
    re.ASCII,
)
# 2026/11/21 10:00:00, 2026年11月21日 10:00, 2026-1-5 9:00, 2026.11.21 (naive: Beijing time).
_CHINESE = re.compile(
    r"(\d{4}) ?[-/.年] ?(\d{1,2}) ?[-/.月] ?(\d{1,2})(?: ?日)?"
    r"(?:(?: |T| ?T ?)?(\d{1,2}) ?[:：时] ?(\d{1,2})(?: ?[:：分] ?(\d{1,2})(?:\.(\d{1,6}))? ?秒?| ?分)?)?",
    re.ASCII,
)
# A trailing zone name on an RFC 2822 date ("Sat, 21 Nov 2026 10:00:00 CST"), which email.utils would read
# as a US zone.
_RFC_ZONE = re.compile(r" (CST|HKT|BJT)$", re.IGNORECASE | re.ASCII)
# Relative times as Chinese apps print them; only read when an observation time is given.
_AGO = re.compile(r"(\d{1,4}) ?(秒|分钟|小时|天)前")
_YESTERDAY = re.compile(r"(昨天|前天|今天) ?(\d{1,2})[:：](\d{2})")
_MONTH_DAY = re.compile(r"(\d{1,2})(?:月|-)(\d{1,2})日?(?: (\d{1,2})[:：](\d{2}))?")
_AGO_UNITS = {"秒": 1, "分钟": 60, "小时": 3600, "天": 86400}
_DAYS_BACK = {"今天": 0, "昨天": 1, "前天": 2}

_ACCEPTED = (
    "epoch seconds or milliseconds, ISO 8601 such as '2026-11-21T10:00:00+08:00' or "
    "'2026-11-21 10:00:00', Weibo's 'Sat Nov 21 10:00:00 +0800 2026' (CST is China time), "
    "RFC 2822 'Sat, 21 Nov 2026 10:00:00 +0800', '2026/11/21 10:00:00', '2026年11月21日 10:00', "
    "'20261121[100000]', relative '刚刚', '5分钟前', '昨天 10:00', '11月21日' (when observed); "
    "times without an offset are Asia/Shanghai"
)


@dataclass(frozen=True)
class TimeBounds:
    """Publish times a post can plausibly have: not before `earliest`, not after now + `max_skew`.

    A time outside is a misread (epoch 0, seconds taken for milliseconds, a wrong zone) rather than a post
    from 1970 or 2099, and a 2099 snapshot would shadow every later real one downstream.
    """

    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_skew: timedelta = timedelta(minutes=10)

    def problem(self, value: datetime, now: datetime) -> str | None:
        """None when `value` is plausible at `now`; otherwise why not."""
        if value < self.earliest:
            return f"{value.isoformat()} is before {self.earliest.isoformat()}; probably a misread time"
        latest = now + self.max_skew
        if value > latest:
            return (
                f"{value.isoformat()} is in the future (now is {now.isoformat()}, "
                f"allowed clock skew {self.max_skew.total_seconds():g} s)"
            )
        return None


def parse_time(value: object, now: datetime | None = None) -> datetime:
    """The instant `value` names, as an aware UTC datetime; ValueError if it names none.

    Relative forms ("5分钟前", "昨天 10:00", "11月21日") are read against `now`, the time the post was
    observed; without it they are refused, since there is nothing true to read them against.
    """
    try:
        parsed = _parse(value, now)
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=SHANGHAI)
            # 0001-01-01 in Shanghai is before the first UTC datetime: out of range like the rest.
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        # fromtimestamp and the datetime constructor signal out-of-range values in three ways.
        parsed = None
    if parsed is None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ValueError(f"unrecognised time {shown}; expected {_ACCEPTED}")
    return parsed


def _parse(value: object, now: datetime | None) -> datetime | None:
    if isinstance(value, bool):
        return None  # True is an int to Python, never a time to a platform
    if isinstance(value, int):
        return _compact(str(value)) or _from_epoch(float(value))
    if isinstance(value, float):
        return _from_epoch(value)
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or len(value) > 4 * _MAX_CHARS:
        return None
    text = " ".join(value.split())
    if not text or len(text) > _MAX_CHARS:
        return None
    if _NUMERIC.fullmatch(text):
        return _compact(text) or _from_epoch(float(text))
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
    if now is not None and (relative := _relative(text, now)) is not None:
        return relative
    return _from_rfc2822(_RFC_ZONE.sub(" +0800", text))


def _compact(digits: str) -> datetime | None:
    """YYYYMMDD[HHmm[ss]]: at 8, 12 and 14 digits an epoch would fall before 2002 or after 2286."""
    if len(digits) not in (8, 12, 14):
        return None
    m = _COMPACT.fullmatch(digits)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g or 0) for g in m.groups())
    try:
        return datetime(year, month, day, hour, minute, second)  # noqa: DTZ001 - Beijing, set by the caller
    except ValueError:
        return None


def _relative(text: str, now: datetime) -> datetime | None:
    local = now.astimezone(SHANGHAI)
    if text in ("刚刚", "刚才"):
        return local
    if m := _AGO.fullmatch(text):
        return local - timedelta(seconds=int(m.group(1)) * _AGO_UNITS[m.group(2)])
    if m := _YESTERDAY.fullmatch(text):
        day = local.date() - timedelta(days=_DAYS_BACK[m.group(1)])
        return datetime(day.year, day.month, day.day, int(m.group(2)), int(m.group(3)), tzinfo=SHANGHAI)
    if m := _MONTH_DAY.fullmatch(text):
        month, mday, hour, minute = (int(g or 0) for g in m.groups())
        # Apps leave the year out for this year's posts; in January "12月30日" is last year's.
        year = local.year
        candidate = datetime(year, month, mday, hour, minute, tzinfo=SHANGHAI)
        if candidate > local + timedelta(days=1):
            candidate = candidate.replace(year=year - 1)
        return candidate
    return None


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
    if m.group(9) is not None:
        hours = _ZONES.get(m.group(9).lower())
        if hours is None:
            return None
        tz = timezone(timedelta(hours=hours))
    else:
        offset = timedelta(hours=int(m.group(7)), minutes=int(m.group(8)))
        tz = timezone(-offset if m.group(6) == "-" else offset)
    return datetime(int(m.group(10)), month, day, hour, minute, second, tzinfo=tz)


def _from_rfc2822(text: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # RFC 2822's "-0000" means UTC with the sender's zone unknown, not local time.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
