"""What operators read: tiers, incidents and the ledger (台账), rebuilt from the event topics.

The read model is plain Python fed by `apply`; the desk follows the topics into it from their beginning
(services/common/follow.py). The ledger is bounded: the oldest entries go first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import Engagement, IncidentEvent, KeywordHit, Tier, TierChange
from schemas.labels import sentiment_label

__all__ = ["LedgerEntry", "ReadModel"]


@dataclass
class LedgerEntry:
    platform: str
    post_id: str
    url: str | None
    excerpt: str
    group: str
    reposts: int | None  # None: the platform never reported it (shown as —, never as an invented 0)
    comments: int | None
    likes: int | None
    sentiment: float
    demand: str
    first_seen: datetime
    last_seen: datetime

    @property
    def spread(self) -> int:
        """What is known of the spread: a lower bound when a count is unknown."""
        return (self.reposts or 0) + (self.comments or 0) + (self.likes or 0)

    def as_dict(self, tier: int) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "post_id": self.post_id,
            "url": self.url,
            "excerpt": self.excerpt,
            "group": self.group,
            "tier": tier,
            "reposts": self.reposts,
            "comments": self.comments,
            "likes": self.likes,
            "spread": self.spread,
            "sentiment": self.sentiment,
            "demand": self.demand,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


def _counts(c: Engagement) -> dict[str, int | None]:
    return {
        name: None if name in c.unknown else getattr(c, name) for name in ("reposts", "comments", "likes")
    }


@dataclass
class _TierView:
    change: TierChange
    history: deque[tuple[str, int, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=200))
    changes: deque[TierChange] = field(default_factory=lambda: deque(maxlen=500))


class ReadModel:
    def __init__(self, max_ledger: int = 100_000) -> None:
        self.max_ledger = max_ledger
        self.tiers: dict[str, _TierView] = {}
        self.ledger: OrderedDict[str, LedgerEntry] = OrderedDict()
        self.incidents: dict[str, list[IncidentEvent]] = {}
        self.current_incident: dict[str, str] = {}
        self._seen_ids: set[str] = set()

    def apply(self, event: KeywordHit | TierChange | IncidentEvent) -> None:
        if event.event_id in self._seen_ids:  # at-least-once: the same event may arrive twice
            return
        self._seen_ids.add(event.event_id)
        if len(self._seen_ids) > 4 * self.max_ledger:
            self._seen_ids.clear()
        if isinstance(event, KeywordHit):
            self._hit(event)
        elif isinstance(event, TierChange):
            view = self.tiers.get(event.group)
            if view is None:
                view = self.tiers[event.group] = _TierView(event)
            view.change = event
            view.changes.append(event)
            view.history.append((event.window_end.isoformat(), int(event.tier), dict(event.counts)))
        else:
            timeline = self.incidents.setdefault(event.incident_id, [])
            timeline.append(event)
            timeline.sort(key=lambda e: e.sequence)
            self.current_incident[event.group] = event.incident_id

    def _hit(self, hit: KeywordHit) -> None:
        key = f"{hit.platform.value}:{hit.post_id}|{hit.group}"
        entry = self.ledger.get(key)
        c = hit.cumulative
        if entry is None:
            self.ledger[key] = LedgerEntry(
                platform=hit.platform.value,
                post_id=hit.post_id,
                url=hit.url,
                excerpt=hit.excerpt,
                group=hit.group,
                **_counts(c),
                sentiment=hit.sentiment,
                demand=hit.demand,
                first_seen=hit.event_time,
                last_seen=hit.event_time,
            )
            while len(self.ledger) > self.max_ledger:
                self.ledger.popitem(last=False)
        elif hit.event_time >= entry.last_seen:
            counts = _counts(c)
            entry.reposts, entry.comments, entry.likes = (
                counts["reposts"],
                counts["comments"],
                counts["likes"],
            )
            entry.last_seen = hit.event_time

    # -- queries ---------------------------------------------------------------------------
    def tier_of(self, group: str) -> int:
        view = self.tiers.get(group)
        return int(view.change.tier) if view else int(Tier.none)

    def tier_board(self) -> list[dict[str, Any]]:
        return [
            {
                "group": g,
                "tier": int(v.change.tier),
                "counts": v.change.counts,
                "since": v.change.event_time,
                "reason": v.change.reason,
                "history": list(v.history),
            }
            for g, v in sorted(self.tiers.items())
        ]

    def ledger_rows(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        platform: str | None = None,
        group: str | None = None,
        tier: int | None = None,
        sentiment: str | None = None,
        demand: str | None = None,
    ) -> list[dict[str, Any]]:
        rows = []
        for e in reversed(self.ledger.values()):
            t = self.tier_of(e.group)
            if (since and e.last_seen < since) or (until and e.first_seen > until):
                continue
            if (
                (platform and e.platform != platform)
                or (group and e.group != group)
                or (demand and e.demand != demand)
            ):
                continue
            if tier is not None and t != tier:
                continue
            if sentiment and sentiment_label(e.sentiment) != sentiment:
                continue
            rows.append(e.as_dict(t))
        return rows

    def tier_changes_between(self, group: str, start: datetime, end: datetime | None) -> list[TierChange]:
        view = self.tiers.get(group)
        if view is None:
            return []
        return [
            tc for tc in view.changes if tc.detected_at >= start and (end is None or tc.detected_at <= end)
        ]

    def incident(self, incident_id: str) -> list[IncidentEvent] | None:
        return self.incidents.get(incident_id)

    def incident_list(
        self, *, state: str | None = None, tier: int | None = None, group: str | None = None
    ) -> list[dict[str, Any]]:
        """Incidents, newest first; `state` is one state or "open" (any state before closed), `tier` the
        current tier."""
        out = []
        for iid, events in self.incidents.items():
            last = events[-1]
            if state is not None and not (
                last.state.value == state or (state == "open" and last.state.value not in _CLOSED)
            ):
                continue
            if (tier is not None and int(last.tier) != tier) or (group is not None and last.group != group):
                continue
            latest = last.statement[-1] if last.statement else None
            out.append(
                {
                    "incident_id": iid,
                    "group": last.group,
                    "state": last.state.value,
                    "tier": int(last.tier),
                    "opened_at": events[0].event_time,
                    "updated_at": last.event_time,
                    "deadlines": [d.model_dump(mode="json") | {"status": d.status} for d in last.deadlines],
                    "statement": {"version": latest.version, "status": latest.status.value}
                    if latest
                    else None,
                    "follow_ups": {
                        "total": len(last.follow_ups),
                        "open": sum(i.outcome is None for i in last.follow_ups),
                    },
                }
            )
        return sorted(out, key=lambda r: r["opened_at"], reverse=True)


_CLOSED = ("closed", "postmortem_filed")
