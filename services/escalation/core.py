"""Incidents, SLA clocks and the escalation ladder. Plain Python; time is passed in.

State per rule group is one incident row (a dict) in a mapping the caller controls. Deadlines are data in
that row, checked on every tick, so they survive restarts and partition moves. The core never writes the
mapping: every call returns an `Outcome` with the events, the alerts and the new rows, and the caller
publishes the events and alerts before it saves the rows. A crash between the two then fires again after
recovery (same sequence numbers, so the same event ids and dedup keys) instead of losing the page.

The public statement goes through the leadership group's review (workflow.py): while a version waits for it,
the statement deadline's reminders and its breach go to the approvers instead of climbing the ladder.
Items on the 回访 list remind their owner at the same fractions and once when overdue; they page nobody up.

Paging: each tier's policy is its ladder (responder → group lead → leadership). A breached deadline pages the
next rung at once; while nobody has acknowledged, rungs are also paged as their delays pass. A tick pages a
rung at most once: a breach and a ladder step that reach the same rung in one tick make one page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
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
from services.common.alerttext import inert, post_ref
from services.common.config import Audience, EscalationConfig, EscalationPolicy
from services.escalation.exceptions import InvalidTransition
from services.escalation.report import CurvePoint, Entry, ReportInput, render_markdown
from services.escalation.workdays import WorkCalendar
from services.escalation.workflow import (
    FOLLOW_UP_STEPS,
    STATEMENT_STEPS,
    FollowUpRow,
    StatementRow,
    awaiting_review,
    due_follow_ups,
    open_items,
    plain,
    publish_refusal,
)
from services.escalation.workflow import apply as apply_step
from services.escalation.workflow import check as check_step

__all__ = ["EscalationCore", "Incident", "Outcome"]

A, S = IncidentActionKind, IncidentState
# Meeting convened and facts verified are parallel steps of the same stage: a team may do either first.
_RANK = {
    S.opened: 0,
    S.acknowledged: 1,
    S.meeting_convened: 2,
    S.facts_verified: 2,
    S.statement_published: 3,
    S.cooling: 4,
    S.closed: 5,
    S.postmortem_filed: 6,
}
_OPEN = {s for s in S if s not in (S.closed, S.postmortem_filed)}
_TIER_NAME = {1: "一级", 2: "二级", 3: "三级", 0: "无"}
_OVERRIDE = "override:"
_MAX_CURVE = 200  # tier changes kept per incident for the report; a flapping group must not grow the row


class _DeadlineRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    started_at: datetime
    due_at: datetime
    met_at: datetime | None = None
    breached_at: datetime | None = None
    superseded_at: datetime | None = None
    reminded: list[float] = []
    review_at: datetime | None = None  # a single review reminder instead of the fractions (the closing stage)
    approximate: bool = False

    @property
    def pending(self) -> bool:
        return self.met_at is None and self.breached_at is None and self.superseded_at is None

    def public(self) -> Deadline:
        return Deadline(
            name=self.name,
            started_at=self.started_at,
            due_at=self.due_at,
            met_at=self.met_at,
            breached_at=self.breached_at,
            superseded_at=self.superseded_at,
            approximate=self.approximate,
        )


class Incident(BaseModel):
    """The mutable state of one incident, stored as a JSON row."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str
    group: str
    tier: Tier
    peak_tier: Tier
    state: IncidentState
    opened_at: datetime
    clock_start: datetime | None = (
        None  # SLA clocks and ladder delays count from here (bounded detection lag)
    )
    sequence: int = 0
    escalation_level: int = 0  # highest rung of the policy paged so far (0: the responder, by the opening)
    ladder_paged: list[int] = []  # rungs the unacknowledged ladder walk has paged
    repeats_sent: int = 0
    last_page_at: datetime | None = None
    deadlines: dict[str, _DeadlineRow] = {}
    past_deadlines: list[_DeadlineRow] = []  # retired before a reopen or a re-cooling, for the report
    timeline: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []  # the incident's tier changes: at, tier, reason, counts, id
    top_posts: list[dict[str, Any]] = []
    posts_cited: list[str] = []
    statement: list[StatementRow] = []  # every version, oldest first
    follow_ups: list[FollowUpRow] = []  # the 回访 list

    @property
    def is_open(self) -> bool:
        return self.state in _OPEN

    @property
    def started(self) -> datetime:
        return self.clock_start or self.opened_at

    def public_deadlines(self) -> tuple[Deadline, ...]:
        return tuple(d.public() for d in (*self.past_deadlines, *self.deadlines.values()))


