"""What operators read: tiers, incidents and the ledger (台账), from the store (services/desk/store.py).

The ledger is queried in the store; the tier board and the incidents, a few hundred rows that every console
page and action check reads, are also kept here in memory, loaded from the store at start-up and refreshed
from it (by write sequence) as the sink, in this replica or another, stores more. The live spread and the
standing forecasts are state, not record: each replica keeps the newest per group from their topics
(`apply_live`), which are short (spread-snapshots is compacted), and stores none of it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schemas.events import IncidentEvent, KeywordHit, SpreadSnapshot, Tier, TierChange, TierForecast
from services.desk.store import LedgerQuery, Store

__all__ = ["Fetched", "ReadModel"]

_HISTORY = 200  # tier changes per group in the board's sparkline
_CHANGES = 500  # tier changes per group kept for reports and top posts


@dataclass
class _TierView:
    change: TierChange
    history: deque[tuple[str, int, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=_HISTORY))
    changes: deque[TierChange] = field(default_factory=lambda: deque(maxlen=_CHANGES))


@dataclass(frozen=True, slots=True)
class Fetched:
    """Rows the store has beyond what this model holds, by write sequence."""

    tier_changes: list[tuple[int, TierChange]]
    incident_events: list[tuple[int, IncidentEvent]]


class ReadModel:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.tiers: dict[str, _TierView] = {}
        self.incidents: dict[str, list[IncidentEvent]] = {}
        self.current_incident: dict[str, str] = {}
        self.live: dict[str, SpreadSnapshot] = {}  # group -> its newest spread snapshot
        self.forecasts: dict[str, dict[Tier, TierForecast]] = {}  # group -> tier -> its newest forecast
        self._tier_seq = 0
        self._incident_seq = 0
        self._lock = threading.Lock()

    # -- keeping up with the store ----------------------------------------------------------
    def load(self) -> None:
        """The cache from the store: each group's latest tier changes, every incident's timeline."""
        self.absorb(Fetched(self.store.recent_tier_changes(_CHANGES), []))
        while fetched := self.fetch():
            self.absorb(fetched)

    def fetch(self) -> Fetched | None:
        """What the store holds beyond this model (None: nothing); safe to call from a worker thread."""
        changes = self.store.tier_changes_after(self._tier_seq)
        events = self.store.incident_events_after(self._incident_seq)
        return Fetched(changes, events) if changes or events else None

    def absorb(self, fetched: Fetched) -> None:
        """Take in fetched rows; a row this model already holds (by sequence) is skipped."""
        with self._lock:
            for seq, tc in fetched.tier_changes:
                if seq > self._tier_seq:
                    self._tier_seq = seq
                    self._tier(tc)
            for seq, event in fetched.incident_events:
                if seq > self._incident_seq:
                    self._incident_seq = seq
                    self._incident(event)

    def refresh(self) -> None:
        if fetched := self.fetch():
            self.absorb(fetched)

    def apply(self, event: KeywordHit | TierChange | IncidentEvent) -> None:
        """Store one event and take it in (tests, and tools without a sink); the sink writes in batches."""
        self.store.write([event])
        self.refresh()

    def apply_live(self, event: SpreadSnapshot | TierForecast) -> None:
        """Keep the newest snapshot per group and forecast per group and tier (a restarted scoring worker
        may send one again, or late)."""
        with self._lock:
            if isinstance(event, SpreadSnapshot):
                known = self.live.get(event.group)
                if known is None or event.event_time >= known.event_time:
                    self.live[event.group] = event
                return
            standing = self.forecasts.setdefault(event.group, {})
            known_fc = standing.get(event.tier)
            if known_fc is None or event.event_time >= known_fc.event_time:
                standing[event.tier] = event

    def _tier(self, event: TierChange) -> None:
        view = self.tiers.get(event.group)
        if view is None:
            view = self.tiers[event.group] = _TierView(event)
        view.change = event
        view.changes.append(event)
        for tier in [t for t in self.forecasts.get(event.group, {}) if t.severity <= event.tier.severity]:
            del self.forecasts[event.group][tier]  # reached: the warning is over
        view.history.append((event.window_end.isoformat(), int(event.tier), dict(event.counts)))

    def _incident(self, event: IncidentEvent) -> None:
        timeline = self.incidents.setdefault(event.incident_id, [])
        timeline.append(event)
        timeline.sort(key=lambda e: e.sequence)
        self.current_incident[event.group] = event.incident_id

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

    def tier_map(self) -> dict[str, int]:
        return {g: int(v.change.tier) for g, v in self.tiers.items()}

    def ledger_page(self, query: LedgerQuery, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        """(how many entries match, one page of them); blocking: call it from a worker thread."""
        return self.store.ledger_page(query, self.tier_map(), limit, offset)

    def ledger_chunks(self, query: LedgerQuery, chunk: int = 1000) -> Iterator[list[dict[str, Any]]]:
        return self.store.ledger_chunks(query, self.tier_map(), chunk)

    def ledger_rows(self, **filters: Any) -> list[dict[str, Any]]:
        """Every matching entry (LedgerQuery's fields as keywords), newest first; for reports and tests."""
        query = LedgerQuery(**filters)
        return [row for chunk in self.ledger_chunks(query) for row in chunk]

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
