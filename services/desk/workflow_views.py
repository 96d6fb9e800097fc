"""Console views of the statement review (经领导小组审核) and the 回访 list.

Two pages under an incident, each with a live part (over the console's event stream, rendered per session
because it holds forms) and forms around it:

- `/console/incidents/{id}/statement`: every version with its review, a character diff of the latest change
  (any two versions on request), the editor, and the review buttons, which only approvers see;
- `/console/incidents/{id}/follow-ups`: the items with an outcome form each, and a form to add one, from the
  incident's top posts or by hand.

Every form goes through the JSON API's checks and publish path (`prepare_action`, `apply_action`), so a button
is offered exactly when the action would be accepted, and a refusal says the escalation worker's reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from schemas.events import (
    FollowUpOutcome,
    FollowUpRequest,
    IncidentAction,
    IncidentActionKind,
    StatementVersion,
)
from services.common import json
from services.desk.console import Console, ConsoleDep, LiveView, Session
from services.desk.operator import ActionRequest, apply_action, prepare_action
from services.desk.textdiff import diff_text
from services.escalation.lifecycle import LEAD_IN

__all__ = ["LIVE_VIEWS", "router"]

A = IncidentActionKind
router = APIRouter(include_in_schema=False)

# The statement form's buttons (name="op") and the action each one sends.
_OPS = {
    "draft": A.statement_drafted,
    "submit": A.statement_submitted,
    "approve": A.statement_approved,
    "return": A.statement_returned,
    "publish": A.statement_published,
}
_CLOSED = ("closed", "postmortem_filed")


# -- view models -------------------------------------------------------------------------------------
def _refusal(c: Console, incident_id: str, body: ActionRequest) -> str | None:
    """Why `body` would be refused now (None: it would be accepted)."""
    result = prepare_action(c.desk, incident_id, body)
    if isinstance(result, IncidentAction):
        return None
    detail = result[1]
    return detail if isinstance(detail, str) else "; ".join(str(e.get("msg", "")) for e in detail)


def _statement_context(c: Console, incident_id: str, session: Session) -> dict[str, Any] | None:
    events = c.model.incident(incident_id)
    if not events:
        return None
    last = events[-1]
    versions = list(last.statement)
    latest = versions[-1] if versions else None
    refusals: dict[str, str | None] = {}
    for op, kind in _OPS.items():
        fields: dict[str, Any] = {}
        if kind == A.statement_drafted:
            # Any text other than the latest's: whether a new version may be saved at all.
            fields["text"] = "—" if latest is None or latest.text != "—" else "——"
        elif latest is not None:
            fields["version"] = latest.version
        if kind == A.statement_returned:
            fields["comment"] = "—"
        refusals[op] = _refusal(c, incident_id, ActionRequest(action=kind, actor=session.actor, **fields))
    statement = c.config.escalation.statement
    return {
        "incident_id": incident_id,
        "group": last.group,
        "state": last.state.value,
        "tier": int(last.tier),
        "versions": list(reversed(versions)),
        "latest": latest,
        "latest_diff": _diff(versions[-2], latest) if latest and len(versions) > 1 else None,
        "refusals": refusals,
        "is_approver": statement.is_approver(session.actor),
        "approvers": statement.approvers,
        "csrf": c.sessions.csrf(session),
        "actor": session.actor,
        "deadline": next((d for d in last.deadlines if d.name == "statement_published"), None),
    }


def _diff(old: StatementVersion, new: StatementVersion) -> dict[str, Any]:
    return {"old": old, "new": new, "segments": diff_text(old.text, new.text)}


def _top_posts(c: Console, group: str, opened: datetime) -> list[dict[str, Any]]:
    """The incident's top posts: those its tier changes cited, by the highest spread each reached."""
    posts: dict[str, dict[str, Any]] = {}
    for tc in c.model.tier_changes_between(group, opened - LEAD_IN, None):
        for p in tc.top_posts:
            key = str(p.get("post", ""))
            if key and int(p.get("spread", 0)) >= int(posts.get(key, {}).get("spread", -1)):
                posts[key] = dict(p)
    return sorted(posts.values(), key=lambda p: -int(p.get("spread", 0)))[:10]


