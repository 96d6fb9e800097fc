"""The statement workflow (发声回应, 经领导小组审核) and the 回访 list: their rows, rules and effects.

Plain functions over an incident's rows, called by `EscalationCore`: `check` says why an action is refused,
`apply` records it. A statement goes draft → submitted → approved or returned → (a new version) … → published;
every version keeps its text. Publishing needs an approved version: `publish_refusal`, which the state machine
itself checks, so that no outward message leaves without the leadership group's sign-off.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas.events import (
    FollowUpItem,
    FollowUpOutcome,
    IncidentAction,
    IncidentActionKind,
    StatementStatus,
    StatementVersion,
)
from services.common.config import StatementConfig, person_key
from services.escalation.exceptions import InvalidTransition

__all__ = [
    "FOLLOW_UP_STEPS",
    "STATEMENT_STEPS",
    "FollowUpRow",
    "StatementRow",
    "apply",
    "awaiting_review",
    "check",
    "due_follow_ups",
    "open_items",
    "plain",
    "publish_refusal",
]

A, V = IncidentActionKind, StatementStatus
# Steps recorded without moving the incident's state.
STATEMENT_STEPS = frozenset(
    {A.statement_drafted, A.statement_submitted, A.statement_approved, A.statement_returned}
)
FOLLOW_UP_STEPS = frozenset({A.follow_up_added, A.follow_up_outcome})
# Per incident. The versions and the list live in the incident row and on every incident event, and the
# closing event repeats them in its report; Kafka caps a message at 1 MB (tests/escalation/test_statement.py
# fills every bound and measures). An item may stand for many users ("电话投诉用户 5 位").
MAX_FOLLOW_UPS = 50
MAX_NOTE = 300  # a review comment or a 回访 note
MAX_FOLLOW_UP_DAYS = 30
_PENDING = (V.draft, V.submitted, V.approved)  # superseded by a newer draft


class StatementRow(BaseModel):
    """A statement version inside the incident row; `public()` is what events carry."""

    model_config = ConfigDict(extra="forbid")

    version: int
    text: str
    status: StatementStatus
    drafted_by: str
    drafted_at: datetime
    submitted_by: str | None = None
    submitted_at: datetime | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    review_comment: str = ""
    published_by: str | None = None
    published_at: datetime | None = None

    def public(self) -> StatementVersion:
        return StatementVersion.model_validate(self.model_dump())

    @classmethod
    def of(cls, version: StatementVersion) -> StatementRow:
        return cls.model_validate(version.model_dump())


class FollowUpRow(BaseModel):
    """A 回访 item inside the incident row, with its reminder state."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    target: str
    post: str | None = None
    owner: str
    due_at: datetime
    added_by: str
    added_at: datetime
    outcome: FollowUpOutcome | None = None
    outcome_by: str | None = None
    outcome_at: datetime | None = None
    note: str = ""
    reminded: list[float] = []  # reminder fractions sent
    overdue_at: datetime | None = None  # when the owner was told it is overdue

    @property
    def is_open(self) -> bool:
        return self.outcome is None

    def public(self) -> FollowUpItem:
        return FollowUpItem.model_validate(self.model_dump(exclude={"reminded", "overdue_at"}))

    @classmethod
    def of(cls, item: FollowUpItem) -> FollowUpRow:
        return cls.model_validate(item.model_dump())


def awaiting_review(versions: Sequence[StatementRow]) -> StatementRow | None:
    """The version the approvers have to review now, if any."""
    latest = versions[-1] if versions else None
    return latest if latest is not None and latest.status == V.submitted else None


def open_items(items: Sequence[FollowUpRow]) -> list[FollowUpRow]:
    return [i for i in items if i.is_open]


def publish_refusal(versions: Sequence[StatementRow], version: int | None = None) -> str | None:
    """Why nothing (or not `version`) can be published now; None when the latest version is approved."""
    latest = versions[-1] if versions else None
    if latest is None:
        return (
            "publishing needs a statement approved by the leadership group (经领导小组审核); none is drafted "
            "yet: draft one (statement_drafted), submit it and have an approver approve it"
        )
    if latest.status != V.approved:
        return (
            f"publishing needs a version approved by the leadership group (经领导小组审核); the latest, "
            f"version {latest.version}, is {latest.status.value}"
        )
    if version is not None and version != latest.version:
        return f"version {version} is not the approved version (version {latest.version} is)"
    return None


