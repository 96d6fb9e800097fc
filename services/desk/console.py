"""The on-call console (值班控制台): server-rendered pages over the read model, for a desktop or a phone.

A browser cannot send a bearer header on a link or a form, so the console swaps an operator token for a signed
session cookie at login. Actions go through the same check and publish path as the JSON API (`apply_action`),
the CSV export through `ledger_csv`, and the post-mortem report through the report route itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode
from zoneinfo import ZoneInfo

import httpx
import jinja2
import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup
from pydantic import ValidationError

from schemas.events import IncidentActionKind, IncidentState, Platform, Tier
from schemas.labels import DEMANDS, SENTIMENTS, sentiment_label, window_label
from services.common import json
from services.common.config import YuqingConfig
from services.common.guard import REPORT_HEADERS, SECURITY_HEADERS
from services.common.limits import TooLarge, read_capped
from services.desk.operator import ActionRequest, action_refusal, apply_action, ledger_csv
from services.desk.readmodel import ReadModel
from services.desk.state import Desk
from services.desk.store import LedgerQuery
from services.desk.throttle import LoginThrottle

__all__ = [
    "Console",
    "ConsoleDep",
    "LiveView",
    "Session",
    "Sessions",
    "console_of",
    "new_console",
    "router",
    "static_files",
]

_COOKIE = "yuqing-console"
_PAGE_SIZE = 50
_INCIDENT_PAGE_SIZE = 20
_POLL_SECONDS = 1.0
# An event stream ends after this and the browser reconnects (sending Last-Event-ID). uvicorn waits for open
# responses before it exits, so an endless stream would hold a graceful shutdown until it is killed.
_STREAM_SECONDS = 15.0
_MAX_FORM_BYTES = 65_536  # a 4,000-character Chinese comment is 36 KB percent-encoded
_RESOLVE = IncidentActionKind.resolve
_OVERRIDE_HINT = "override: (the reason the operator gives)"
_PRIMARY_ACTIONS = (
    IncidentActionKind.ack,
    IncidentActionKind.meeting_convened,
    IncidentActionKind.verified,
    IncidentActionKind.statement_published,
    IncidentActionKind.resolve,
)
# The incident page's buttons; the statement review and the 回访 list have pages of their own.
_PAGE_ACTIONS = (
    *_PRIMARY_ACTIONS,
    IncidentActionKind.cooling,
    IncidentActionKind.follow_up,
    IncidentActionKind.correction,
    IncidentActionKind.reopen,
    IncidentActionKind.postmortem_filed,
)
# Set on the console's own responses too, so that they hold on an app without the guards (tests, a new host).
_HEADERS = {**SECURITY_HEADERS, "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
# The report is a page of its own inside an iframe; its inline <style> is ours (render_html), scripts none.
_REPORT_HEADERS = {**_HEADERS, **REPORT_HEADERS}


@dataclass(frozen=True)
class Session:
    actor: str
    nonce: str
    key_id: str
    expires: datetime


# A live part of a page another module renders (workflow_views): (console, incident id, session) -> HTML.
LiveView = Callable[["Console", str, Session], "str | None"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Session cookies: `expiry.nonce.key_id.actor.mac`, HMAC-signed with a server secret.

    key_id names the operator token the session was issued for, so removing a token from the settings ends
    its sessions; a logout revokes the one session. With no operator tokens configured (dev only) any token
    logs in, as the API is open too.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        secret: bytes,
        max_age: timedelta = timedelta(hours=12),
        nonce: Callable[[], str] = lambda: secrets.token_urlsafe(12),
    ) -> None:
        self._secret = secret
        self.max_age = max_age
        self._nonce = nonce
        self._tokens = {self._key_id(t): t for t in tokens}
        self.open = not tokens
        # Sessions ended by a logout, by nonce, until they would have expired anyway: this replica's at once,
        # every replica's as `absorb_ended` takes them from the store (`ended_seq`: the last row taken).
        self._revoked: dict[str, datetime] = {}
        self.ended_seq = 0

    def _mac(self, label: str, data: str) -> str:
        return _b64(hmac.new(self._secret, f"{label}|{data}".encode(), hashlib.sha256).digest())

    def _key_id(self, token: str) -> str:
        return self._mac("key", token)[:16]

    def issue(self, token: str, actor: str, now: datetime) -> str | None:
        """A cookie value for this token and actor, or None when the token is not an operator token."""
        if self.open:
            key_id = "open"
        else:
            key_id = self._key_id(token)
            known = self._tokens.get(key_id)
            if known is None or not hmac.compare_digest(known.encode(), token.encode()):
                return None
        expires = int((now + self.max_age).timestamp())
        payload = f"{expires}.{self._nonce()}.{key_id}.{_b64(actor.encode())}"
        return f"{payload}.{self._mac('session', payload)}"

    def verify(self, cookie: str | None, now: datetime) -> Session | None:
        parts = (cookie or "").split(".")
        if len(parts) != 5:
            return None
        payload = ".".join(parts[:4])
        if not hmac.compare_digest(parts[4], self._mac("session", payload)):
            return None
        expires, nonce, key_id, actor = parts[:4]
        if not expires.isdigit() or int(expires) <= now.timestamp():
            return None
        if key_id not in self._tokens and not (self.open and key_id == "open"):
            return None
        if nonce in self._revoked:
            return None
        try:
            name = _unb64(actor).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return Session(name, nonce, key_id, datetime.fromtimestamp(int(expires), UTC))

    def revoke(self, session: Session, now: datetime) -> None:
        """End `session` here and now: its cookie, wherever it was copied to, no longer verifies."""
        self._revoked = {n: until for n, until in self._revoked.items() if until > now}
        self._revoked[session.nonce] = session.expires

    def absorb_ended(self, rows: Sequence[tuple[int, str, datetime]]) -> None:
        """Sessions another replica (or this one) ended, as the store lists them: (row id, nonce, expiry)."""
        for seq, nonce, expires in rows:
            self._revoked[nonce] = expires
            self.ended_seq = max(self.ended_seq, seq)

    def csrf(self, session: Session) -> str:
        """The form token of a session: forms carry it, a cross-site page cannot read it."""
        return self._mac("csrf", session.nonce)

    def csrf_ok(self, session: Session, given: str) -> bool:
        return hmac.compare_digest(self.csrf(session).encode(), given.encode())

    def bearer(self, session: Session) -> str | None:
        """The operator token behind a session, to call an API route on its behalf."""
        return self._tokens.get(session.key_id)


def _labels() -> dict[str, dict[Any, str]]:
    text = (resources.files("services.desk") / "templates" / "labels.yaml").read_text(encoding="utf-8")
    data: dict[str, dict[Any, str]] = yaml.safe_load(text)
    return data


def _static_version() -> str:
    folder = resources.files("services.desk") / "static"
    digest = hashlib.sha256()
    for name in ("console.css", "console.js"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:10]


def _version(fragment: str) -> str:
    return hashlib.sha256(fragment.encode()).hexdigest()[:16]


def _sse(event: str, data: str, event_id: str) -> bytes:
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    body = "".join(f"data: {line}\n" for line in lines)
    return f"event: {event}\nid: {event_id}\n{body}\n".encode()


def _sparkline(history: list[tuple[str, int, dict[str, int]]], key: str) -> dict[str, Any]:
    """Points of an inline SVG of the spread in the longest window at each tier change, x by time."""
    width, height, pad = 120.0, 32.0, 3.0
    points = [(datetime.fromisoformat(t), tier, counts.get(key, 0)) for t, tier, counts in history]
    if not points:
        return {"points": "", "dots": [], "width": width, "height": height, "values": []}
    t0, t1 = points[0][0], points[-1][0]
    span = (t1 - t0).total_seconds() or 1.0
    top = max(v for _, _, v in points) or 1
    xy = []
    for t, tier, value in points:
        x = pad + (width - 2 * pad) * ((t - t0).total_seconds() / span if len(points) > 1 else 1.0)
        y = height - pad - (height - 2 * pad) * value / top
        xy.append((round(x, 1), round(y, 1), tier))
    if len(xy) == 1:
        xy.insert(0, (pad, xy[0][1], xy[0][2]))
    return {
        "points": " ".join(f"{x},{y}" for x, y, _ in xy),
        "dots": [{"x": x, "y": y, "tier": tier} for x, y, tier in xy[-len(points) :]],
        "width": width,
        "height": height,
        "values": [v for _, _, v in points],
    }


def _minute_sparkline(series: list[int]) -> dict[str, Any]:
    """Points of an inline SVG of the spread per minute, oldest left; the last minute may still fill."""
    width, height, pad = 120.0, 32.0, 3.0
    top = max(series, default=0) or 1
    step = (width - 2 * pad) / max(len(series) - 1, 1)
    points = " ".join(
        f"{round(pad + i * step, 1)},{round(height - pad - (height - 2 * pad) * v / top, 1)}"
        for i, v in enumerate(series)
    )
    return {
        "points": points,
        "width": width,
        "height": height,
        "minutes": len(series),
        "peak": max(series, default=0),
        "last": series[-1] if series else 0,
    }


def _ledger_link(group: str, post: str) -> str:
    return "/console/ledger?" + urlencode({"group": group, "post": post})


def _safe_next(target: str | None) -> str:
    """Only a console path: a login link must not be able to send the operator elsewhere."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return "/console/board"


