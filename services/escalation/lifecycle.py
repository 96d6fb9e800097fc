"""Escalation's public surface for the desk: an incident's rules and its report, asked of the incident as its
IncidentEvents show it. The only module of escalation another service may import (tests/test_layers.py).

The desk refuses an operator action early, with the escalation worker's own reason, and renders a draft
post-mortem for an open incident; the worker checks every action again on its own state, so what the desk
lets through on stale events still cannot break the rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.events import IncidentAction, IncidentActionKind, IncidentEvent, TierChange
from services.common.config import EscalationConfig
from services.escalation.core import EscalationCore, Incident
from services.escalation.exceptions import InvalidTransition
from services.escalation.report import LEAD_IN, ReportInput, render_html, render_markdown

__all__ = ["LEAD_IN", "InvalidTransition", "Lifecycle", "draft_report", "report_html"]


class Lifecycle:
    """The escalation rules an operator action must pass: the state machine, the statement review
    (经领导小组审核) and the 回访 list, with the approvers of `config`."""

    def __init__(self, config: EscalationConfig) -> None:
        self._core = EscalationCore(config)

    def check(self, events: Sequence[IncidentEvent], action: IncidentAction) -> None:
        """InvalidTransition says why the escalation worker would refuse `action` on this incident."""
        self._core.check_action(_incident(events), action)

    @staticmethod
    def check_kind(events: Sequence[IncidentEvent], kind: IncidentActionKind, comment: str = "") -> None:
        """The state rules alone, for an action of `kind` with no statement or 回访 fields: whether a button
        for it may be offered. InvalidTransition says why not."""
        EscalationCore.check_transition(_incident(events), kind, comment)


def draft_report(
    events: Sequence[IncidentEvent], tier_changes: Sequence[TierChange], posts: Sequence[Mapping[str, Any]]
) -> str:
    """The post-mortem report (复盘报告) as Markdown, from an incident's events, the tier changes of its group
    from LEAD_IN before its opening, and its posts (ledger rows)."""
    return render_markdown(ReportInput.from_events(events, tier_changes, [dict(p) for p in posts]))


def report_html(markdown: str) -> str:
    """A report as a standalone HTML page (an inline style, no script)."""
    return render_html(markdown)


def _incident(events: Sequence[IncidentEvent]) -> Incident:
    """The incident as the rules see it, rebuilt from its events (oldest first; at least one)."""
    last = events[-1]
    return Incident.model_validate(
        {
            "incident_id": last.incident_id,
            "group": last.group,
            "tier": last.tier,
            "peak_tier": max((e.tier for e in events), key=lambda t: t.severity),
            "state": last.state,
            "opened_at": events[0].event_time,
            "sequence": last.sequence,
            # The statement and 回访 rules look at these: the versions and items as the last event shows them.
            "statement": [v.model_dump() for v in last.statement],
            "follow_ups": [i.model_dump() for i in last.follow_ups],
        }
    )
