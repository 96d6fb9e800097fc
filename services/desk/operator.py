"""The operator API: the tier board, the ledger, incidents and their actions, tier overrides, the report."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
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
from services.common.csvfile import safe_cell
from services.common.guard import REPORT_HEADERS
from services.common.limits import TooLarge, read_capped
from services.desk.readmodel import ReadModel
from services.desk.state import Desk, DeskDep, Operator
from services.desk.store import LedgerQuery
from services.escalation.lifecycle import LEAD_IN, InvalidTransition, draft_report, report_html

__all__ = [
    "ActionRequest",
    "OverrideRequest",
    "action_refusal",
    "apply_action",
    "ledger_csv",
    "prepare_action",
    "router",
]

M = TypeVar("M", bound=BaseModel)
router = APIRouter(dependencies=[Operator])


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


async def _body(request: Request, model: type[M], limit: int) -> M | Response:
    """At most `limit` bytes of the body, validated (the caller is authenticated by then: a FastAPI body
    parameter would be validated first and show an unauthenticated caller the schema in its 422)."""
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


def _csv_text(rows: list[dict[str, Any]], header: bool = False) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_LEDGER_FIELDS, extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows({k: safe_cell(row.get(k)) for k in _LEDGER_FIELDS} for row in rows)
    return buf.getvalue().encode()


def ledger_csv(model: ReadModel, query: LedgerQuery) -> StreamingResponse:
    """Every ledger entry the query matches as a CSV download, streamed a chunk at a time from the store (an
    export over months never sits in memory whole); the API's ?format=csv and the console's export both
    serve this. Post text comes from the public, so every cell goes through `csvfile.safe_cell`."""

    async def body() -> AsyncIterator[bytes]:
        # A BOM so that Excel opens the Chinese text as UTF-8.
        yield "\ufeff".encode() + _csv_text([], header=True)
        chunks = model.ledger_chunks(query)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield _csv_text(chunk)

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="ledger.csv"'},
    )


def _current(desk: Desk, incident_id: str) -> list[Any] | tuple[int, str]:
    """The incident's events, if it is its group's current incident; else (HTTP status, why not)."""
    events = desk.model.incident(incident_id)
    if not events:
        return 404, f"no incident {incident_id}"
    group = events[-1].group
    if desk.model.current_incident.get(group) != incident_id:
        return 409, f"incident {incident_id} is not the current incident of {group}"
    return events


def action_refusal(
    desk: Desk, incident_id: str, action: IncidentActionKind, comment: str = ""
) -> tuple[int, str] | None:
    """Why `action` cannot be taken on the incident now, as (HTTP status, reason); None when it can."""
    events = _current(desk, incident_id)
    if isinstance(events, tuple):
        return events
    try:
        desk.lifecycle.check_kind(events, action, comment)
    except InvalidTransition as exc:
        return 409, str(exc)
    return None


def prepare_action(desk: Desk, incident_id: str, body: ActionRequest) -> IncidentAction | tuple[int, Any]:
    """The IncidentAction `body` makes, checked with escalation's own rules (state, statement review, 回访)
    against what the read model holds; or why not, as (HTTP status, detail)."""
    events = _current(desk, incident_id)
    if isinstance(events, tuple):
        return events
    try:
        event = IncidentAction(
            event_time=datetime.now(UTC), incident_id=incident_id, group=events[-1].group, **body.model_dump()
        )
    except ValidationError as exc:
        return 422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    try:
        desk.lifecycle.check(events, event)
    except InvalidTransition as exc:
        return 409, str(exc)
    return event


async def apply_action(desk: Desk, incident_id: str, body: ActionRequest) -> Response:
    """Check an operator action (`prepare_action`) and publish it (202), or say why not (404, 409, 422).
    The escalation worker checks again on its own state: what it refuses goes to the dead-letter topic."""
    event = prepare_action(desk, incident_id, body)
    if not isinstance(event, IncidentAction):
        status, detail = event
        return _json({"detail": detail}, status)
    await desk.publisher.action(event.group, event)
    events = desk.model.incident(incident_id) or []
    answer = {
        "accepted": True,
        "event_id": event.event_id,
        "from": events[-1].state.value if events else None,
    }
    if event.action == IncidentActionKind.follow_up_added:
        answer["item_id"] = event.new_item_id  # the id the item will have (FollowUpItem.item_id)
    return _json(answer, 202)


@router.get("/v1/tiers")
async def tiers(desk: DeskDep) -> Response:
    """Every rule group's current tier and window counts, with the history of its tier changes."""
    return _json({"groups": desk.model.tier_board()})


