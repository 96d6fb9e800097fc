"""Operator routes: the tier board, the ledger, incidents, actions and signed one-click ack links."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import (
    FollowUpOutcome,
    FollowUpRequest,
    IncidentAction,
    IncidentActionKind,
    IncidentState,
    Tier,
    TierOverride,
)
from services.common import json
from services.common.auth import TokenCheck
from services.common.config import EscalationConfig
from services.common.csvfile import safe_cell
from services.common.guard import REPORT_HEADERS
from services.common.limits import TooLarge, read_capped
from services.common.links import BadLink, verify_link
from services.desk.readmodel import ReadModel
from services.escalation.core import EscalationCore, Incident
from services.escalation.exceptions import InvalidTransition
from services.escalation.report import LEAD_IN, ReportInput, render_html, render_markdown

__all__ = [
    "ActionRequest",
    "OverrideRequest",
    "action_refusal",
    "apply_action",
    "ledger_csv",
    "operator_router",
    "prepare_action",
]

Send = Callable[[str, IncidentAction], Awaitable[None]]
M = TypeVar("M", bound=BaseModel)


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: Tier | None = Field(description="0-3 pins the tier; null releases the pin.")
    actor: str = Field(min_length=1, max_length=128)
    comment: str = Field(default="", max_length=4000)


class ActionRequest(BaseModel):
    """An operator action as the API takes it; the fields after `comment` belong to the statement and 回访
    actions (IncidentAction says which)."""

    model_config = ConfigDict(extra="forbid")

    action: IncidentActionKind
    actor: str = Field(min_length=1, max_length=128)
    comment: str = Field(default="", max_length=4000)
    text: str = Field(default="", max_length=5000, description="statement_drafted: the new version's text.")
    version: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="The statement version approved, returned, submitted or published.",
    )
    follow_up: FollowUpRequest | None = Field(default=None, description="follow_up_added: the item.")
    item_id: str | None = Field(default=None, max_length=12, description="follow_up_outcome: the item.")
    outcome: FollowUpOutcome | None = Field(default=None, description="follow_up_outcome: what came of it.")


async def _authorised_body(request: Request, check: TokenCheck, model: type[M], limit: int) -> M | Response:
    """Authenticate, then read at most `limit` bytes and validate them. A FastAPI body parameter would be
    validated first and show an unauthenticated caller the schema in its 422."""
    denied = check(request)
    if denied:
        return denied
    body = await read_capped(request, limit)
    if isinstance(body, TooLarge):
        return body.response
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _json({"detail": errors}, 422)


def _schema_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status_code=status, media_type="application/json")


def _incident_from(model: ReadModel, incident_id: str) -> Incident | None:
    events = model.incident(incident_id)
    if not events:
        return None
    last = events[-1]
    peak = max((e.tier for e in events), key=lambda t: t.severity)
    return Incident.model_validate(
        {
            "incident_id": incident_id,
            "group": last.group,
            "tier": last.tier,
            "peak_tier": peak,
            "state": last.state,
            "opened_at": events[0].event_time,
            "sequence": last.sequence,
            # The statement and 回访 rules look at these: the versions and items as the last event shows them.
            "statement": [v.model_dump() for v in last.statement],
            "follow_ups": [i.model_dump() for i in last.follow_ups],
        }
    )


_LEDGER_FIELDS = (
    "first_seen",
    "last_seen",
    "platform",
    "post_id",
    "group",
    "tier",
    "reposts",
    "comments",
    "likes",
    "spread",
    "sentiment",
    "demand",
    "excerpt",
    "url",
)


def ledger_csv(rows: list[dict[str, Any]]) -> Response:
    """Ledger rows as a CSV download; the API's ?format=csv and the console's export both serve this.
    Post text comes from the public, so every cell goes through `csvfile.safe_cell`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_LEDGER_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: safe_cell(row.get(k)) for k in _LEDGER_FIELDS} for row in rows)
    # A BOM so that Excel opens the Chinese text as UTF-8.
    return Response(
        "\ufeff" + buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="ledger.csv"'},
    )


def action_refusal(
    model: ReadModel, incident_id: str, action: IncidentActionKind, comment: str = ""
) -> tuple[int, str] | None:
    """Why `action` cannot be taken on the incident now, as (HTTP status, reason); None when it can."""
    inc = _incident_from(model, incident_id)
    if inc is None:
        return 404, f"no incident {incident_id}"
    if model.current_incident.get(inc.group) != incident_id:
        return 409, f"incident {incident_id} is not the current incident of {inc.group}"
    try:
        EscalationCore.check_transition(inc, action, comment)
    except InvalidTransition as exc:
        return 409, str(exc)
    return None


