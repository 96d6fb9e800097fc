"""One-click acknowledgement from a phone: the signed links the escalation worker puts in its alerts.

HMAC-signed, expiring and single use (services/common/links.py) across every desk replica: a link's nonce is
claimed in the store before the action is published, and given back if Kafka did not take it. GET shows the
incident and a button, only POST acts: chat apps prefetch links, and a prefetch must not acknowledge anything.
"""

from __future__ import annotations

import asyncio
import html
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from schemas.events import IncidentActionKind, Tier
from services.common import json
from services.common.links import BadLink, LinkClaims, verify_link
from services.desk.operator import ActionRequest, apply_action
from services.desk.state import Desk, DeskDep

__all__ = ["router"]

router = APIRouter()

# What a signed link may do, by the action named in its signed payload (services/common/links.py).
_LINK_ACTIONS = {"ack": IncidentActionKind.ack}


def _claims(desk: Desk, token: str) -> LinkClaims | Response:
    if desk.link_secret is None:
        return Response(
            json.dumps({"detail": "ack links are not enabled"}),
            status_code=404,
            media_type="application/json",
        )
    try:
        claims = verify_link(desk.link_secret, token, datetime.now(UTC))
    except BadLink as exc:
        return HTMLResponse(_page("链接无效 Link refused", html.escape(str(exc))), status_code=403)
    if claims.action not in _LINK_ACTIONS:
        # Signed, but for an action a link may not take: doing an ack instead would be doing something nobody
        # signed for.
        allowed = ", ".join(_LINK_ACTIONS)
        detail = f"this link was signed for {claims.action!r}; a link can only do: {allowed}"
        return HTMLResponse(_page("链接无效 Link refused", html.escape(detail)), status_code=403)
    return claims


@router.get("/v1/ack/{token}", response_class=HTMLResponse)
async def ack_page(token: str, desk: DeskDep) -> Response:
    """The incident the link is for, and the button that acknowledges it."""
    claims = _claims(desk, token)
    if isinstance(claims, Response):
        return claims
    events = desk.model.incident(claims.incident_id)
    state = events[-1].state.value if events else "unknown"
    tier = int(events[-1].tier) if events else int(Tier.none)
    body = (
        f"<p>规则组 <b>{html.escape(claims.group)}</b> · 事件 {html.escape(claims.incident_id)}</p>"
        f"<p>当前状态 {html.escape(state)} · 等级 {tier}</p>"
        '<form method="post" class="ack"><button type="submit">确认已收到 Acknowledge</button></form>'
    )
    return HTMLResponse(_page("确认舆情事件 Acknowledge incident", body))


@router.post("/v1/ack/{token}", response_class=HTMLResponse)
async def ack_link(token: str, desk: DeskDep) -> Response:
    """Acknowledge, once per link, as the actor `link:<nonce>`."""
    claims = _claims(desk, token)
    if isinstance(claims, Response):
        return claims
    store = desk.model.store
    now = datetime.now(UTC)
    if not await asyncio.to_thread(
        store.claim_link, claims.nonce, claims.incident_id, claims.expires_at, now
    ):
        return HTMLResponse(_page("链接已使用 Link already used", "该链接已经确认过。"), status_code=409)
    body = ActionRequest(
        action=_LINK_ACTIONS[claims.action], actor=f"link:{claims.nonce}", comment="one-click ack"
    )
    try:
        result = await apply_action(desk, claims.incident_id, body)
    except BaseException:
        await asyncio.to_thread(store.release_link, claims.nonce)  # nothing was published: usable again
        raise
    if result.status_code != 202:
        await asyncio.to_thread(store.release_link, claims.nonce)
        detail = html.escape(json.loads(bytes(result.body)).get("detail", ""))
        return HTMLResponse(_page("无法确认 Cannot acknowledge", detail), status_code=result.status_code)
    return HTMLResponse(_page("已确认 Acknowledged", "已通知升级流程停止呼叫。Paging stops."))


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
