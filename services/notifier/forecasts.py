"""TierForecast -> one "预计 N 分钟后达到一级" warning per standing warning, deduplicated. No Kafka here.

Scoring already emits a forecast only on a new warning or when its expected crossing moves; this stage makes
the page idempotent on top of that, as the hit grouper does for hits:
- a forecast read again (at-least-once, a replayed scoring worker) is not sent again: per group and tier, a
  forecast not newer than the last one seen is a repeat, and a warning's dedup key is derived from the minute
  it began, so a delivery log entry stops a second page after a crash;
- while a warning stands, later forecasts are silent unless the crossing is now expected more than
  `EARLIER_MINUTES` sooner than the warning said (more urgent: a new page with its own key);
- once the group reaches that tier (a TierChange), or no forecast came for the warning's lead time, the
  warning is over, and the next forecast pages afresh;
- a forecast for a tier the group already holds (it raced the TierChange on another topic) is dropped.

The alert carries numbers and the rule group's name from the operator's config; no post text.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from datetime import datetime, timedelta
from typing import Any

from schemas.events import Alert, AlertKind, Tier, TierChange, TierForecast

__all__ = ["EARLIER_MINUTES", "ForecastWarnings"]

EARLIER_MINUTES = 10

_TIER_NAME = {1: "一级", 2: "二级", 3: "三级"}


def _held_key(group: str) -> str:
    return f"{group}|held"


class ForecastWarnings:
    """Rows: "group|tier" -> {"began", "expected", "last"} (ISO times) while a warning stands; "group|held"
    -> {"tier"}: the group's tier as the tier changes told it."""

    def add(self, fc: TierForecast, state: MutableMapping[str, dict[str, Any]]) -> Alert | None:
        """The alert to send for `fc`, if any; the row is updated either way."""
        held = Tier((state.get(_held_key(fc.group)) or {}).get("tier", 0))
        if fc.tier.severity <= held.severity:
            return None  # reached already: a warning now would come after the fact
        key = f"{fc.group}|{int(fc.tier)}"
        row = state.get(key)
        if row is not None:
            last = datetime.fromisoformat(row["last"])
            if fc.event_time <= last:
                return None  # read again
            if fc.event_time - last > timedelta(minutes=fc.lead_minutes):
                row = None  # the old warning lapsed: this is a new one
        if row is None:
            state[key] = {
                "began": fc.event_time.isoformat(),
                "expected": fc.expected_at.isoformat(),
                "last": fc.event_time.isoformat(),
            }
            return _alert(fc, fc.event_time, update=False)
        expected = datetime.fromisoformat(row["expected"])
        sooner = expected - fc.expected_at > timedelta(minutes=EARLIER_MINUTES)
        state[key] = {
            **row,
            "expected": fc.expected_at.isoformat() if sooner else row["expected"],
            "last": fc.event_time.isoformat(),
        }
        return _alert(fc, datetime.fromisoformat(row["began"]), update=True) if sooner else None

    def tier_changed(self, change: TierChange, state: MutableMapping[str, dict[str, Any]]) -> None:
        """The group's tier moved: warnings for tiers it now holds are over (up), and it is remembered."""
        key = _held_key(change.group)
        if (state.get(key) or {}).get("tier") != int(change.tier):
            state[key] = {"tier": int(change.tier)}
        for tier in (Tier.level3, Tier.level2, Tier.level1):
            if tier.severity <= change.tier.severity and state.get(f"{change.group}|{int(tier)}") is not None:
                del state[f"{change.group}|{int(tier)}"]


def _alert(fc: TierForecast, began: datetime, *, update: bool) -> Alert:
    minutes = max(1, math.ceil((fc.expected_at - fc.event_time).total_seconds() / 60))
    early = max(0, math.floor((fc.earliest_at - fc.event_time).total_seconds() / 60))
    late = math.ceil((fc.latest_at - fc.event_time).total_seconds() / 60)
    name = _TIER_NAME[int(fc.tier)]
    i = fc.inputs
    window = f"{i.window_minutes // 60} h" if i.window_minutes % 60 == 0 else f"{i.window_minutes} min"
    lines = [
        f"规则组 `{fc.group}` 按当前趋势预计 {minutes} 分钟后达到{name} "
        f"(expected to reach level {int(fc.tier)} in about {minutes} min if the trend holds)",
        f"区间 Band: {early}–{late} 分钟 min; 把握 Confidence {fc.confidence:.0%}",
        f"{window} 传播量 Spread: {i.current:,} / 阈值 threshold {i.threshold:,}; "
        f"速率 Rate ≈ {i.rate:,.0f}/min",
        f"预计时间 Expected at {fc.expected_at:%H:%M} UTC (as of {fc.event_time:%H:%M} UTC)",
        "预警不改变等级：越过阈值时才升级。A forecast never changes the tier.",
    ]
    # One key per warning (the minute it began); a page that it is now due sooner gets its own.
    dedup = f"forecast|{fc.group}|{int(fc.tier)}|{began.isoformat()}"
    if update:
        dedup += f"|{fc.expected_at.isoformat()}"
    return Alert(
        event_time=fc.event_time,
        dedup_key=dedup,
        kind=AlertKind.forecast,
        group=fc.group,
        tier=fc.tier,
        title=f"预计 {minutes} 分钟后达到{name}: {fc.group}",
        body="\n".join(lines),
    )