def prepare_action(
    model: ReadModel, core: EscalationCore, incident_id: str, body: ActionRequest
) -> IncidentAction | tuple[int, Any]:
    """The IncidentAction `body` makes, checked with the escalation core's own rules (state, statement review,
    回访) against what the read model holds; or why not, as (HTTP status, detail)."""
    inc = _incident_from(model, incident_id)
    if inc is None:
        return 404, f"no incident {incident_id}"
    if model.current_incident.get(inc.group) != incident_id:
        return 409, f"incident {incident_id} is not the current incident of {inc.group}"
    try:
        event = IncidentAction(
            event_time=datetime.now(UTC), incident_id=incident_id, group=inc.group, **body.model_dump()
        )
    except ValidationError as exc:
        return 422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    try:
        core.check_action(inc, event)
    except InvalidTransition as exc:
        return 409, str(exc)
    return event


async def apply_action(
    model: ReadModel, send: Send, core: EscalationCore, incident_id: str, body: ActionRequest
) -> Response:
    """Check an operator action (`prepare_action`) and publish it (202), or say why not (404, 409, 422).
    The escalation worker checks again on its own state: what it refuses goes to the dead-letter topic."""
    event = prepare_action(model, core, incident_id, body)
    if not isinstance(event, IncidentAction):
        status, detail = event
        return _json({"detail": detail}, status)
    await send(event.group, event)
    events = model.incident(incident_id) or []
    answer = {
        "accepted": True,
        "event_id": event.event_id,
        "from": events[-1].state.value if events else None,
    }
    if event.action == IncidentActionKind.follow_up_added:
        answer["item_id"] = event.new_item_id  # the id the item will have (FollowUpItem.item_id)
    return _json(answer, 202)


