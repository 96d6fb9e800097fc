"""Alertmanager-style grouping of keyword hits with a hard deadline.

Per rule group: the first pending hit waits at most group_wait (0 for level 1), later batches go out
every group_interval, and no hit ever waits longer than max_wait.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from datetime import datetime, timedelta
from typing import Any

from schemas.events import Alert, AlertKind, KeywordHit, Tier
from services.common.config import NotifierConfig

__all__ = ["HitGrouper"]

_SAMPLES = 5


class HitGrouper:
    def __init__(self, config: NotifierConfig) -> None:
        self.config = config

    def add(self, hit: KeywordHit, state: MutableMapping[str, dict[str, Any]], now: datetime) -> None:
        """Queue a first-seen hit for its group's next message."""
        row = dict(
            state.get(hit.group)
            or {"pending": [], "samples": [], "last_sent": None, "tier": 0, "first": None}
        )
        if hit.event_id in row["pending"]:
            return
        row["pending"] = [*row["pending"], hit.event_id]
        if row["first"] is None:
            row["first"] = now.isoformat()
            row["hit_time"] = hit.detected_at.isoformat()
        else:
            row["hit_time"] = min(row["hit_time"], hit.detected_at.isoformat())
        if len(row["samples"]) < _SAMPLES:
            row["samples"] = [
                *row["samples"],
                {
                    "platform": hit.platform.value,
                    "excerpt": hit.excerpt[:80],
                    "url": hit.url,
                    "spread": hit.cumulative.total,
                },
            ]
        state[hit.group] = row

    def set_tier(self, group: str, tier: Tier, state: MutableMapping[str, dict[str, Any]]) -> None:
        row = dict(
            state.get(group) or {"pending": [], "samples": [], "last_sent": None, "tier": 0, "first": None}
        )
        if row["tier"] != int(tier):
            row["tier"] = int(tier)
            state[group] = row

    def due(
        self,
        state: MutableMapping[str, dict[str, Any]],
        now: datetime,
        groups: Iterable[str] | None = None,
    ) -> list[Alert]:
        """Batches whose wait is over, as Alerts; their groups are reset. `groups` limits the walk."""
        out = []
        for group in list(state.keys()) if groups is None else groups:
            row = state.get(group)
            if not row or not row["pending"]:
                continue
            first = datetime.fromisoformat(row["first"])
            last = datetime.fromisoformat(row["last_sent"]) if row["last_sent"] else None
            wait = 0.0 if row["tier"] == int(Tier.level1) else self.config.group_wait_seconds
            ready_at = first + timedelta(seconds=wait)
            if last is not None:
                ready_at = max(ready_at, last + timedelta(seconds=self.config.group_interval_seconds))
            ready_at = min(ready_at, first + timedelta(seconds=self.config.max_wait_seconds))
            if now < ready_at:
                continue
            out.append(self._alert(group, row, now))
            state[group] = {**row, "pending": [], "samples": [], "first": None, "last_sent": now.isoformat()}
        return out

    @staticmethod
    def _alert(group: str, row: dict[str, Any], now: datetime) -> Alert:
        n = len(row["pending"])
        lines = [f"规则组 `{group}` 新增 {n} 条负面内容命中"]
        for s in row["samples"]:
            lines.append(f"- [{s['platform']}] {s['excerpt']} (传播量 {s['spread']:,})")
        ids = tuple(row["pending"])
        return Alert(
            event_time=now,
            dedup_key=f"hits|{group}|{ids[0][:16]}|{ids[-1][:16]}|{n}",
            kind=AlertKind.keyword_hits,
            group=group,
            tier=Tier(row["tier"]),
            title=f"舆情命中: {group} 新增 {n} 条",
            body="\n".join(lines),
            hit_time=datetime.fromisoformat(row["hit_time"]),
            hit_ids=ids,
        )