def _follow_ups_context(c: Console, incident_id: str, session: Session) -> dict[str, Any] | None:
    events = c.model.incident(incident_id)
    if not events:
        return None
    last = events[-1]
    now = datetime.now(UTC)
    items = list(last.follow_ups)
    probe = FollowUpRequest(target="—", owner=session.actor, due_at=now + timedelta(hours=1))
    add_refusal = _refusal(
        c, incident_id, ActionRequest(action=A.follow_up_added, actor=session.actor, follow_up=probe)
    )
    hours = c.config.escalation.statement.follow_up_hours
    return {
        "incident_id": incident_id,
        "group": last.group,
        "state": last.state.value,
        "closed": last.state.value in _CLOSED,
        "rows": items,
        "open": sum(i.outcome is None for i in items),
        "done": sum(i.outcome == FollowUpOutcome.done for i in items),
        "overdue": {i.item_id for i in items if i.outcome is None and i.due_at <= now},
        "outcomes": [o.value for o in FollowUpOutcome],
        "add_refusal": add_refusal,
        "top_posts": _top_posts(c, last.group, events[0].event_time),
        "due_default": (now + timedelta(hours=hours)).astimezone(c.tz).strftime("%Y-%m-%dT%H:%M"),
        "csrf": c.sessions.csrf(session),
        "actor": session.actor,
    }


def _statement_fragment(c: Console, incident_id: str, session: Session) -> str | None:
    context = _statement_context(c, incident_id, session)
    return None if context is None else c.render("_statement.html", s=context)


def _follow_ups_fragment(c: Console, incident_id: str, session: Session) -> str | None:
    context = _follow_ups_context(c, incident_id, session)
    return None if context is None else c.render("_follow_ups.html", f=context)


# The live parts of these pages, for the console's event stream.
LIVE_VIEWS: dict[str, LiveView] = {"statement": _statement_fragment, "follow_ups": _follow_ups_fragment}


def _path(incident_id: str, tail: str) -> str:
    return f"/console/incidents/{quote(incident_id, safe='')}/{tail}"


# -- statement ---------------------------------------------------------------------------------------
def _statement_page(
    c: Console, request: Request, session: Session, incident_id: str, status: int = 200, **extra: Any
) -> Response:
    context = _statement_context(c, incident_id, session)
    if context is None:
        return c.refused(request, session, 404, f"没有事件 {incident_id}。(no such incident)")
    latest: StatementVersion | None = context["latest"]
    compare = None
    numbers = {v.version: v for v in context["versions"]}
    a, b = extra.pop("a", None), extra.pop("b", None)
    if a in numbers and b in numbers and a != b:
        compare = _diff(numbers[a], numbers[b])
    values = {"sent": "", "error": "", "comment": "", "text": latest.text if latest else "", **extra}
    page = c.live_page(
        request,
        "statement.html",
        session,
        "statement",
        incident_id,
        status=status,
        title=f"声明审核 {incident_id}",
        s=context,
        compare=compare,
        pair=(a, b),
        **values,
    )
    return page or c.refused(request, session, 404, f"没有事件 {incident_id}。(no such incident)")


@router.get("/console/incidents/{incident_id}/statement")
async def statement_page(
    request: Request, incident_id: str, c: ConsoleDep, sent: str = "", a: str = "", b: str = ""
) -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    pair = {k: int(v) for k, v in (("a", a), ("b", b)) if v.isdigit()}
    return _statement_page(c, request, session, incident_id, sent=sent[:40], **pair)


@router.post("/console/incidents/{incident_id}/statement")
async def statement_action(request: Request, incident_id: str, c: ConsoleDep) -> Response:
    posted = await c.posted(request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    op, text, comment = form.get("op", ""), form.get("text", ""), form.get("comment", "")
    keep = {"comment": comment, **({"text": text} if op == "draft" else {})}
    kind = _OPS.get(op)
    if kind is None:
        error = f"op: {op[:20]!r} 不是可选操作之一 ({', '.join(_OPS)})"
        return _statement_page(c, request, session, incident_id, 422, error=error, **keep)
    raw_version = form.get("version", "")
    fields: dict[str, Any] = {"text": text} if kind == A.statement_drafted else {}
    if kind != A.statement_drafted and raw_version:
        if not raw_version.isdigit():
            return _statement_page(c, request, session, incident_id, 422, error="version: 应为版本号", **keep)
        fields["version"] = int(raw_version)
    try:
        body = ActionRequest(action=kind, actor=session.actor, comment=comment, **fields)
    except ValidationError as exc:
        error = "；".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _statement_page(c, request, session, incident_id, 422, error=error, **keep)
    result = await apply_action(c.desk, incident_id, body)
    if result.status_code == 202:
        return RedirectResponse(_path(incident_id, "statement") + "?" + urlencode({"sent": kind.value}), 303)
    return _statement_page(
        c, request, session, incident_id, result.status_code, error=_detail(result), **keep
    )


def _detail(result: Response) -> str:
    detail = json.loads(bytes(result.body)).get("detail", "")
    if isinstance(detail, list):
        return "；".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in detail)
    return str(detail)


