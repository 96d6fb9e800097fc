"""Incidents, SLA clocks and the escalation ladder. Plain Python; time is passed in.

State per rule group is one incident row (a dict) in a mapping the caller controls. Deadlines are
data in that row, checked on every tick, so they survive restarts and partition moves: after
recovery the next tick fires whatever is due, once, because firing is recorded in the same row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas.events import (
    Alert,
    AlertKind,
    Deadline,
    IncidentAction,
    IncidentActionKind,
    IncidentEvent,
    IncidentEventKind,
    IncidentState,
    Tier,
    TierChange,
    event_id,
)
from services.common.config import EscalationConfig
from services.escalation.exceptions import InvalidTransition
from services.escalation.workdays import add_working_days

__all__ = ["EscalationCore", "Incident", "Outcome"]

# Meeting convened and facts verified are parallel steps of the same stage: a team may do either first.
_RANK = {
    IncidentState.opened: 0,
    IncidentState.acknowledged: 1,
    IncidentState.meeting_convened: 2,
    IncidentState.facts_verified: 2,
    IncidentState.statement_published: 3,
    IncidentState.cooling: 4,
    IncidentState.closed: 5,
    IncidentState.postmortem_filed: 6,
}
_OPEN = {s for s in IncidentState if s not in (IncidentState.closed, IncidentState.postmortem_filed)}
_TIER_NAME = {1: "一级", 2: "二级", 3: "三级", 0: "无"}


class _DeadlineRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    started_at: datetime
    due_at: datetime
    met_at: datetime | None = None
    breached_at: datetime | None = None
    reminded: list[float] = []


class Incident(BaseModel):
    """The mutable state of one incident, stored as a JSON row."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str
    group: str
    tier: Tier
    peak_tier: Tier
    state: IncidentState
    opened_at: datetime
    sequence: int = 0
    escalation_level: int = 0
    ladder_paged: list[int] = []  # policy steps already paged (step 0 is the opening alert)
    repeats_sent: int = 0
    last_page_at: datetime | None = None
    deadlines: dict[str, _DeadlineRow] = {}
    timeline: list[dict[str, Any]] = []

    @property
    def is_open(self) -> bool:
        return self.state in _OPEN

    def public_deadlines(self) -> tuple[Deadline, ...]:
        return tuple(
            Deadline(name=d.name, due_at=d.due_at, met_at=d.met_at, breached_at=d.breached_at)
            for d in self.deadlines.values()
        )