@dataclass
class Outcome:
    events: list[IncidentEvent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # group -> new incident row

    def save(self, table: MutableMapping[str, Any]) -> None:
        """Write the new rows: only after the events and alerts were produced."""
        for group, row in self.rows.items():
            table[group] = row


def _response_deadline(tier: Tier) -> str:
    return "meeting_convened" if tier == Tier.level1 else "facts_verified"


LinkMaker = Callable[[str, str, datetime], str | None]


class EscalationCore:
    def __init__(self, config: EscalationConfig, ack_link: LinkMaker | None = None) -> None:
        self.config = config
        self.ack_link = ack_link  # (incident_id, group, now) -> signed URL
        self.calendar = WorkCalendar(config.calendar)

    # -- tier changes ------------------------------------------------------------------
    def on_tier_change(
        self, tc: TierChange, incidents: Mapping[str, dict[str, Any]], now: datetime
    ) -> Outcome:
        out = Outcome()
        row = incidents.get(tc.group)
        inc = Incident.model_validate(row) if row else None
        if inc is not None and any(p.get("id") == tc.event_id for p in inc.curve):
            return out  # a replay: this tier change already opened or changed this incident
        if inc is None or not inc.is_open:
            if tc.tier == Tier.none or tc.direction == "down":
                return out
            inc, note = self._open(tc, now)
            self._record_evidence(inc, tc)
            self._emit(
                out,
                inc,
                IncidentEventKind.opened,
                now,
                detail=f"opened by tier change {tc.event_id[:12]}{note}",
            )
            out.alerts.append(self._alert(inc, AlertKind.incident_opened, self._audience(inc), now, tc=tc))
            out.rows[tc.group] = inc.model_dump(mode="json")
            return out
        recorded = self._record_evidence(inc, tc)
        previous = inc.tier
        if tc.tier == previous:
            if recorded:
                out.rows[tc.group] = inc.model_dump(mode="json")
            return out
        inc.tier = tc.tier
        notes = [f"{_TIER_NAME[int(previous)]} → {_TIER_NAME[int(tc.tier)]}"]
        if tc.tier.severity > inc.peak_tier.severity:
            inc.peak_tier = tc.tier
            notes += self._tighten(inc, now)
        cooled = tc.tier == Tier.none and inc.state == S.statement_published
        if cooled:
            notes.append(self._cool(inc, now))
        elif tc.direction == "up" and inc.state == S.cooling:
            inc.state = S.statement_published
            self._retire(inc, "closing", now)
            notes.append("spread resumed: cooling ended, closing review retired")
        self._emit(out, inc, IncidentEventKind.tier_changed, now, detail="; ".join(notes))
        if tc.direction == "up":
            out.alerts.append(self._alert(inc, AlertKind.tier_change, self._audience(inc), now, tc=tc))
        out.rows[tc.group] = inc.model_dump(mode="json")
        return out

    def _open(self, tc: TierChange, now: datetime) -> tuple[Incident, str]:
        # Deadlines count from detection, but a tier change that waited longer than the bound (a replay, a
        # rebuilt table, a long outage) starts its clocks at the bound: it must not breach every deadline and
        # page every rung the moment it arrives. A clock running ahead of ours cannot extend the SLA either.
        bound = timedelta(minutes=self.config.sla.max_detection_lag_minutes)
        start = min(max(tc.detected_at, now - bound), now)
        note = ""
        if start != tc.detected_at:
            lag = now - tc.detected_at
            note = (
                f"; detected {int(lag.total_seconds() // 60)} min before it was processed, so the SLA clocks "
                f"start at {start.isoformat()}"
            )
        inc = Incident(
            incident_id=event_id("incident", tc.group, tc.event_id)[:16],
            group=tc.group,
            tier=tc.tier,
            peak_tier=tc.tier,
            state=S.opened,
            opened_at=tc.detected_at,
            clock_start=start,
        )
        self._add(inc, "ack", start, start + timedelta(minutes=self._sla(inc).ack_minutes), now)
        self._start_response(inc, start, now)
        return inc, note

    def _sla(self, inc: Incident) -> Any:
        return self.config.sla.for_tier(int(inc.peak_tier))

    def _start_response(self, inc: Incident, start: datetime, now: datetime) -> None:
        sla = self._sla(inc)
        name = _response_deadline(inc.peak_tier)
        self._add(inc, name, start, start + timedelta(minutes=sla.response_minutes), now)
        self._add(inc, "statement_published", start, start + timedelta(hours=sla.statement_hours), now)

    def _add(
        self, inc: Incident, name: str, start: datetime, due: datetime, now: datetime, **extra: Any
    ) -> _DeadlineRow:
        d = _DeadlineRow(name=name, started_at=start, due_at=due, **extra)
        if d.review_at is None:
            # Reminders whose moment passed before the row existed are not sent: the alert or event that
            # creates the deadline already shows it.
            total = (due - start).total_seconds()
            fractions = self.config.sla.reminder_fractions
            d.reminded = [f for f in fractions if start + timedelta(seconds=total * f) <= now]
        inc.deadlines[name] = d
        return d

    def _retire(self, inc: Incident, name: str, now: datetime) -> None:
        """Move a deadline to the past: superseded if it was still pending."""
        d = inc.deadlines.pop(name, None)
        if d is None:
            return
        if d.pending:
            d.superseded_at = now
        inc.past_deadlines.append(d)

    def _tighten(self, inc: Incident, now: datetime) -> list[str]:
        """A tier going up shortens pending deadlines to the stricter tier's SLA, counted from now, and
        supersedes a response step the new tier does not have (facts verified → emergency meeting)."""
        notes: list[str] = []
        sla = self._sla(inc)
        wanted = _response_deadline(inc.peak_tier)
        for name, minutes in (("ack", sla.ack_minutes), (wanted, sla.response_minutes)):
            d = inc.deadlines.get(name)
            due = now + timedelta(minutes=minutes)
            if d is None:
                self._add(inc, name, now, due, now)
                notes.append(f"{name} due {due.isoformat()}")
            elif d.pending and due < d.due_at:
                d.due_at = due
                notes.append(f"{name} now due {due.isoformat()}")
        for name in ("facts_verified", "meeting_convened"):
            d = inc.deadlines.get(name)
            if name != wanted and d is not None and d.pending:
                d.superseded_at = now
                notes.append(f"{name} superseded by {wanted}")
        return notes

    def _cool(self, inc: Incident, now: datetime) -> str:
        """Enter the closing stage (收尾): review at 24 h, close by 72 h, counted from the clock start."""
        sla = self.config.sla
        inc.state = S.cooling
        self._retire(inc, "closing", now)
        review = max(inc.started + timedelta(hours=sla.closing_review_hours), now)
        due = inc.started + timedelta(hours=sla.closing_hours)
        self._add(inc, "closing", now, due, now, review_at=review)
        return f"cooling: closing review {review.isoformat()}, close by {due.isoformat()}"

    def _record_evidence(self, inc: Incident, tc: TierChange) -> bool:
        """Keep the tier curve and top posts for the report; False if this tier change was seen already."""
        if any(p.get("id") == tc.event_id for p in inc.curve):
            return False
        point = {"at": tc.window_end.isoformat(), "tier": int(tc.tier), "reason": tc.reason}
        inc.curve = [*inc.curve, {**point, "counts": dict(tc.counts), "id": tc.event_id}][-_MAX_CURVE:]
        posts = {str(p.get("post")): p for p in inc.top_posts}
        for p in tc.top_posts:
            key = str(p.get("post"))
            if key not in posts or int(p.get("spread", 0)) > int(posts[key].get("spread", 0)):
                posts[key] = dict(p)
        inc.top_posts = sorted(posts.values(), key=lambda p: -int(p.get("spread", 0)))[:10]
        cited = set(inc.posts_cited) | {str(p.get("post")) for p in tc.top_posts}
        inc.posts_cited = sorted(cited)[:1000]
        return True

    # -- operator actions ------------------------------------------------------------------
    def on_action(self, action: IncidentAction, incidents: Mapping[str, dict[str, Any]]) -> Outcome:
        row = incidents.get(action.group)
        if not row:
            raise InvalidTransition(f"no incident for group {action.group!r}")
        inc = Incident.model_validate(row)
        if inc.incident_id != action.incident_id:
            raise InvalidTransition(
                f"incident {action.incident_id} is not the current incident of group {action.group!r}"
            )
        at, kind, before = action.event_time, action.action, inc.state
        target, meets = self.check_action(inc, action)
        notes = [kind.value + (f": {action.comment}" if action.comment else "")]
        if kind in STATEMENT_STEPS or kind in FOLLOW_UP_STEPS or kind == A.statement_published:
            notes.append(apply_step(inc.statement, inc.follow_ups, action))
        for name in meets:
            d = inc.deadlines.get(name)
            if d is not None and d.met_at is None and d.superseded_at is None:
                d.met_at = at
        if kind == A.reopen:
            notes.append(self._reopen(inc, at))
        inc.state = target
        if kind == A.cooling:
            notes.append(self._cool(inc, at))
        if target == S.closed:
            notes.append(self._close(inc, at))
        out = Outcome()
        # Every transition changes the state; an action that leaves it (follow-up, correction, a statement
        # step, a further statement after the first) is recorded as noted.
        event_kind = IncidentEventKind.transitioned if target != before else IncidentEventKind.noted
        self._emit(out, inc, event_kind, at, actor=action.actor, detail="; ".join(notes), action=kind)
        if target == S.closed:
            out.events[-1] = out.events[-1].model_copy(
                update={"report": render_markdown(self.report_input(inc))}
            )
        if kind == A.statement_submitted:
            out.alerts.append(self._review_alert(inc, at))
        if target == S.statement_published and before != target and inc.tier == Tier.none:
            self._emit(
                out, inc, IncidentEventKind.transitioned, at, detail=self._cool(inc, at) + " (tier none)"
            )
        out.rows[action.group] = inc.model_dump(mode="json")
        return out

    def _reopen(self, inc: Incident, at: datetime) -> str:
        """Start over from the reopen: fresh response and statement clocks, no post-mortem clock, a new
        ladder. The reopener acknowledges by reopening."""
        for name in list(inc.deadlines):
            self._retire(inc, name, at)
        self._add(inc, "ack", at, at, at, met_at=at)
        self._start_response(inc, at, at)
        inc.clock_start = at
        inc.escalation_level, inc.ladder_paged, inc.repeats_sent, inc.last_page_at = 0, [], 0, None
        return "fresh deadlines from the reopen; post-mortem clock dropped"

    def _close(self, inc: Incident, at: datetime) -> str:
        """Closing ends the response clocks (overdue ones count as breached), starts the post-mortem one."""
        for d in inc.deadlines.values():
            if d.pending:
                if at >= d.due_at:
                    d.breached_at = at
                else:
                    d.superseded_at = at
        days = self.config.sla.postmortem_working_days
        due, approximate = self.calendar.add_working_days(at, days)
        self._add(inc, "postmortem_filed", at, due, at, approximate=approximate)
        left = len(open_items(inc.follow_ups))
        return (
            f"post-mortem due {due.isoformat()} ({days} working days"
            + (", approximate: no holiday calendar for that year)" if approximate else ")")
            + (f"; {left} 回访 item(s) left open" if left else "")
        )

    def check_action(self, inc: Incident, action: IncidentAction) -> tuple[IncidentState, list[str]]:
        """`check_transition`, then the statement and 回访 rules that need the config and the action's fields
        (approvers, versions, items). The API calls it too, to refuse early with the same reason."""
        target, meets = self.check_transition(inc, action.action, action.comment)
        try:
            check_step(inc.statement, inc.follow_ups, action, self.config.statement)
        except InvalidTransition as exc:
            raise InvalidTransition(f"incident {inc.incident_id}: {exc}") from None
        return target, meets

    @staticmethod
    def check_transition(
        inc: Incident, action: IncidentActionKind, comment: str = ""
    ) -> tuple[IncidentState, list[str]]:
        """The state `action` leads to and the deadlines it meets; InvalidTransition says why not."""
        s, iid = inc.state, inc.incident_id
        if action in (A.follow_up, A.correction):
            if not comment.strip():
                raise InvalidTransition(f"{action.value} needs a comment saying what was done")
            if action == A.correction and _RANK[s] < 2:
                raise InvalidTransition(
                    f"incident {iid} is {s.value}: nothing verified or published to correct"
                )
            return s, []
        if action == A.follow_up_outcome:
            return s, []  # 回访 goes on after closing too
        if action == A.reopen:
            if s not in (S.closed, S.postmortem_filed):
                raise InvalidTransition(f"incident {iid} is {s.value}; only a closed one can be reopened")
            return S.acknowledged, []
        if action == A.postmortem_filed:
            if s != S.closed:
                raise InvalidTransition(f"incident {iid} is {s.value}; file the post-mortem after closing")
            return S.postmortem_filed, ["postmortem_filed"]
        if not inc.is_open:
            raise InvalidTransition(f"incident {iid} is {s.value}; reopen it first")
        if action in STATEMENT_STEPS or action == A.follow_up_added:
            return s, []
        if action == A.resolve:
            reason = comment.strip()
            overridden = reason.lower().startswith(_OVERRIDE) and bool(reason[len(_OVERRIDE) :].strip())
            if s != S.cooling and not overridden:
                raise InvalidTransition(
                    f"incident {iid} is {s.value}; resolve needs the cooling state (spread stopped after the "
                    f"statement) or a comment starting with '{_OVERRIDE}' that says why it may close now"
                )
            if (left := open_items(inc.follow_ups)) and not overridden:
                raise InvalidTransition(
                    f"incident {iid} has {len(left)} open 回访 item(s) "
                    f"({', '.join(i.item_id for i in left)}); record their outcomes or resolve with a "
                    f"comment starting with '{_OVERRIDE}' that says why it may close now"
                )
            return S.closed, ["closing"]
        if action == A.statement_published:
            if refusal := publish_refusal(inc.statement):
                raise InvalidTransition(f"incident {iid}: {refusal}")
            if _RANK[s] >= _RANK[S.statement_published]:
                return s, []  # a further statement (an update): on the record, no transition
        if action == A.cooling:
            if s != S.statement_published:
                raise InvalidTransition(
                    f"incident {iid} is {s.value}; cooling starts after the statement is published"
                )
            return S.cooling, []
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
            raise InvalidTransition(f"incident {iid} is already {s.value}; cannot {action.value}")
        return target, meets

    # -- the clock -------------------------------------------------------------------------
    def on_tick(
        self,
        incidents: Mapping[str, dict[str, Any]],
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
            if self._tick_one(inc, now, out):
                out.rows[group] = inc.model_dump(mode="json")
        return out

    def _tick_one(self, inc: Incident, now: datetime, out: Outcome) -> bool:
        changed = False
        breached: list[_DeadlineRow] = []
        for d in inc.deadlines.values():
            # Closing ends the response deadlines; only the post-mortem clock runs on a closed incident.
            if not d.pending or (not inc.is_open and d.name != "postmortem_filed"):
                continue
            changed |= self._remind(inc, d, now, out)
            if now >= d.due_at:
                d.breached_at = now
                breached.append(d)
        by_rung: dict[int, list[str]] = {}
        for d in sorted(breached, key=lambda d: d.due_at):
            changed = True
            self._emit(
                out, inc, IncidentEventKind.sla_breached, now, detail=f"{d.name} due {d.due_at.isoformat()}"
            )
            waiting = awaiting_review(inc.statement) if d.name == "statement_published" else None
            if waiting is not None:
                # The statement waits for the leadership group: paging the next rung would not get it signed.
                why = f"{d.name} breached while version {waiting.version} waits for review"
                self._page(
                    inc, 0, AlertKind.sla_breached, now, out, why=why, suffix=d.name, audience="approvers"
                )
                continue
            # Each breach climbs one rung; breaches beyond the top share the top rung's single page.
            rung = min(inc.escalation_level + 1, len(self._policy(inc).steps) - 1)
            inc.escalation_level = rung
            by_rung.setdefault(rung, []).append(d.name)
        for rung, names in by_rung.items():
            why = ", ".join(names) + " breached"
            self._page(inc, rung, AlertKind.sla_breached, now, out, why=why, suffix=names[0])
        if inc.is_open:
            changed |= self._walk_ladder(inc, now, out)
            changed |= self._remind_follow_ups(inc, now, out)
        return changed

    def _remind_follow_ups(self, inc: Incident, now: datetime, out: Outcome) -> bool:
        due = due_follow_ups(inc.follow_ups, now, self.config.sla.reminder_fractions)
        for item, label in due:
            overdue = label == "overdue"
            what = "overdue" if overdue else f"{float(label):.0%} of the time used"
            self._emit(out, inc, IncidentEventKind.reminder, now, detail=f"回访 item {item.item_id}: {what}")
            due_at = item.due_at.isoformat(timespec="minutes")
            lines = [
                f"回访 {plain(item.target)}",
                f"负责人 owner: {plain(item.owner, 64)} · 截止 due {due_at}"
                + (" · 已逾期 overdue" if overdue else ""),
            ]
            tier_name = _TIER_NAME[int(inc.tier)]
            title = f"[{tier_name}] 回访{'逾期' if overdue else '提醒'}: {inert(inc.group, 64)}"
            out.alerts.append(
                self._alert(
                    inc,
                    AlertKind.reminder,
                    "responder",
                    now,
                    suffix=f"follow_up|{item.item_id}|{label}",
                    extra=lines,
                    title=title,
                )
            )
        return bool(due)

    def _review_alert(self, inc: Incident, now: datetime) -> Alert:
        """Tell the approvers a version waits for them (the deadline's reminders follow it there)."""
        waiting = awaiting_review(inc.statement)
        assert waiting is not None  # noqa: S101 - called right after a submission
        approvers = "、".join(plain(a, 64) for a in self.config.statement.approvers) or "none configured"
        lines = [
            f"声明第 {waiting.version} 版待领导小组审核 (version {waiting.version} waits for review)",
            f"起草 drafted by {plain(waiting.drafted_by, 64)}",
            f"提交 submitted by {plain(waiting.submitted_by, 64)}",
            f"审核人 approvers: {approvers}",
        ]
        title = f"[{_TIER_NAME[int(inc.tier)]}] 声明待审核 v{waiting.version}: {inert(inc.group, 64)}"
        return self._alert(
            inc,
            AlertKind.statement_review,
            "approvers",
            now,
            suffix=f"v{waiting.version}",
            extra=lines,
            title=title,
        )

    def _remind(self, inc: Incident, d: _DeadlineRow, now: datetime, out: Outcome) -> bool:
        if now >= d.due_at:
            return False
        labels: list[tuple[str, str]] = []
        if d.review_at is not None:
            if not d.reminded and now >= d.review_at:
                d.reminded = [0.0]
                labels.append(("closing review: has spread stopped? close or keep monitoring", "review"))
        else:
            total = (d.due_at - d.started_at).total_seconds()
            passed = [
                f
                for f in self.config.sla.reminder_fractions
                if f not in d.reminded and now >= d.started_at + timedelta(seconds=total * f)
            ]
            if passed:
                # After an outage several moments may have passed at once: the latest says all there is to
                # say, and the earlier ones are recorded as skipped rather than sent late, one after another.
                d.reminded.extend(passed)
                latest = max(passed)
                skipped = sorted(f for f in passed if f != latest)
                note = (
                    f" ({', '.join(f'{f:.0%}' for f in skipped)} skipped: came due unseen)" if skipped else ""
                )
                labels.append((f"{latest:.0%} of the time used{note}", str(latest)))
        waiting = d.name == "statement_published" and awaiting_review(inc.statement) is not None
        audience: Audience = "approvers" if waiting else self._audience(inc)
        for detail, suffix in labels:
            self._emit(out, inc, IncidentEventKind.reminder, now, detail=f"{d.name}: {detail}")
            # Which deadline and how far along: two reminders of one incident must not read the same.
            what = [f"提醒 Reminder: 时限 {d.name} deadline, {detail}"]
            out.alerts.append(
                self._alert(inc, AlertKind.reminder, audience, now, suffix=f"{d.name}|{suffix}", extra=what)
            )
        return bool(labels)

    def _walk_ladder(self, inc: Incident, now: datetime, out: Outcome) -> bool:
        """Page the policy's rungs as their delays pass while nobody has acknowledged; then repeat the last.
        A rung a breach already reached is marked walked, not paged again."""
        ack = inc.deadlines.get("ack")
        if ack is None or ack.met_at is not None:
            return False
        policy = self._policy(inc)
        changed = False
        for i, step in enumerate(policy.steps):
            if i == 0 or i in inc.ladder_paged or now < inc.started + timedelta(minutes=step.after_minutes):
                continue
            inc.ladder_paged.append(i)
            changed = True
            if i <= inc.escalation_level:
                continue
            inc.escalation_level = i
            self._page(inc, i, AlertKind.escalation, now, out, why="unacknowledged", suffix=f"ladder|{i}")
        last = len(policy.steps) - 1
        all_paged = last == 0 or last in inc.ladder_paged or inc.escalation_level >= last
        since = inc.last_page_at or inc.started
        # A page this tick (breach or rung) moved last_page_at to now, so a repeat never doubles it.
        if (
            all_paged
            and inc.repeats_sent < policy.repeats
            and now >= since + timedelta(minutes=policy.repeat_minutes)
        ):
            inc.repeats_sent += 1
            changed = True
            why = f"unacknowledged, repeat {inc.repeats_sent}"
            self._page(
                inc, last, AlertKind.escalation, now, out, why=why, suffix=f"repeat|{inc.repeats_sent}"
            )
        return changed

    def _page(
        self,
        inc: Incident,
        rung: int,
        kind: AlertKind,
        now: datetime,
        out: Outcome,
        *,
        why: str,
        suffix: str,
        audience: Audience | None = None,
    ) -> None:
        audience = audience or self._policy(inc).steps[rung].audience
        inc.last_page_at = now
        self._emit(out, inc, IncidentEventKind.escalated, now, detail=f"paging {audience}: {why}")
        out.alerts.append(self._alert(inc, kind, audience, now, suffix=suffix))

    # -- helpers -----------------------------------------------------------------------------
    def _policy(self, inc: Incident) -> EscalationPolicy:
        return self.config.policy(int(inc.peak_tier))

    def _audience(self, inc: Incident) -> Audience:
        steps = self._policy(inc).steps
        return steps[min(inc.escalation_level, len(steps) - 1)].audience

    def report_input(self, inc: Incident) -> ReportInput:
        return ReportInput(
            incident_id=inc.incident_id,
            group=inc.group,
            entries=[
                Entry(
                    t["seq"],
                    datetime.fromisoformat(t["at"]),
                    t["kind"],
                    t["actor"],
                    t["state"],
                    t["tier"],
                    t.get("action"),
                    t["detail"],
                )
                for t in inc.timeline
            ],
            deadlines=inc.public_deadlines(),
            curve=[
                CurvePoint(datetime.fromisoformat(p["at"]), p["tier"], p["reason"], p["counts"])
                for p in inc.curve
            ],
            top_posts=inc.top_posts,
            posts_cited=len(inc.posts_cited),
            draft=inc.is_open,
            statement=[v.public() for v in inc.statement],
            follow_ups=[f.public() for f in inc.follow_ups],
        )

    def _emit(
        self,
        out: Outcome,
        inc: Incident,
        kind: IncidentEventKind,
        at: datetime,
        *,
        actor: str = "system",
        detail: str = "",
        action: IncidentActionKind | None = None,
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
                "action": action.value if action else None,
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
                action=action,
                statement=tuple(v.public() for v in inc.statement),
                follow_ups=tuple(f.public() for f in inc.follow_ups),
            )
        )

    def _alert(
        self,
        inc: Incident,
        kind: AlertKind,
        audience: Audience,
        now: datetime,
        *,
        tc: TierChange | None = None,
        suffix: str = "",
        extra: Sequence[str] = (),
        title: str | None = None,
    ) -> Alert:
        tier_name = _TIER_NAME[int(inc.tier)]
        group = inert(inc.group, 64)
        lines = [
            f"**舆情{tier_name}预警** 规则组 `{group}`",
            f"事件 {inc.incident_id} 状态 {inc.state.value}",
            *extra,
        ]
        if tc is not None:
            lines.append("传播量: " + ", ".join(f"{inert(k, 16)}: {v:,}" for k, v in tc.counts.items()))
            # Excerpts are the public's words: inert in every robot's markdown (services/common/alerttext.py).
            for p in tc.top_posts[:3]:
                ref = post_ref(p.get("url"))
                lines.append(
                    f"- [{p.get('platform')}] {inert(p.get('excerpt', ''), 80)} "
                    f"({int(p.get('spread', 0)):,})" + (f" {ref}" if ref else "")
                )
        for d in inc.deadlines.values():
            if d.pending:
                lines.append(
                    f"时限 {d.name}: {d.due_at.isoformat()}" + (" (约 approximate)" if d.approximate else "")
                )
        titles = {
            AlertKind.incident_opened: f"[{tier_name}] 新舆情事件: {group}",
            AlertKind.tier_change: f"[{tier_name}] 舆情升级: {group}",
            AlertKind.reminder: f"[{tier_name}] 时限提醒: {group}",
            AlertKind.sla_breached: f"[{tier_name}] 超时未处理，已升级: {group}",
            AlertKind.escalation: f"[{tier_name}] 无人确认，升级呼叫: {group}",
        }
        # The reopen count keeps a reopened incident's pages distinct from the first round's.
        round_ = sum(d.name == "ack" for d in inc.past_deadlines)
        dedup = (
            f"{inc.incident_id}|{kind.value}|{int(inc.tier)}|{suffix or (tc.event_id[:16] if tc else '')}"
            + (f"|r{round_}" if round_ else "")
        )
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
            title=title or titles.get(kind, f"[{tier_name}] {group}"),
            body="\n".join(lines),
            incident_id=inc.incident_id,
            audience=audience,
        )