# -- 回访 --------------------------------------------------------------------------------------------
def _follow_ups_page(
    c: Console, request: Request, session: Session, incident_id: str, status: int = 200, **extra: Any
) -> Response:
    context = _follow_ups_context(c, incident_id, session)
    if context is None:
        return c.refused(request, session, 404, f"没有事件 {incident_id}。(no such incident)")
    values = {
        "sent": "",
        "error": "",
        "typed": {"target": "", "post": "", "owner": session.actor, "due": context["due_default"]},
        **extra,
    }
    page = c.live_page(
        request,
        "follow_ups.html",
        session,
        "follow_ups",
        incident_id,
        status=status,
        title=f"回访 {incident_id}",
        f=context,
        **values,
    )
    return page or c.refused(request, session, 404, f"没有事件 {incident_id}。(no such incident)")


@router.get("/console/incidents/{incident_id}/follow-ups")
async def follow_ups_page(request: Request, incident_id: str, c: ConsoleDep, sent: str = "") -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    return _follow_ups_page(c, request, session, incident_id, sent=sent[:40])


@router.post("/console/incidents/{incident_id}/follow-ups")
async def add_follow_up(request: Request, incident_id: str, c: ConsoleDep) -> Response:
    posted = await c.posted(request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    typed = {k: form.get(k, "").strip() for k in ("target", "post", "owner", "due")}

    def again(status: int, error: str) -> Response:
        return _follow_ups_page(c, request, session, incident_id, status, error=error, typed=typed)

    events = c.model.incident(incident_id)
    if not events:
        return c.refused(request, session, 404, f"没有事件 {incident_id}。(no such incident)")
    posts = {p["post"]: p for p in _top_posts(c, events[-1].group, events[0].event_time)}
    target = typed["target"]
    if typed["post"]:
        post = posts.get(typed["post"])
        if post is None:
            return again(422, f"post: {typed['post'][:40]!r} 不是本事件的主要传播内容")
        label = c.labels["platform"].get(post.get("platform"), post.get("platform"))
        target = target or f"[{label}] {post.get('excerpt', '')}"[:200]  # FollowUpRequest.target's bound
    try:
        due = c.local_time(typed["due"])
    except ValueError:
        return again(422, f"due: 时间格式应为 2026-11-21T08:00 (got {typed['due'][:40]!r})")
    try:
        item = FollowUpRequest(target=target, post=typed["post"] or None, owner=typed["owner"], due_at=due)
        body = ActionRequest(action=A.follow_up_added, actor=session.actor, follow_up=item)
    except ValidationError as exc:
        return again(422, "；".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    result = await apply_action(c.desk, incident_id, body)
    if result.status_code == 202:
        return RedirectResponse(_path(incident_id, "follow-ups") + "?sent=follow_up_added", 303)
    return again(result.status_code, _detail(result))


@router.post("/console/incidents/{incident_id}/follow-ups/{item_id}")
async def follow_up_outcome(request: Request, incident_id: str, item_id: str, c: ConsoleDep) -> Response:
    posted = await c.posted(request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    try:
        body = ActionRequest(
            action=A.follow_up_outcome,
            actor=session.actor,
            item_id=item_id[:13],
            outcome=form.get("outcome", ""),
            comment=form.get("note", ""),
        )
    except ValidationError as exc:
        error = "；".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _follow_ups_page(c, request, session, incident_id, 422, error=error)
    result = await apply_action(c.desk, incident_id, body)
    if result.status_code == 202:
        return RedirectResponse(_path(incident_id, "follow-ups") + "?sent=follow_up_outcome", 303)
    return _follow_ups_page(c, request, session, incident_id, result.status_code, error=_detail(result))