@dataclass
class Outcome:
    events: list[IncidentEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


def _response_deadline(tier: Tier) -> str:
    return "meeting_convened" if tier == Tier.level1 else "facts_verified"


LinkMaker = Callable[[str, str, datetime], str | None]


class EscalationCore:
    def __init__(self, config: EscalationConfig, ack_link: LinkMaker | None = None) -> None:
        self.config = config
        self.ack_link = ack_link  # (incident_id, group, now) -> signed URL

    # -- tier changes ------------------------------------------------------------------
    def on_tier_change(
        self, tc: TierChange, incidents: MutableMapping[str, dict[str, Any]], now: datetime
    ) -> Outcome:
        out = Outcome()
        row = incidents.get(tc.group)
        inc = Incident.model_validate(row) if row else None
        if inc is None or not inc.is_open:
            if tc.tier == Tier.none or tc.direction == "down":
                return out
            inc = self._open(tc, now)
            self._emit(
                out, inc, IncidentEventKind.opened, now, detail=f"opened by tier change {tc.event_id[:12]}"
            )
            out.alerts.append(self._alert(inc, AlertKind.incident_opened, "responder", now, tc=tc))
        else:
            previous = inc.tier
            if tc.tier == previous:
                return out
            inc.tier = tc.tier
            if tc.tier.severity > inc.peak_tier.severity:
                inc.peak_tier = tc.tier
                self._tighten(inc, now)
            if tc.tier == Tier.none and inc.state == IncidentState.statement_published:
                inc.state = IncidentState.cooling
            self._emit(
                out,
                inc,
                IncidentEventKind.tier_changed,
                now,
                detail=f"{_TIER_NAME[int(previous)]} → {_TIER_NAME[int(tc.tier)]}",
            )
            if tc.direction == "up":
                out.alerts.append(self._alert(inc, AlertKind.tier_change, "responder", now, tc=tc))
        incidents[tc.group] = inc.model_dump(mode="json")
        return out

    def _open(self, tc: TierChange, now: datetime) -> Incident:
        inc = Incident(
            incident_id=event_id("incident", tc.group, tc.event_id)[:16],
            group=tc.group,
            tier=tc.tier,
            peak_tier=tc.tier,
            state=IncidentState.opened,
            opened_at=tc.detected_at,
        )
        sla = self.config.sla.for_tier(int(tc.tier))
        start = tc.detected_at
        for name, minutes in (
            ("ack", sla.ack_minutes),
            (_response_deadline(tc.tier), sla.response_minutes),
            ("statement_published", sla.statement_hours * 60),
        ):
            inc.deadlines[name] = _DeadlineRow(
                name=name, started_at=start, due_at=start + timedelta(minutes=minutes)
            )
        return inc

    def _tighten(self, inc: Incident, now: datetime) -> None:
        """A tier going up shortens pending deadlines to the stricter tier's SLA, counted from now."""
        sla = self.config.sla.for_tier(int(inc.tier))
        wanted = {"ack": sla.ack_minutes, _response_deadline(inc.tier): sla.response_minutes}
        for name, minutes in wanted.items():
            d = inc.deadlines.get(name)
            due = now + timedelta(minutes=minutes)
            if d is None:
                inc.deadlines[name] = _DeadlineRow(name=name, started_at=now, due_at=due)
            elif d.met_at is None and d.breached_at is None and due < d.due_at:
                d.due_at = due

    # -- operator actions ------------------------------------------------------------------
    def on_action(self, action: IncidentAction, incidents: MutableMapping[str, dict[str, Any]]) -> Outcome:
        row = incidents.get(action.group)
        if not row:
            raise InvalidTransition(f"no incident for group {action.group!r}")
        inc = Incident.model_validate(row)
        if inc.incident_id != action.incident_id:
            raise InvalidTransition(
                f"incident {action.incident_id} is not the current incident of group {action.group!r}"
            )
        at = action.event_time
        target, meets = self.check_transition(inc, action.action)
        for name in meets:
            d = inc.deadlines.get(name)
            if d is not None and d.met_at is None:
                d.met_at = at
        inc.state = target
        if target == IncidentState.closed:
            inc.deadlines["postmortem_filed"] = _DeadlineRow(
                name="postmortem_filed", started_at=at, due_at=add_working_days(at, 3)
            )
        out = Outcome()
        detail = f"{action.action.value}" + (f": {action.comment}" if action.comment else "")
        self._emit(out, inc, IncidentEventKind.transitioned, at, actor=action.actor, detail=detail)
        incidents[action.group] = inc.model_dump(mode="json")
        return out

    @staticmethod
    def check_transition(inc: Incident, action: IncidentActionKind) -> tuple[IncidentState, list[str]]:
        """The state `action` leads to and the deadlines it meets; InvalidTransition says why not."""
        s = inc.state
        A, S = IncidentActionKind, IncidentState
        if action == A.reopen:
            if s not in (S.closed, S.postmortem_filed):
                raise InvalidTransition(
                    f"incident {inc.incident_id} is {s.value}; only a closed one can be reopened"
                )
            return S.acknowledged, []
        if action == A.postmortem_filed:
            if s != S.closed:
                raise InvalidTransition(
                    f"incident {inc.incident_id} is {s.value}; file the post-mortem after closing"
                )
            return S.postmortem_filed, ["postmortem_filed"]
        if not inc.is_open:
            raise InvalidTransition(f"incident {inc.incident_id} is {s.value}; reopen it first")
        if action == A.resolve:
            return S.closed, []
        response = _response_deadline(inc.peak_tier)
        steps = {
            A.ack: (S.acknowledged, ["ack"]),
            A.meeting_convened: (S.meeting_convened, ["ack", "meeting_convened"]),
            A.verified: (S.facts_verified, ["ack", "facts_verified"]),
            A.statement_published: (S.statement_published, ["ack", response, "statement_published"]),
        }
        target, meets = steps[action]
        if action == A.meeting_convened and inc.peak_tier != Tier.level1:
            raise InvalidTransition("an emergency meeting is the level-1 step; levels 2 and 3 verify facts")
        if _RANK[target] < _RANK[s] or target == s:
            raise InvalidTransition(f"incident {inc.incident_id} is already {s.value}; cannot {action.value}")
        return target, meets

    # -- the clock -------------------------------------------------------------------------
    def on_tick(
        self,
        incidents: MutableMapping[str, dict[str, Any]],
        now: datetime,
        groups: Iterable[str] | None = None,
    ) -> Outcome:
        """Fire reminders, breaches and ladder steps that are due; `groups` limits the walk (default all)."""
        out = Outcome()
        for group in list(incidents.keys()) if groups is None else groups:
            row = incidents.get(group)
            if not row:
                continue
            inc = Incident.model_validate(row)
            if not inc.is_open and "postmortem_filed" not in inc.deadlines:
                continue
            changed = False
            for d in inc.deadlines.values():
                if d.met_at is not None or d.breached_at is not None:
                    continue
                if not inc.is_open and d.name != "postmortem_filed":
                    continue  # closing ends the response deadlines; only the post-mortem clock still runs
                total = (d.due_at - d.started_at).total_seconds()
                for fraction in self.config.sla.reminder_fractions:
                    if fraction not in d.reminded and now >= d.started_at + timedelta(
                        seconds=total * fraction
                    ):
                        d.reminded.append(fraction)
                        changed = True
                        if now < d.due_at:
                            self._emit(
                                out,
                                inc,
                                IncidentEventKind.reminder,
                                now,
                                detail=f"{d.name} at {fraction:.0%}",
                            )
                            out.alerts.append(
                                self._alert(
                                    inc,
                                    AlertKind.reminder,
                                    self._audience(inc),
                                    now,
                                    suffix=f"{d.name}|{fraction}",
                                )
                            )
                if now >= d.due_at:
                    d.breached_at = now
                    changed = True
                    self._emit(
                        out,
                        inc,
                        IncidentEventKind.sla_breached,
                        now,
                        detail=f"{d.name} due {d.due_at.isoformat()}",
                    )
                    inc.escalation_level = min(inc.escalation_level + 1, len(self.config.ladder) - 1)
                    self._emit(
                        out, inc, IncidentEventKind.escalated, now, detail=f"paging {self._audience(inc)}"
                    )
                    out.alerts.append(
                        self._alert(inc, AlertKind.sla_breached, self._audience(inc), now, suffix=d.name)
                    )
            changed |= self._walk_ladder(inc, now, out)
            if changed:
                incidents[group] = inc.model_dump(mode="json")
        return out

    def _walk_ladder(self, inc: Incident, now: datetime, out: Outcome) -> bool:
        """Page the policy's rungs as their delays pass while nobody has acknowledged; then repeat."""
        ack = inc.deadlines.get("ack")
        if not inc.is_open or ack is None or ack.met_at is not None:
            return False
        policy = self.config.policy(int(inc.peak_tier))
        changed = False
        for i, step in enumerate(policy.steps):
            if i == 0 or i in inc.ladder_paged or now < inc.opened_at + timedelta(minutes=step.after_minutes):
                continue
            inc.ladder_paged.append(i)
            inc.last_page_at, changed = now, True
            self._emit(
                out, inc, IncidentEventKind.escalated, now, detail=f"unacknowledged: paging {step.audience}"
            )
            out.alerts.append(
                self._alert(inc, AlertKind.escalation, step.audience, now, suffix=f"ladder|{i}")
            )
        last = policy.steps[-1]
        all_paged = len(policy.steps) == 1 or len(policy.steps) - 1 in inc.ladder_paged
        since = inc.last_page_at or inc.opened_at
        if (
            all_paged
            and inc.repeats_sent < policy.repeats
            and now >= since + timedelta(minutes=policy.repeat_minutes)
        ):
            inc.repeats_sent += 1
            inc.last_page_at, changed = now, True
            self._emit(
                out,
                inc,
                IncidentEventKind.escalated,
                now,
                detail=f"repeat {inc.repeats_sent}: {last.audience}",
            )
            out.alerts.append(
                self._alert(
                    inc, AlertKind.escalation, last.audience, now, suffix=f"repeat|{inc.repeats_sent}"
                )
            )
        return changed

    # -- helpers -----------------------------------------------------------------------------
    def _audience(self, inc: Incident) -> Any:
        return self.config.ladder[inc.escalation_level]

    def _emit(
        self,
        out: Outcome,
        inc: Incident,
        kind: IncidentEventKind,
        at: datetime,
        *,
        actor: str = "system",
        detail: str = "",
    ) -> None:
        inc.sequence += 1
        inc.timeline.append(
            {
                "seq": inc.sequence,
                "at": at.isoformat(),
                "kind": kind.value,
                "actor": actor,
                "state": inc.state.value,
                "tier": int(inc.tier),
                "detail": detail,
            }
        )
        out.events.append(
            IncidentEvent(
                event_time=at,
                incident_id=inc.incident_id,
                group=inc.group,
                kind=kind,
                state=inc.state,
                tier=inc.tier,
                actor=actor,
                detail=detail,
                deadlines=inc.public_deadlines(),
                sequence=inc.sequence,
            )
        )

    def _alert(
        self,
        inc: Incident,
        kind: AlertKind,
        audience: Any,
        now: datetime,
        *,
        tc: TierChange | None = None,
        suffix: str = "",
    ) -> Alert:
        tier_name = _TIER_NAME[int(inc.tier)]
        lines = [
            f"**舆情{tier_name}预警** 规则组 `{inc.group}`",
            f"事件 {inc.incident_id} 状态 {inc.state.value}",
        ]
        if tc is not None:
            lines.append("传播量: " + ", ".join(f"{k}: {v:,}" for k, v in tc.counts.items()))
            for p in tc.top_posts[:3]:
                lines.append(f"- [{p.get('platform')}] {p.get('excerpt', '')} ({p.get('spread', 0):,})")
        for d in inc.deadlines.values():
            if d.met_at is None:
                lines.append(f"时限 {d.name}: {d.due_at.isoformat()}")
        titles = {
            AlertKind.incident_opened: f"[{tier_name}] 新舆情事件: {inc.group}",
            AlertKind.tier_change: f"[{tier_name}] 舆情升级: {inc.group}",
            AlertKind.reminder: f"[{tier_name}] 时限提醒: {inc.group}",
            AlertKind.sla_breached: f"[{tier_name}] 超时未处理，已升级: {inc.group}",
            AlertKind.escalation: f"[{tier_name}] 无人确认，升级呼叫: {inc.group}",
        }
        dedup = f"{inc.incident_id}|{kind.value}|{int(inc.tier)}|{suffix or (tc.event_id[:16] if tc else '')}"
        ack_deadline = inc.deadlines.get("ack")
        needs_ack = ack_deadline is not None and ack_deadline.met_at is None
        ack_url = self.ack_link(inc.incident_id, inc.group, now) if self.ack_link and needs_ack else None
        return Alert(
            event_time=now,
            ack_url=ack_url,
            dedup_key=dedup,
            kind=kind,
            group=inc.group,
            tier=inc.tier,
            title=titles.get(kind, f"[{tier_name}] {inc.group}"),
            body="\n".join(lines),
            incident_id=inc.incident_id,
            audience=audience,
        )