def check(
    versions: Sequence[StatementRow],
    items: Sequence[FollowUpRow],
    action: IncidentAction,
    config: StatementConfig,
) -> None:
    """InvalidTransition saying why the statement or 回访 rules refuse `action` (other actions pass)."""
    kind = action.action
    if kind in STATEMENT_STEPS or kind == A.statement_published:
        _check_statement(versions, action, config)
    elif kind in FOLLOW_UP_STEPS:
        _check_follow_up(items, action)


def _check_statement(
    versions: Sequence[StatementRow], action: IncidentAction, config: StatementConfig
) -> None:
    kind, latest = action.action, (versions[-1] if versions else None)
    if kind == A.statement_published:
        if refusal := publish_refusal(versions, action.version):
            raise InvalidTransition(refusal)
        return
    if kind == A.statement_drafted:
        if len(versions) >= config.max_versions:
            raise InvalidTransition(
                f"the statement has {len(versions)} versions, the most an incident keeps "
                "(escalation.statement.max_versions)"
            )
        if latest is not None and latest.text == action.text:
            raise InvalidTransition(f"the text is the same as version {latest.version}: change it first")
        return
    if latest is None:
        raise InvalidTransition("no statement is drafted yet: draft one first (statement_drafted)")
    if action.version is not None and action.version != latest.version:
        raise InvalidTransition(
            f"version {action.version} is not the latest (version {latest.version} is, "
            f"{latest.status.value}); reload it before acting on it"
        )
    if kind == A.statement_submitted:
        if latest.status != V.draft:
            raise InvalidTransition(
                f"version {latest.version} is {latest.status.value}; only a draft can be submitted"
            )
        return
    # Approve or return: the leadership group's step.
    if not config.approvers:
        raise InvalidTransition(
            "no approvers are configured (escalation.statement.approvers), so nobody can approve or return "
            "a statement"
        )
    if not config.is_approver(action.actor):
        raise InvalidTransition(
            f"{action.actor!r} is not an approver; approvers are the leadership group members listed in "
            "escalation.statement.approvers"
        )
    if latest.status != V.submitted:
        raise InvalidTransition(
            f"version {latest.version} is {latest.status.value}, not waiting for review; submit it first"
        )
    if kind == A.statement_returned and not action.comment.strip():
        raise InvalidTransition("statement_returned needs a comment saying what to change")
    if len(action.comment) > MAX_NOTE:
        raise InvalidTransition(
            f"a review comment is at most {MAX_NOTE} characters (it is kept with the version)"
        )
    if (
        kind == A.statement_approved
        and not config.allow_self_approval
        and person_key(action.actor) == person_key(latest.drafted_by)
    ):
        raise InvalidTransition(
            f"{action.actor!r} drafted version {latest.version} and may not approve it too: another approver "
            "must (escalation.statement.allow_self_approval is false)"
        )


def _check_follow_up(items: Sequence[FollowUpRow], action: IncidentAction) -> None:
    if action.action == A.follow_up_outcome:
        item = next((i for i in items if i.item_id == action.item_id), None)
        if item is None:
            raise InvalidTransition(f"no 回访 item {action.item_id} on this incident")
        if item.outcome is not None:
            raise InvalidTransition(f"回访 item {item.item_id} is already recorded as {item.outcome.value}")
        if len(action.comment) > MAX_NOTE:
            raise InvalidTransition(f"a 回访 note (the comment) is at most {MAX_NOTE} characters")
        return
    spec = action.follow_up
    assert spec is not None  # noqa: S101 - IncidentAction refuses follow_up_added without it
    if len(items) >= MAX_FOLLOW_UPS:
        raise InvalidTransition(f"the 回访 list has {len(items)} items, the most an incident keeps")
    if any(i.item_id == _item_id(action) for i in items):
        raise InvalidTransition(
            f"回访 item {_item_id(action)} is already on the list (the same action twice)"
        )
    if spec.due_at <= action.event_time:
        raise InvalidTransition(
            f"follow_up.due_at {spec.due_at.isoformat()} is not after the action "
            f"({action.event_time.isoformat()})"
        )
    if spec.due_at > action.event_time + timedelta(days=MAX_FOLLOW_UP_DAYS):
        raise InvalidTransition(f"follow_up.due_at is more than {MAX_FOLLOW_UP_DAYS} days away")


