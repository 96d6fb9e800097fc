"""Scheduled briefings (简报) at the manual-patrol times, 09:00, 14:00 and 20:00 Asia/Shanghai by default.

Pure functions: which slots are due between two instants, and the briefing for one slot built from plain
rows (tier board, ledger, incidents). The dedup key is the slot, so a briefing is sent once however many
API replicas schedule it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas.events import Alert, AlertKind, Tier
from services.common.alerttext import inert, post_ref

__all__ = ["build_briefing", "due_slots", "previous_slot"]

_TIER = {0: "无", 1: "一级", 2: "二级", 3: "三级"}


def due_slots(times: Sequence[time], tz: str, after: datetime, now: datetime) -> list[datetime]:
    """Slots s with after < s <= now, in local time of `tz`, whatever the host's zone."""
    zone = ZoneInfo(tz)
    day = after.astimezone(zone).date()
    last_day = now.astimezone(zone).date()
    out = []
    while day <= last_day:
        for t in sorted(times):
            slot = datetime.combine(day, t, tzinfo=zone)
            if after < slot <= now:
                out.append(slot)
        day += timedelta(days=1)
    return out


def previous_slot(times: Sequence[time], tz: str, slot: datetime) -> datetime:
    """The slot before `slot`: the start of the period its briefing covers (yesterday's, with one time)."""
    before = due_slots(times, tz, slot - timedelta(days=2), slot - timedelta(microseconds=1))
    return before[-1]


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        raise ValueError(f"time {value!r} has no zone offset; expected an aware ISO 8601 time")
    return when


def build_briefing(
    slot: datetime,
    since: datetime,
    tiers: Sequence[dict[str, Any]],
    ledger: Sequence[dict[str, Any]],
    incidents: Sequence[dict[str, Any]],
) -> Alert:
    """The briefing for the period (since, slot]: items first seen and SLAs missed in it, tiers and open
    incidents as they stand. Times are compared as instants, never as strings: rows carry UTC, slots local."""

    def in_period(value: Any) -> bool:
        when = _when(value)
        return when is not None and since < when <= slot

    new_items = [r for r in ledger if in_period(r["first_seen"])]
    open_incidents = [i for i in incidents if i["state"] not in ("closed", "postmortem_filed")]
    missed = [
        (i["incident_id"], d["name"])
        for i in incidents
        for d in i["deadlines"]
        if d.get("status") == "breached" and in_period(d.get("breached_at") or d.get("due_at"))
    ]
    worst = min((int(t["tier"]) for t in tiers if int(t["tier"])), default=0)
    lines = [
        f"**舆情简报 Briefing {slot:%Y-%m-%d %H:%M}** (since {since.astimezone(slot.tzinfo):%m-%d %H:%M})",
        f"- 新增负面 New negative items: {len(new_items)}",
    ]
    by_group: dict[str, int] = {}
    for r in new_items:
        by_group[r["group"]] = by_group.get(r["group"], 0) + 1
    # Excerpts are the public's words and group names the operator's: both made inert for the robots'
    # markdown (services/common/alerttext.py). Ids, states and deadline names are yuqing's own.
    lines += [f"  - {inert(g, 64)}: {n}" for g, n in sorted(by_group.items(), key=lambda kv: -kv[1])]
    lines.append(
        "- 当前等级 Current tiers: "
        + (", ".join(f"{inert(t['group'], 64)} {_TIER[int(t['tier'])]}" for t in tiers) or "—")
    )
    lines.append(f"- 未结事件 Open incidents: {len(open_incidents)}")
    lines += [
        f"  - {i['incident_id']} {inert(i['group'], 64)} {i['state']} ({_TIER[int(i['tier'])]})"
        for i in open_incidents
    ]
    lines.append(f"- 超时 Missed SLAs: {len(missed)}")
    lines += [f"  - {iid}: {name}" for iid, name in missed]
    top = sorted(new_items, key=lambda r: -int(r["spread"]))[:3]
    lines += [
        f"- [{r['platform']}] {inert(r['excerpt'], 60)} ({int(r['spread']):,})"
        + (f" {ref}" if (ref := post_ref(r.get("url"))) else "")
        for r in top
    ]
    return Alert(
        event_time=slot,
        dedup_key=f"briefing|{slot.isoformat()}",
        kind=AlertKind.briefing,
        group="*",
        tier=Tier(worst),
        title=f"舆情简报 {slot:%m-%d %H:%M}: {len(new_items)} 条新增, {len(open_incidents)} 个未结事件",
        body="\n".join(lines),
    )