async def _form(request: Request) -> dict[str, str] | Response:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return PlainTextResponse("expected an HTML form (application/x-www-form-urlencoded)", 415)
    body = await read_capped(request, _MAX_FORM_BYTES)
    if isinstance(body, TooLarge):
        return PlainTextResponse(f"form: {body.detail}", body.status, headers={"Connection": "close"})
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


@dataclass
class Console:
    """The console's state and the helpers every console route uses (this module's and workflow_views')."""

    desk: Desk
    sessions: Sessions
    throttle: LoginThrottle
    tz: ZoneInfo
    env: jinja2.Environment
    labels: dict[str, dict[Any, str]]
    static_version: str
    # Live views of other modules (workflow_views): name -> (console, incident id, session) -> HTML.
    views: Mapping[str, LiveView] = field(default_factory=dict)

    @property
    def model(self) -> ReadModel:
        return self.desk.model

    @property
    def config(self) -> YuqingConfig:
        return self.desk.config

    # -- sessions and forms -----------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        return self.sessions.verify(request.cookies.get(_COOKIE), datetime.now(UTC))

    def to_login(self, request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/console/login?{urlencode({'next': target})}", 303, headers=_HEADERS)

    def refused(self, request: Request, session: Session | None, status: int, message: str) -> HTMLResponse:
        return self.page(request, "error.html", session, status=status, title="无法完成", message=message)

    async def posted(self, request: Request) -> tuple[Session, dict[str, str]] | Response:
        """The session and the posted form, once the form's CSRF token matched the session's; else the
        response to return (the login page, or the refusal)."""
        session = self.session(request)
        if session is None:
            return self.to_login(request)
        form = await _form(request)
        if isinstance(form, Response):
            return form
        if not self.sessions.csrf_ok(session, form.get("csrf", "")):
            message = "表单令牌无效或缺失，请刷新页面后重试。(CSRF token missing)"
            return self.refused(request, session, 403, message)
        return session, form

    def local_time(self, text: str) -> datetime:
        """A time typed in a form (datetime-local): in the console's zone unless it names an offset."""
        when = datetime.fromisoformat(text)
        return when if when.tzinfo else when.replace(tzinfo=self.tz)

    # -- view models ------------------------------------------------------------------------
    def groups(self) -> list[str]:
        configured = [g.name for g in self.config.rules.groups]
        return configured + sorted(set(self.model.tiers) - set(configured))

    def board(self) -> list[dict[str, Any]]:
        rows = {r["group"]: r for r in self.model.tier_board()}
        out = []
        for name in self.groups():
            row = rows.get(name)
            rules = sorted(self.config.tiers_for(name).rules, key=lambda r: r.window_minutes)
            counts: dict[str, int] = row["counts"] if row else {}
            windows = [
                {
                    "label": window_label(r.window_minutes),
                    "count": counts.get(window_label(r.window_minutes)),
                    "threshold": r.threshold,
                    "tier": r.tier,
                }
                for r in rules
            ]
            longest = window_label(rules[-1].window_minutes)
            incident_id = self.model.current_incident.get(name)
            events = self.model.incident(incident_id) if incident_id else None
            live = row["live"] if row else None
            out.append(
                {
                    "group": name,
                    "tier": row["tier"] if row else 0,
                    "severity": Tier(row["tier"]).severity if row else 0,
                    "since": row["since"] if row else None,
                    "reason": row["reason"] if row else None,
                    "counts_at": row["counts_at"] if row else None,
                    "windows": windows,
                    "spark": _sparkline(row["history"] if row else [], longest),
                    "minutes": _minute_sparkline(live["series"]) if live else None,
                    "top_posts": [
                        {**p, "ledger": _ledger_link(name, p["post"])}
                        for p in (live["top_posts"] if live else [])
                    ],
                    "forecast": row["forecast"] if row else None,
                    "incident": {"id": incident_id, "state": events[-1].state.value} if events else None,
                }
            )
        return sorted(out, key=lambda r: -r["severity"])

    def incident_rows(self, query: Mapping[str, str]) -> dict[str, Any]:
        """The incident list filtered by state, tier and group and cut to one page, with its pager."""
        form = {k: str(query.get(k, "")).strip() for k in ("state", "tier", "group")}
        states = ["open", *(s.value for s in IncidentState)]
        errors: list[str] = []
        args: dict[str, Any] = {}
        if form["state"]:
            if form["state"] in states:
                args["state"] = form["state"]
            else:
                errors.append(f"state: {form['state']!r} 不是可选值之一 ({', '.join(states)})")
        if form["tier"]:
            if form["tier"] in ("0", "1", "2", "3"):
                args["tier"] = int(form["tier"])
            else:
                errors.append(f"tier: {form['tier']!r} 不是可选值之一 (0, 1, 2, 3)")
        if form["group"]:
            args["group"] = form["group"]
        rows = self.model.incident_list(**args) if not errors else []
        pages = max(1, math.ceil(len(rows) / _INCIDENT_PAGE_SIZE))
        raw = str(query.get("page", "1"))
        page = min(int(raw), pages) if raw.isdigit() and int(raw) >= 1 else 1
        kept = {k: v for k, v in form.items() if v}
        return {
            "rows": rows[(page - 1) * _INCIDENT_PAGE_SIZE : page * _INCIDENT_PAGE_SIZE],
            "total": len(rows),
            "all": len(self.model.incidents),
            "page": page,
            "pages": pages,
            "first": (page - 1) * _INCIDENT_PAGE_SIZE + 1,
            "form": form,
            "errors": errors,
            "states": states,
            "groups": self.groups(),
            "query": urlencode({**kept, "page": page}),
            "page_url": lambda n: "/console/incidents?" + urlencode({**kept, "page": n}),
        }

    def incident_detail(self, incident_id: str) -> dict[str, Any] | None:
        events = self.model.incident(incident_id)
        if not events:
            return None
        summary = next(i for i in self.model.incident_list() if i["incident_id"] == incident_id)
        # resolve before the closing review needs a comment "override: why" (a false alarm, say): offer the
        # button whenever that would be accepted; the server checks the comment actually sent and says why.
        allowed = [
            a.value
            for a in _PAGE_ACTIONS
            if action_refusal(self.desk, incident_id, a, _OVERRIDE_HINT if a is _RESOLVE else "") is None
        ]
        return {**summary, "timeline": list(reversed(events)), "allowed": allowed}

    # -- rendering --------------------------------------------------------------------------
    def fragment(
        self,
        view: str,
        incident_id: str = "",
        query: Mapping[str, str] | None = None,
        session: Session | None = None,
    ) -> str | None:
        if view in self.views and session is not None:
            return self.views[view](self, incident_id, session)
        if view == "board":
            return self._render("_board.html", board=self.board())
        if view == "incidents":
            return self._render("_incidents.html", listing=self.incident_rows(query or {}))
        if view == "incident":
            detail = self.incident_detail(incident_id)
            return None if detail is None else self._render("_incident.html", inc=detail)
        return None

    def render(self, name: str, **context: Any) -> str:
        return self._render(name, **context)

    def _render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(L=self.labels, **context)

    def live_page(
        self,
        request: Request,
        name: str,
        session: Session,
        view: str,
        incident_id: str = "",
        query: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse | None:
        """A page around a live fragment; the fragment's hash lets the event stream skip an unchanged first
        push."""
        fragment = self.fragment(view, incident_id, query, session)
        if fragment is None:
            return None
        # Our own autoescaped template output, embedded as is.
        body = Markup(fragment)  # noqa: S704
        return self.page(request, name, session, fragment=body, version=_version(fragment), **context)

    def page(
        self,
        request: Request,
        name: str,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        html = self._render(
            name,
            session=session,
            csrf=self.sessions.csrf(session) if session else "",
            static_version=self.static_version,
            path=request.url.path,
            tz_name=str(self.tz),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _environment(tz: ZoneInfo) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("services.desk", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def local(value: datetime | str | None, fmt: str = "%m-%d %H:%M") -> str:
        if value is None:
            return ""
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        return when.astimezone(tz).strftime(fmt)

    def iso(value: datetime | str) -> str:
        return value if isinstance(value, str) else value.isoformat()

    def num(value: int | None) -> str:
        return "—" if value is None else f"{value:,}"

    def web_url(url: str | None) -> str | None:
        # A post's url comes from the platform feed: never let a javascript: or data: URL become a link.
        return url if url and url.lower().startswith(("https://", "http://")) else None

    env.filters.update(local=local, iso=iso, num=num, sentiment=sentiment_label, web_url=web_url)
    return env


def new_console(
    desk: Desk, operator_tokens: Sequence[str], secret: bytes | None, views: Mapping[str, LiveView]
) -> Console:
    """The console of `desk`. `secret` (YUQING_CONSOLE_SECRET, never the link secret) signs sessions; without
    one each process makes a random key, and sessions end at a restart."""
    tz = ZoneInfo(desk.config.notifier.briefing_tz)
    key = hmac.new(secret, b"yuqing console sessions", hashlib.sha256).digest() if secret else None
    return Console(
        desk=desk,
        sessions=Sessions(operator_tokens, key or secrets.token_bytes(32)),
        throttle=LoginThrottle(desk.model.store),
        tz=tz,
        env=_environment(tz),
        labels=_labels(),
        static_version=_static_version(),
        views=views,
    )


def static_files() -> StaticFiles:
    """The console's CSS and script, to mount at /console/static."""
    return StaticFiles(packages=[("services.desk", "static")])


def console_of(request: Request) -> Console:
    """The console of the app serving `request` (a route dependency)."""
    console: Console = request.app.state.console
    return console


ConsoleDep = Annotated[Console, Depends(console_of)]
router = APIRouter(include_in_schema=False)


@router.get("/console")
@router.get("/console/")
async def root() -> Response:
    return RedirectResponse("/console/board", 303)


@router.get("/console/login")
async def login_page(request: Request, c: ConsoleDep, next: str | None = None) -> Response:
    if c.session(request):
        return RedirectResponse(_safe_next(next), 303)
    return c.page(request, "login.html", None, title="登录", next=_safe_next(next), error="", actor="")


@router.post("/console/login")
async def login(request: Request, c: ConsoleDep) -> Response:
    form = await _form(request)
    if isinstance(form, Response):
        return form
    actor, token, target = form.get("actor", "").strip(), form.get("token", ""), form.get("next")
    now = datetime.now(UTC)
    # Per client and per name: one address cannot try many tokens, nor many addresses one name.
    keys = (f"client:{request.client.host if request.client else '?'}", f"name:{actor.casefold()}")
    wait = await asyncio.to_thread(c.throttle.retry_after, keys, now)
    status, headers = 403, {}
    if wait is not None:
        minutes = max(1, math.ceil(wait.total_seconds() / 60))
        error = (
            f"登录失败次数过多，请 {minutes} 分钟后再试。"
            f"(Too many failed logins: try again in {minutes} min.)"
        )
        status, headers = 429, {"Retry-After": str(math.ceil(wait.total_seconds()))}
    elif not 1 <= len(actor) <= 64:
        error = "请填写姓名（1–64 个字符），操作记录会署这个名字。"
    else:
        cookie = c.sessions.issue(token, actor, now)
        if cookie is None:
            await asyncio.to_thread(c.throttle.failed, keys, now)
        else:
            await asyncio.to_thread(c.throttle.succeeded, keys)
            response = RedirectResponse(_safe_next(target), 303, headers=_HEADERS)
            response.set_cookie(
                _COOKIE,
                cookie,
                max_age=int(c.sessions.max_age.total_seconds()),
                path="/console",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
        error = "令牌无效：请使用运维（operator）令牌。"
    page = c.page(
        request,
        "login.html",
        None,
        status=status,
        title="登录",
        next=_safe_next(target),
        error=error,
        actor=actor,
    )
    page.headers.update(headers)
    return page


@router.post("/console/logout")
async def logout(request: Request, c: ConsoleDep) -> Response:
    posted = await c.posted(request)
    if isinstance(posted, Response):
        return posted
    session, _ = posted
    now = datetime.now(UTC)
    c.sessions.revoke(session, now)  # here at once; the other replicas follow the store within a second
    await asyncio.to_thread(c.desk.model.store.end_session, session.nonce, now, session.expires)
    response = RedirectResponse("/console/login", 303, headers=_HEADERS)
    response.delete_cookie(_COOKIE, path="/console")
    return response


@router.get("/console/board")
async def board(request: Request, c: ConsoleDep) -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    return c.live_page(request, "board.html", session, "board", title="等级看板") or c.to_login(request)


@router.get("/console/incidents")
async def incidents(request: Request, c: ConsoleDep) -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    query = dict(request.query_params)
    listing = c.incident_rows(query)
    page = c.live_page(
        request,
        "incidents.html",
        session,
        "incidents",
        query=query,
        title="事件",
        listing=listing,
        status=422 if listing["errors"] else 200,
    )
    return page or c.to_login(request)


def _incident_page(
    c: Console, request: Request, session: Session, incident_id: str, status: int = 200, **extra: Any
) -> Response:
    detail = c.incident_detail(incident_id)
    page = c.live_page(
        request,
        "incident.html",
        session,
        "incident",
        incident_id,
        status=status,
        title=f"事件 {incident_id}",
        inc=detail,
        actions=_PRIMARY_ACTIONS,
        **{"sent": "", "error": "", "comment": "", **extra},
    )
    return page or c.refused(request, session, 404, f"没有事件 {incident_id}。(no such incident)")


@router.get("/console/incidents/{incident_id}")
async def incident(request: Request, incident_id: str, c: ConsoleDep, sent: str = "") -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    return _incident_page(c, request, session, incident_id, sent=sent[:40])


@router.post("/console/incidents/{incident_id}/actions")
async def act(request: Request, incident_id: str, c: ConsoleDep) -> Response:
    posted = await c.posted(request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    comment = form.get("comment", "")
    try:
        body = ActionRequest(action=form.get("action", ""), actor=session.actor, comment=comment)
    except ValidationError as exc:
        error = "；".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _incident_page(c, request, session, incident_id, status=422, error=error, comment=comment)
    result = await apply_action(c.desk, incident_id, body)
    if result.status_code == 202:
        sent = urlencode({"sent": body.action.value})
        return RedirectResponse(f"/console/incidents/{quote(incident_id, safe='')}?{sent}", 303)
    detail = json.loads(bytes(result.body)).get("detail", "")
    return _incident_page(
        c, request, session, incident_id, status=result.status_code, error=detail, comment=comment
    )


@router.get("/console/incidents/{incident_id}/report")
async def report_page(request: Request, incident_id: str, c: ConsoleDep) -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    if c.model.incident(incident_id) is None:
        return c.refused(request, session, 404, f"没有事件 {incident_id}。(no such incident)")
    title = f"复盘报告 {incident_id}"
    return c.page(request, "report.html", session, title=title, incident_id=incident_id)


@router.get("/console/incidents/{incident_id}/report.html")
async def report_html(request: Request, incident_id: str, c: ConsoleDep) -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    # Through the report route itself, in process, on the session's token: one source of the report.
    token = c.sessions.bearer(session)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.internal") as client:
        path = f"/v1/incidents/{quote(incident_id, safe='')}/report"
        resp = await client.get(path, params={"format": "html"}, headers=headers)
    kind = resp.headers.get("content-type")
    return Response(resp.content, status_code=resp.status_code, media_type=kind, headers=_REPORT_HEADERS)


def _ledger_filters(c: Console, request: Request) -> tuple[LedgerQuery, dict[str, str], list[str]]:
    """(the store's query, the form's values, errors) from the query string."""
    q = request.query_params
    names = ("since", "until", "platform", "group", "sentiment", "demand", "q", "sort", "post")
    form = {k: q.get(k, "").strip() for k in names}
    args: dict[str, Any] = {}
    errors = []
    for name in ("since", "until"):
        if form[name]:
            try:
                when = datetime.fromisoformat(form[name])
            except ValueError:
                errors.append(f"{name}: 时间格式应为 2026-11-21T08:00 (got {form[name]!r})")
                continue
            args[name] = when if when.tzinfo else when.replace(tzinfo=c.tz)
    choices: dict[str, list[str]] = {
        "platform": [p.value for p in Platform],
        "sentiment": list(SENTIMENTS),
        "demand": list(DEMANDS),
        "sort": ["time", "spread"],
    }
    for name, allowed in choices.items():
        if form[name] and form[name] not in allowed:
            errors.append(f"{name}: {form[name]!r} 不是可选值之一 ({', '.join(allowed)})")
        elif form[name]:
            args[name] = form[name]
    if form["group"]:
        args["group"] = form["group"][:128]
    if form["post"]:
        args["post"] = form["post"][:256]  # platform:post_id, from a board card's top posts
    if len(form["q"]) > 100:
        errors.append(f"q: 关键词最多 100 个字符 (got {len(form['q'])})")
    elif form["q"]:
        args["text"] = form["q"]
    return LedgerQuery(**args), form, errors


@router.get("/console/ledger")
async def ledger(request: Request, c: ConsoleDep) -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    query, form, errors = _ledger_filters(c, request)
    raw_page = request.query_params.get("page", "1")
    page = int(raw_page) if raw_page.isdigit() and 1 <= int(raw_page) <= 100_000 else 1
    total, rows = (
        (0, [])
        if errors
        else await asyncio.to_thread(c.model.ledger_page, query, _PAGE_SIZE, (page - 1) * _PAGE_SIZE)
    )
    pages = max(1, math.ceil(total / _PAGE_SIZE))
    if page > pages:  # past the end (rows went since the link was made): the last page
        page = pages
        total, rows = await asyncio.to_thread(c.model.ledger_page, query, _PAGE_SIZE, (page - 1) * _PAGE_SIZE)
    kept = {k: v for k, v in form.items() if v}
    return c.page(
        request,
        "ledger.html",
        session,
        status=422 if errors else 200,
        title="舆情台账",
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * _PAGE_SIZE + 1,
        form=form,
        errors=errors,
        groups=c.groups(),
        choices={"platform": [p.value for p in Platform], "demand": list(DEMANDS)},
        page_url=lambda n: "/console/ledger?" + urlencode({**kept, "page": n}),
        csv_url="/console/ledger.csv" + (f"?{urlencode(kept)}" if kept else ""),
    )


@router.get("/console/ledger.csv")
async def ledger_export(request: Request, c: ConsoleDep) -> Response:
    session = c.session(request)
    if session is None:
        return c.to_login(request)
    query, _, errors = _ledger_filters(c, request)
    if errors:
        return PlainTextResponse("\n".join(errors), 422)
    return ledger_csv(c.model, query)


@router.get("/console/events")
async def events(request: Request, c: ConsoleDep, view: str = "board", id: str = "", v: str = "") -> Response:
    """Server-sent events: the view's HTML fragment whenever it changes (polled every second)."""
    session = c.session(request)
    if session is None:
        return PlainTextResponse("log in first: /console/login", 401)
    query = {k: v for k, v in request.query_params.items() if k in ("state", "tier", "group", "page")}
    if c.fragment(view, id, query, session) is None:
        return PlainTextResponse(f"no live view {view!r} {id!r}", 404)
    cookie = request.cookies.get(_COOKIE)
    last = request.headers.get("last-event-id") or v

    async def stream() -> AsyncIterator[bytes]:
        nonlocal last
        yield b"retry: 2000\n\n"
        loop = asyncio.get_running_loop()
        end = loop.time() + _STREAM_SECONDS
        while True:
            if c.sessions.verify(cookie, datetime.now(UTC)) is None:
                yield _sse("expired", "", "expired")
                return
            fragment = c.fragment(view, id, query, session) or ""
            version = _version(fragment)
            if version != last:
                last = version
                yield _sse("fragment", fragment, version)
            if loop.time() >= end:
                return
            await asyncio.sleep(_POLL_SECONDS)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
