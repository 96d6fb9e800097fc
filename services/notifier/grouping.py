"""Alertmanager-style grouping of keyword hits with a hard deadline.

Per rule group: the first pending hit waits at most group_wait (0 for level 1), later batches go out
every group_interval, and no hit ever waits longer than max_wait.

A group's row stays small whatever the burst: counts, the top posts and first/last times, never the list of
hits. Coverage is proven by position instead: a group's hits all arrive on one keyword-hits partition (the
topic is keyed by group), so a batch covers "every hit of the group at offsets first..last" (`Alert.hit_span`)
and `covered_to` makes a hit re-read after a crash a no-op.

A due batch is frozen in the row (`sending`) before delivery and removed by `delivered()` only once the
delivery is recorded, so a crash mid-retry re-sends the same batch with the same dedup key instead of
losing it; the delivery log then stops a second page.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from datetime import datetime, timedelta
from typing import Any

from schemas.events import Alert, AlertKind, HitSpan, KeywordHit, Tier
from services.common.alerttext import inert, post_ref
from services.common.config import NotifierConfig

__all__ = ["HitGrouper"]

_SAMPLES = 5  # top posts kept per batch
_RECENT = 32  # recent hit ids, for duplicates that come back at a new offset (a replayed scoring worker)


def _empty() -> dict[str, Any]:
    return {
        "tier": 0,
        "last_sent": None,
        "partition": None,
        "covered_to": -1,
        "recent": [],
        "open": None,
        "sending": None,
    }


class HitGrouper:
    def __init__(self, config: NotifierConfig) -> None:
        self.config = config

    def add(
        self,
        hit: KeywordHit,
        state: MutableMapping[str, dict[str, Any]],
        now: datetime,
        partition: int,
        offset: int,
    ) -> bool:
        """Count a first-seen hit at (partition, offset) into its group's next message; False if a repeat."""
        row = {**_empty(), **(state.get(hit.group) or {})}
        if row["partition"] == partition and offset <= row["covered_to"]:
            return False  # re-read after a restart: already pending or already sent
        short = hit.event_id[:16]
        if short in row["recent"]:
            return False
        b = dict(row["open"] or {})
        if not b:
            b = {
                "count": 0,
                "partition": partition,  # keyword-hits is never resized under a running notifier
                "first_offset": offset,
                "opened": now.isoformat(),
                "hit_time": hit.detected_at.isoformat(),
                "last_hit": hit.detected_at.isoformat(),
                "spread": 0,
                "platforms": {},
                "samples": [],
            }
        b["count"] += 1
        b["last_offset"] = offset
        b["hit_time"] = min(b["hit_time"], hit.detected_at.isoformat(), key=datetime.fromisoformat)
        b["last_hit"] = max(b["last_hit"], hit.detected_at.isoformat(), key=datetime.fromisoformat)
        b["spread"] += hit.delta.total
        b["platforms"] = {**b["platforms"], hit.platform.value: b["platforms"].get(hit.platform.value, 0) + 1}
        sample = {
            "id": hit.event_id,
            "platform": hit.platform.value,
            "excerpt": hit.excerpt[:80],
            "url": hit.url,
            "spread": hit.cumulative.total,
        }
        b["samples"] = sorted([*b["samples"], sample], key=lambda s: -int(s["spread"]))[:_SAMPLES]
        row["open"] = b
        row["partition"] = partition
        row["covered_to"] = offset
        row["recent"] = [*row["recent"], short][-_RECENT:]
        state[hit.group] = row
        return True

    def set_tier(self, group: str, tier: Tier, state: MutableMapping[str, dict[str, Any]]) -> None:
        """The group's current tier, up or down: only while it is level 1 does a batch skip group_wait."""
        row = {**_empty(), **(state.get(group) or {})}
        if row["tier"] != int(tier):
            row["tier"] = int(tier)
            state[group] = row

    def due(
        self,
        state: MutableMapping[str, dict[str, Any]],
        now: datetime,
        groups: Iterable[str] | None = None,
    ) -> list[Alert]:
        """Batches to send now, as Alerts: ones frozen before a crash first, then those whose wait is over.

        Nothing is cleared here; call `delivered()` once the outcome is recorded. `groups` limits the walk.
        """
        out = []
        for group in list(state.keys()) if groups is None else groups:
            row = state.get(group)
            if not row:
                continue
            if row.get("sending"):
                out.append(self._alert(group, row["sending"]))
                continue
            b = row.get("open")
            if not b:
                continue
            opened = datetime.fromisoformat(b["opened"])
            last = datetime.fromisoformat(row["last_sent"]) if row["last_sent"] else None
            wait = 0.0 if row["tier"] == int(Tier.level1) else self.config.group_wait_seconds
            ready_at = opened + timedelta(seconds=wait)
            if last is not None:
                ready_at = max(ready_at, last + timedelta(seconds=self.config.group_interval_seconds))
            ready_at = min(ready_at, opened + timedelta(seconds=self.config.max_wait_seconds))
            if now < ready_at:
                continue
            frozen = {**b, "tier": row["tier"], "frozen_at": now.isoformat()}
            state[group] = {**row, "open": None, "sending": frozen}
            out.append(self._alert(group, frozen))
        return out

    def delivered(self, alert: Alert, state: MutableMapping[str, dict[str, Any]], now: datetime) -> None:
        """The batch behind `alert` was delivered or dead-lettered: forget it and start the interval."""
        row = state.get(alert.group)
        if not row or not row.get("sending"):
            return
        if self._alert(alert.group, row["sending"]).dedup_key != alert.dedup_key:
            return
        state[alert.group] = {**row, "sending": None, "last_sent": now.isoformat()}

    @staticmethod
    def _alert(group: str, b: dict[str, Any]) -> Alert:
        n = int(b["count"])
        span = HitSpan(
            partition=int(b["partition"]),
            first_offset=int(b["first_offset"]),
            last_offset=int(b["last_offset"]),
        )
        first = datetime.fromisoformat(b["hit_time"])
        last = datetime.fromisoformat(b["last_hit"])
        mix = ", ".join(f"{p} {c}" for p, c in sorted(b["platforms"].items(), key=lambda kv: -kv[1]))
        name = inert(group, 64)
        lines = [
            f"规则组 `{name}` 新增 {n} 条负面内容命中 ({n:,} new hits)",
            f"传播量 Spread added: {int(b['spread']):,}; 平台 Platforms: {mix}",
            f"命中时间 Hits between {first:%H:%M:%S} and {last:%H:%M:%S} UTC",
        ]
        # Excerpts are the public's words: inert in every robot's markdown (services/common/alerttext.py).
        lines += [
            f"- [{s['platform']}] {inert(s['excerpt'], 80)} (传播量 {int(s['spread']):,})"
            + (f" {ref}" if (ref := post_ref(s.get("url"))) else "")
            for s in b["samples"]
        ]
        return Alert(
            event_time=datetime.fromisoformat(b["frozen_at"]),
            # Offsets, not a hash of the ids: a batch re-formed after a crash gets the same key.
            dedup_key=f"hits|{group}|{span.partition}:{span.first_offset}-{span.last_offset}",
            kind=AlertKind.keyword_hits,
            group=group,
            tier=Tier(int(b["tier"])),
            title=f"舆情命中: {name} 新增 {n} 条",
            body="\n".join(lines),
            hit_time=first,
            hit_ids=tuple(s["id"] for s in b["samples"]),
            hit_count=n,
            hit_span=span,
        )