@router.post(
    "/v1/tiers/{group}/override",
    status_code=202,
    openapi_extra={"requestBody": _schema_body(OverrideRequest)},
)
async def override(request: Request, group: str, desk: DeskDep) -> Response:
    """Pin a group's tier by hand, or release the pin (`"tier": null`); scoring reports it as `override`."""
    body = await _body(request, OverrideRequest, desk.max_body_bytes)
    if isinstance(body, Response):
        return body
    cmd = TierOverride(
        event_time=datetime.now(UTC), group=group, tier=body.tier, actor=body.actor, comment=body.comment
    )
    await desk.publisher.override(group, cmd)
    return _json({"accepted": True, "event_id": cmd.event_id}, 202)


@router.get("/v1/ledger")
async def ledger(
    desk: DeskDep,
    since: datetime | None = None,
    until: datetime | None = None,
    platform: str | None = Query(default=None, max_length=16),
    group: str | None = Query(default=None, max_length=128),
    tier: int | None = Query(default=None, ge=0, le=3),
    sentiment: str | None = Query(default=None, pattern="^(negative|neutral|positive)$"),
    demand: str | None = Query(default=None, max_length=32),
    q: str | None = Query(default=None, max_length=100, description="Keyword search over the excerpts."),
    sort: Literal["time", "spread"] = Query(default="time", description="Newest first, or largest spread."),
    format: str = Query(default="json", pattern="^(json|csv)$"),
    limit: int = Query(default=100, ge=1, le=10_000),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> Response:
    """The ledger (台账) of negative posts, filtered, newest first (or by spread), a page at a time;
    `format=csv` streams every entry the filters match."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            return JSONResponse(
                {"detail": [{"loc": ["query", name], "msg": "needs a time zone offset"}]}, 422
            )
    query = LedgerQuery(
        since=since,
        until=until,
        platform=platform,
        group=group,
        tier=tier,
        sentiment=sentiment,
        demand=demand,
        text=q,
        sort=sort,
    )
    if format == "csv":
        return ledger_csv(desk.model, query)
    total, page = await asyncio.to_thread(desk.model.ledger_page, query, limit, offset)
    return _json({"total": total, "offset": offset, "items": page})


# "open" (any state before closed) or one state.
_STATE_FILTER = "^(open|" + "|".join(s.value for s in IncidentState) + ")$"


@router.get("/v1/incidents")
async def incidents(
    desk: DeskDep,
    state: str | None = Query(default=None, pattern=_STATE_FILTER),
    tier: int | None = Query(default=None, ge=0, le=3),
    group: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> Response:
    """Incidents with their SLA deadlines, newest first, filtered and paged."""
    rows = desk.model.incident_list(state=state, tier=tier, group=group)
    return _json({"total": len(rows), "offset": offset, "items": rows[offset : offset + limit]})


@router.get("/v1/incidents/{incident_id}")
async def incident(incident_id: str, desk: DeskDep) -> Response:
    """One incident with its statement versions, 回访 list and timeline."""
    events = desk.model.incident(incident_id)
    if not events:
        return _json({"detail": f"no incident {incident_id}"}, 404)
    summary = next(i for i in desk.model.incident_list() if i["incident_id"] == incident_id)
    # The statement versions and the 回访 list as they are now; the timeline without their copies.
    current = events[-1].model_dump(mode="json", include={"statement", "follow_ups"})
    timeline = [e.model_dump(mode="json", exclude={"statement", "follow_ups"}) for e in events]
    return _json({**summary, **current, "timeline": timeline})


@router.get("/v1/incidents/{incident_id}/report")
async def report(
    incident_id: str, desk: DeskDep, format: str = Query("md", pattern="^(md|html)$")
) -> Response:
    """The post-mortem report (复盘报告): the one stored when the incident closed, or a draft while open."""
    events = desk.model.incident(incident_id)
    if not events:
        return _json({"detail": f"no incident {incident_id}"}, 404)
    # The report of record is the one the escalation worker rendered when the incident last closed; an open
    # (or reopened) incident gets a draft from what this read model holds.
    closed = events[-1].state.value in ("closed", "postmortem_filed")
    markdown = next((e.report for e in reversed(events) if e.report), None) if closed else None
    if markdown is None:
        group, start = events[0].group, events[0].event_time - LEAD_IN
        changes = desk.model.tier_changes_between(group, start, None)
        posts = await asyncio.to_thread(desk.model.ledger_rows, group=group, since=start)
        markdown = draft_report(events, changes, posts)
    if format == "html":
        return HTMLResponse(report_html(markdown), headers=REPORT_HEADERS)
    return Response(markdown, media_type="text/markdown; charset=utf-8")


@router.post(
    "/v1/incidents/{incident_id}/actions",
    status_code=202,
    openapi_extra={"requestBody": _schema_body(ActionRequest)},
)
async def action(request: Request, incident_id: str, desk: DeskDep) -> Response:
    """An operator action; 409 says why it is not allowed now, 422 names a field that does not fit it."""
    body = await _body(request, ActionRequest, desk.max_body_bytes)
    if isinstance(body, Response):
        return body
    return await apply_action(desk, incident_id, body)