def operator_router(
    model: ReadModel,
    check: TokenCheck,
    send: Send,
    link_secret: bytes | None,
    send_override: Callable[[str, TierOverride], Awaitable[None]],
    *,
    max_body_bytes: int = 64 * 1024,
    escalation: EscalationConfig | None = None,
) -> APIRouter:
    router = APIRouter()
    used_links: set[str] = set()
    # The same rules as the escalation worker (the approvers come from the same config file).
    core = EscalationCore(escalation or EscalationConfig())

    @router.get("/v1/tiers")
    async def tiers(request: Request) -> Response:
        return check(request) or _json({"groups": model.tier_board()})

    @router.post(
        "/v1/tiers/{group}/override",
        status_code=202,
        openapi_extra={"requestBody": _schema_body(OverrideRequest)},
    )
    async def override(request: Request, group: str) -> Response:
        body = await _authorised_body(request, check, OverrideRequest, max_body_bytes)
        if isinstance(body, Response):
            return body
        cmd = TierOverride(
            event_time=datetime.now(UTC), group=group, tier=body.tier, actor=body.actor, comment=body.comment
        )
        await send_override(group, cmd)
        return _json({"accepted": True, "event_id": cmd.event_id}, 202)

    @router.get("/v1/ledger")
    async def ledger(
        request: Request,
        since: datetime | None = None,
        until: datetime | None = None,
        platform: str | None = None,
        group: str | None = None,
        tier: int | None = Query(default=None, ge=0, le=3),
        sentiment: str | None = Query(default=None, pattern="^(negative|neutral|positive)$"),
        demand: str | None = None,
        format: str = Query(default="json", pattern="^(json|csv)$"),
        limit: int = Query(default=100, ge=1, le=10_000),
        offset: int = Query(default=0, ge=0, le=10_000_000),
    ) -> Response:
        denied = check(request)
        if denied:
            return denied
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                return JSONResponse(
                    {"detail": [{"loc": ["query", name], "msg": "needs a time zone offset"}]}, 422
                )
        rows = model.ledger_rows(
            since=since,
            until=until,
            platform=platform,
            group=group,
            tier=tier,
            sentiment=sentiment,
            demand=demand,
        )
        page = rows[offset : offset + limit]
        if format == "csv":
            return ledger_csv(page)
        return _json({"total": len(rows), "offset": offset, "items": page})

    @router.get("/v1/incidents")
    async def incidents(
        request: Request,
        state: str | None = Query(default=None, pattern=_STATE_FILTER),
        tier: int | None = Query(default=None, ge=0, le=3),
        group: str | None = Query(default=None, max_length=64),
        limit: int = Query(default=100, ge=1, le=1000),
        offset: int = Query(default=0, ge=0, le=10_000_000),
    ) -> Response:
        denied = check(request)
        if denied:
            return denied
        rows = model.incident_list(state=state, tier=tier, group=group)
        return _json({"total": len(rows), "offset": offset, "items": rows[offset : offset + limit]})

    @router.get("/v1/incidents/{incident_id}")
    async def incident(request: Request, incident_id: str) -> Response:
        denied = check(request)
        if denied:
            return denied
        events = model.incident(incident_id)
        if not events:
            return _json({"detail": f"no incident {incident_id}"}, 404)
        summary = next(i for i in model.incident_list() if i["incident_id"] == incident_id)
        # The statement versions and the 回访 list as they are now; the timeline without their copies.
        current = events[-1].model_dump(mode="json", include={"statement", "follow_ups"})
        timeline = [e.model_dump(mode="json", exclude={"statement", "follow_ups"}) for e in events]
        return _json({**summary, **current, "timeline": timeline})

    @router.get("/v1/incidents/{incident_id}/report")
    async def report(
        request: Request, incident_id: str, format: str = Query("md", pattern="^(md|html)$")
    ) -> Response:
        denied = check(request)
        if denied:
            return denied
        events = model.incident(incident_id)
        if not events:
            return _json({"detail": f"no incident {incident_id}"}, 404)
        # The report of record is the one the escalation worker rendered when the incident last closed; an
        # open (or reopened) incident gets a draft from what this read model holds.
        closed = events[-1].state.value in ("closed", "postmortem_filed")
        markdown = next((e.report for e in reversed(events) if e.report), None) if closed else None
        if markdown is None:
            group, start = events[0].group, events[0].event_time - LEAD_IN
            changes = model.tier_changes_between(group, start, None)
            posts = model.ledger_rows(group=group, since=start)
            markdown = render_markdown(ReportInput.from_events(events, changes, posts))
        if format == "html":
            return HTMLResponse(render_html(markdown), headers=REPORT_HEADERS)
        return Response(markdown, media_type="text/markdown; charset=utf-8")

    async def act(incident_id: str, action: IncidentActionKind, actor: str, comment: str) -> Response:
        body = ActionRequest(action=action, actor=actor, comment=comment)
        return await apply_action(model, send, core, incident_id, body)

    @router.post(
        "/v1/incidents/{incident_id}/actions",
        status_code=202,
        openapi_extra={"requestBody": _schema_body(ActionRequest)},
    )
    async def action(request: Request, incident_id: str) -> Response:
        body = await _authorised_body(request, check, ActionRequest, max_body_bytes)
        if isinstance(body, Response):
            return body
        return await apply_action(model, send, core, incident_id, body)

    def _claims(token: str) -> Any:
        if link_secret is None:
            return _json({"detail": "ack links are not enabled"}, 404)
        try:
            claims = verify_link(link_secret, token, datetime.now(UTC))
        except BadLink as exc:
            return HTMLResponse(_page("链接无效 Link refused", html.escape(str(exc))), status_code=403)
        if claims.action not in _LINK_ACTIONS:
            # Signed, but for an action a link may not take: doing an ack instead would be doing something
            # nobody signed for.
            allowed = ", ".join(_LINK_ACTIONS)
            detail = f"this link was signed for {claims.action!r}; a link can only do: {allowed}"
            return HTMLResponse(_page("链接无效 Link refused", html.escape(detail)), status_code=403)
        return claims

    @router.get("/v1/ack/{token}", response_class=HTMLResponse)
    async def ack_page(token: str) -> Response:
        claims = _claims(token)
        if isinstance(claims, Response):
            return claims
        inc = _incident_from(model, claims.incident_id)
        state = inc.state.value if inc else "unknown"
        tier = int(inc.tier) if inc else int(Tier.none)
        body = (
            f"<p>规则组 <b>{html.escape(claims.group)}</b> · 事件 {html.escape(claims.incident_id)}</p>"
            f"<p>当前状态 {html.escape(state)} · 等级 {tier}</p>"
            '<form method="post" class="ack"><button type="submit">确认已收到 Acknowledge</button></form>'
        )
        return HTMLResponse(_page("确认舆情事件 Acknowledge incident", body))

    @router.post("/v1/ack/{token}", response_class=HTMLResponse)
    async def ack_link(token: str) -> Response:
        claims = _claims(token)
        if isinstance(claims, Response):
            return claims
        if claims.nonce in used_links:
            return HTMLResponse(_page("链接已使用 Link already used", "该链接已经确认过。"), status_code=409)
        result = await act(
            claims.incident_id, _LINK_ACTIONS[claims.action], f"link:{claims.nonce}", "one-click ack"
        )
        if result.status_code != 202:
            detail = html.escape(json.loads(bytes(result.body)).get("detail", ""))
            return HTMLResponse(_page("无法确认 Cannot acknowledge", detail), status_code=result.status_code)
        used_links.add(claims.nonce)
        return HTMLResponse(_page("已确认 Acknowledged", "已通知升级流程停止呼叫。Paging stops."))

    return router


# "open" (any state before closed) or one state.
_STATE_FILTER = "^(open|" + "|".join(s.value for s in IncidentState) + ")$"

# What a signed link may do, by the action named in its signed payload (services/common/links.py).
_LINK_ACTIONS = {"ack": IncidentActionKind.ack}


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        # Opened from WeCom, DingTalk or Feishu on a phone: dressed like the console.
        '<link rel="stylesheet" href="/console/static/console.css"></head><body>'
        '<header class="top"><p class="brand">舆情值班台</p></header>'
        f"<main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
