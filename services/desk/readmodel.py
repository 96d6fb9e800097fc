"""What operators read: tiers, incidents and the ledger (台账), rebuilt from the event topics.

The read model is plain Python fed by `apply`; the desk follows the topics into it from their beginning
(services/common/follow.py). The ledger is bounded: the oldest entries go first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schemas.events import (
    Engagement,
    IncidentEvent,
    KeywordHit,
    SpreadSnapshot,
    Tier,
    TierChange,
    TierForecast,
)
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
        self.live: dict[str, SpreadSnapshot] = {}  # group -> its newest spread snapshot
        self.forecasts: dict[str, dict[Tier, TierForecast]] = {}  # group -> tier -> its newest forecast
        self._seen_ids: set[str] = set()

    def apply(self, event: KeywordHit | TierChange | IncidentEvent | SpreadSnapshot | TierForecast) -> None:
        if isinstance(event, SpreadSnapshot):
            # The newest per group is the state (a restarted scoring worker may send one again, or late).
            known = self.live.get(event.group)
            if known is None or event.event_time >= known.event_time:
                self.live[event.group] = event
            return
        if isinstance(event, TierForecast):
            standing = self.forecasts.setdefault(event.group, {})
            known_fc = standing.get(event.tier)
            if known_fc is None or event.event_time >= known_fc.event_time:
                standing[event.tier] = event
            return
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
            for tier in [t for t in self.forecasts.get(event.group, {}) if t.severity <= event.tier.severity]:
                del self.forecasts[event.group][tier]  # reached: the warning is over
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
        """Each group's tier, its counts (live from the newest spread snapshot when that is newer than the
        last tier change), the tier-change history, the live series and the standing forecast."""
        out = []
        for g in sorted(set(self.tiers) | set(self.live)):
            v = self.tiers.get(g)
            snap = self.live.get(g)
            # Which scoring produced later (detected_at, its wall clock): a change's window_end is the end of
            # its minute, so a snapshot read within that minute, after the change, is newer all the same.
            fresh = snap is not None and (v is None or snap.detected_at >= v.change.detected_at)
            out.append(
                {
                    "group": g,
                    "tier": int(v.change.tier) if v else int(snap.tier) if snap else 0,
                    "counts": dict(snap.counts) if fresh and snap else v.change.counts if v else {},
                    "counts_at": snap.event_time if fresh and snap else v.change.window_end if v else None,
                    "since": v.change.event_time if v else None,
                    "reason": v.change.reason if v else None,
                    "history": list(v.history) if v else [],
                    "live": _live(snap),
                    "forecast": self.forecast_of(g),
                }
            )
        return out

    def clock_of(self, group: str) -> datetime | None:
        """The scoring clock as the group's events last told it (event time on a replay)."""
        times = [e.event_time for e in self.forecasts.get(group, {}).values()]
        if group in self.live:
            times.append(self.live[group].event_time)
        if group in self.tiers:
            times.append(self.tiers[group].change.window_end)
        return max(times, default=None)

    def forecast_of(self, group: str) -> dict[str, Any] | None:
        """The most severe standing forecast of the group: made within its lead time of the group's clock,
        for a tier not reached, its crossing not yet due."""
        now = self.clock_of(group)
        held = Tier(self.tier_of(group)).severity
        best = None
        for tier, fc in self.forecasts.get(group, {}).items():
            if now is None or tier.severity <= held or fc.expected_at < now:
                continue
            if now - fc.event_time > timedelta(minutes=fc.lead_minutes):
                continue
            if best is None or tier.severity > best.tier.severity:
                best = fc
        if best is None or now is None:
            return None
        return {
            "tier": int(best.tier),
            "minutes": max(1, round((best.expected_at - now).total_seconds() / 60)),
            "expected_at": best.expected_at,
            "earliest_at": best.earliest_at,
            "latest_at": best.latest_at,
            "confidence": best.confidence,
            "made_at": best.event_time,
        }

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
        post: str | None = None,
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
            if post and f"{e.platform}:{e.post_id}" != post:
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


def _live(snap: SpreadSnapshot | None) -> dict[str, Any] | None:
    if snap is None:
        return None
    return {
        "at": snap.event_time,
        "counts": dict(snap.counts),
        "series_start": snap.series_start,
        "series": list(snap.series),
        "top_posts": [p.model_dump(mode="json") for p in snap.top_posts],
    }