def _item_id(action: IncidentAction) -> str:
    return action.new_item_id or ""


def apply(versions: list[StatementRow], items: list[FollowUpRow], action: IncidentAction) -> str:
    """Record a checked statement or 回访 step in the rows; returns the note for the timeline."""
    kind, at, actor = action.action, action.event_time, action.actor
    latest = versions[-1] if versions else None
    if kind == A.statement_drafted:
        superseded = [v.version for v in versions if v.status in _PENDING]
        for v in versions:
            if v.status in _PENDING:
                v.status = V.superseded
        number = latest.version + 1 if latest else 1
        versions.append(
            StatementRow(version=number, text=action.text, status=V.draft, drafted_by=actor, drafted_at=at)
        )
        gone = f"; version {', '.join(map(str, superseded))} superseded" if superseded else ""
        return f"statement version {number} drafted ({len(action.text)} characters){gone}"
    if kind in STATEMENT_STEPS or kind == A.statement_published:
        assert latest is not None  # noqa: S101 - checked: every other step acts on the latest version
        if kind == A.statement_submitted:
            latest.status, latest.submitted_by, latest.submitted_at = V.submitted, actor, at
            return f"statement version {latest.version} submitted for review by the leadership group"
        if kind == A.statement_published:
            latest.status, latest.published_by, latest.published_at = V.published, actor, at
            return f"statement version {latest.version} published"
        latest.status = V.approved if kind == A.statement_approved else V.returned
        latest.reviewed_by, latest.reviewed_at, latest.review_comment = actor, at, action.comment
        return f"statement version {latest.version} {latest.status.value} by {actor}"
    if kind == A.follow_up_added:
        spec = action.follow_up
        assert spec is not None  # noqa: S101 - IncidentAction refuses follow_up_added without it
        row = FollowUpRow(
            item_id=_item_id(action),
            target=spec.target,
            post=spec.post,
            owner=spec.owner,
            due_at=spec.due_at,
            added_by=actor,
            added_at=at,
        )
        items.append(row)
        due = spec.due_at.isoformat(timespec="minutes")
        return f"回访 item {row.item_id} for {spec.owner}, due {due}: {spec.target}"
    if kind == A.follow_up_outcome:
        item = next(i for i in items if i.item_id == action.item_id)
        item.outcome, item.outcome_by, item.outcome_at, item.note = action.outcome, actor, at, action.comment
        return f"回访 item {item.item_id}: {item.outcome.value if item.outcome else ''}"
    return ""


def due_follow_ups(
    items: Sequence[FollowUpRow], now: datetime, fractions: Sequence[float]
) -> list[tuple[FollowUpRow, str]]:
    """Reminders now due for open items, as (item, label): the SLA fractions, then once when overdue.

    Marks them sent; a reminder whose moment passed before the item existed is never sent (as deadlines)."""
    due: list[tuple[FollowUpRow, str]] = []
    for item in items:
        if not item.is_open or item.overdue_at is not None:
            continue
        if now >= item.due_at:
            item.overdue_at = now
            due.append((item, "overdue"))
            continue
        total = (item.due_at - item.added_at).total_seconds()
        for fraction in fractions:
            moment = item.added_at + timedelta(seconds=total * fraction)
            if fraction not in item.reminded and now >= moment:
                item.reminded.append(fraction)
                due.append((item, str(fraction)))
    return due


# Characters that mean something to a chat robot's Markdown, and line breaks: an operator-typed name or target
# in an alert is shown as plain words.
_ACTIVE = re.compile(r"[\\`*_~\[\]()<>#|!&@\r\n\u2028\u2029]+")


def plain(value: Any, limit: int = 80) -> str:
    """Operator-typed text (a name, a 回访 target) for an alert line: plain, on one line, bounded."""
    text = " ".join(_ACTIVE.sub(" ", str(value)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
