"""Config models for routing (tier, rule group, audience, time of day → channels) and on-call rotations."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.events import Alert

__all__ = ["ActiveHours", "OnCall", "Rotation", "Route"]

Audience = Literal["responder", "group_lead", "leadership", "approvers"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (expected an IANA name such as Asia/Shanghai)"
        ) from None
    return name


class ActiveHours(_Frozen):
    tz: str = "Asia/Shanghai"
    days: tuple[Day, ...] = _DAYS
    start: time = time(0, 0)
    end: time = time(23, 59, 59)

    _check_tz = field_validator("tz")(classmethod(lambda cls, v: _zone(v)))

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.tz))
        if _DAYS[local.weekday()] not in self.days:
            return False
        t = local.time()
        return self.start <= t <= self.end if self.start <= self.end else t >= self.start or t <= self.end


class Route(_Frozen):
    """The first matching route wins; empty match lists match everything."""

    name: str = Field(min_length=1, max_length=64)
    tiers: tuple[Literal[0, 1, 2, 3], ...] = ()
    groups: tuple[str, ...] = ()
    audiences: tuple[Audience, ...] = ()
    kinds: tuple[str, ...] = ()
    active: ActiveHours | None = None
    channels: tuple[str, ...] = Field(min_length=1)
    fallback: tuple[str, ...] = ()

    def matches(self, alert: Alert, at: datetime) -> bool:
        return (
            (not self.tiers or int(alert.tier) in self.tiers)
            and (not self.groups or alert.group in self.groups)
            and (not self.audiences or alert.audience in self.audiences)
            and (not self.kinds or alert.kind.value in self.kinds)
            and (self.active is None or self.active.contains(at))
        )


class Rotation(_Frozen):
    """People take turns: a shift of `shift_days` starts at `handoff` local time, counted from `start`."""

    people: tuple[str, ...] = Field(min_length=1)
    tz: str = "Asia/Shanghai"
    start: date = date(2026, 1, 1)
    handoff: time = time(9, 0)
    shift_days: int = Field(default=7, ge=1, le=366)

    _check_tz = field_validator("tz")(classmethod(lambda cls, v: _zone(v)))

    def on_call(self, at: datetime) -> str:
        zone = ZoneInfo(self.tz)
        origin = datetime.combine(self.start, self.handoff, tzinfo=zone)
        shifts = (at.astimezone(zone) - origin) // timedelta(days=self.shift_days)
        return self.people[int(shifts) % len(self.people)]


class OnCall(_Frozen):
    responder: Rotation | None = None
    group_lead: Rotation | None = None
    leadership: Rotation | None = None

    def who(self, audience: str, at: datetime) -> str | None:
        rotation = getattr(self, audience, None)
        return rotation.on_call(at) if rotation else None
