"""The HTTP services' guards: no route of ingest or the desk reads a body past its limit, and every response
carries the security headers.

The process-level check (four parallel 300 MB posts against a real API process) is in
tests/reliability/test_security.py; these run the middlewares in process, route by route.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.types import Message

from schemas.events import IncidentAction, IncidentState, TierOverride
from services.common.config import load_config
from services.common.guard import BodyLimit, install_guards
from services.common.links import sign_link
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.desk.test_operator import incident_event
from tests.desk.world import TOKEN, desk_app
from tests.ingest.test_api_limits import fake_kafka

LIMIT = 1000
CHUNK = 100
INGEST = "ingest-token-for-guard-tests"
LINK_SECRET = "link-secret-for-guard-tests"


class Counting:
    """A request body of `total` bytes in CHUNK-byte pieces, streamed, that counts how much was pulled."""

    def __init__(self, total: int, first: bytes = b"") -> None:
        self.total = total
        self.first = first
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.first:
            self.pulled += len(self.first)
            yield self.first
        while self.pulled < self.total:
            self.pulled += CHUNK
            yield b"x" * CHUNK


def streaming(app: FastAPI) -> httpx.AsyncClient:
    """A client that hands the app the body chunk by chunk (TestClient reads it all first)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


def small_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    install_guards(app, LIMIT)
    return app


async def test_a_route_reading_the_whole_body_is_cut_off_at_the_limit():
    async with streaming(small_app()) as client:
        assert (await client.post("/echo", content=b"x" * LIMIT)).text == str(LIMIT)
        body = Counting(50 * LIMIT)
        resp = await client.post("/echo", content=body)
    assert resp.status_code == 413
    assert resp.json()["detail"].startswith(f"body is over {LIMIT} bytes")
    assert resp.headers["connection"] == "close"
    assert body.pulled <= LIMIT + CHUNK


async def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read():
    async with streaming(small_app()) as client:
        body = Counting(50 * LIMIT)
        resp = await client.post("/echo", content=body, headers={"Content-Length": str(50 * LIMIT)})
    assert resp.status_code == 413
    assert resp.json()["detail"] == f"body is {50 * LIMIT} bytes; the limit is {LIMIT}"
    assert body.pulled == 0


async def test_a_malformed_content_length_is_a_400_and_nothing_is_read():
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise AssertionError("the body was read")

    sent: list[Message] = []

    async def receive() -> Message:
        raise AssertionError("the body was read")

    async def send(message: Message) -> None:
        sent.append(message)

    for value in (b"12abc", "²".encode("latin-1"), b"-1"):
        sent.clear()
        scope = {"type": "http", "path": "/x", "headers": [(b"content-length", value)]}
        await BodyLimit(app, lambda _: LIMIT)(scope, receive, send)
        assert sent[0]["status"] == 400
        assert b"is not a number of bytes" in sent[1]["body"]


class _Nowhere:
    async def action(self, group: str, action: IncidentAction) -> None:
        pass

    async def override(self, group: str, command: TierOverride) -> None:
        pass


@pytest.fixture
def desk() -> Iterator[TestClient]:
    app = desk_app(load_config(), _Nowhere(), link_secret=LINK_SECRET, max_operator_body_bytes=LIMIT)
    app.state.desk.model.apply(incident_event(1, IncidentState.opened))
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def ingest(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    fake_kafka(monkeypatch)
    with TestClient(create_app(IngestSettings(ingest_tokens=(INGEST,), max_body_bytes=4 * LIMIT))) as client:
        yield client


def _all_routes(routes: list[Any]) -> Iterator[Any]:
    """Routes, also those of included routers (FastAPI keeps an included router as one entry; none of
    ours has a prefix)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from _all_routes(included.routes) if included is not None else [route]


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "weibo", path)


@pytest.mark.parametrize(
    ("service", "limit", "token", "known"),
    [
        ("ingest", 4 * LIMIT, INGEST, {"/v1/posts", "/v1/platforms/{platform}/posts"}),
        ("desk", LIMIT, TOKEN, {"/console/login", "/console/logout", "/v1/ack/{token}"}),
    ],
)
async def test_no_post_route_reads_past_its_limit_console_and_links_included(
    request, service, limit, token, known
):
    """Every POST route, also those outside the OpenAPI document (console forms, ack links): a body ten
    times over the limit is refused or left unread, never read past the limit."""
    app = request.getfixturevalue(service).app
    posts = [
        r.path for r in _all_routes(app.routes) if isinstance(r, APIRoute) and "POST" in (r.methods or ())
    ]
    assert known <= set(posts)
    if service == "desk":
        assert len(posts) >= 7, posts
    async with streaming(app) as client:
        for path in posts:
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/x-www-form-urlencoded",
            }
            for declared in (False, True):
                body = Counting(10 * limit, first=b"actor=a&token=")
                extra = {"Content-Length": str(10 * limit)} if declared else {}
                resp = await client.post(_url(path), content=body, headers={**headers, **extra})
                assert body.pulled <= limit + CHUNK, (path, declared, body.pulled)
                if body.pulled:  # the route read: then it must have refused
                    assert resp.status_code == 413, (path, declared, resp.status_code, resp.text)


def test_every_response_carries_the_security_headers_the_ack_page_included(desk, ingest):
    token = sign_link(LINK_SECRET.encode(), "inc1", "xinghe", "ack", datetime.now(UTC), timedelta(hours=1))
    pages = {
        (desk, f"/v1/ack/{token}"): 200,
        (desk, "/v1/ack/not-a-token"): 403,
        (desk, "/console/login"): 200,
        (desk, "/docs"): 200,
        (desk, "/healthz"): 200,
        (desk, "/nowhere"): 404,
        (ingest, "/docs"): 200,
        (ingest, "/healthz"): 200,
        (ingest, "/console/login"): 404,
    }
    for (client, path), status in pages.items():
        resp = client.get(path)
        assert resp.status_code == status, path
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"], path
        assert resp.headers["x-frame-options"] == "DENY", path
        assert resp.headers["x-content-type-options"] == "nosniff", path
        assert resp.headers["referrer-policy"] in ("no-referrer", "same-origin"), path
    api = desk
    ack = api.get(f"/v1/ack/{token}")
    assert "script-src 'self'" in ack.headers["content-security-policy"]
    assert "style=" not in ack.text  # the CSP allows no inline style: the page uses console.css
    assert api.get(f"/v1/ack/{token}").headers["referrer-policy"] == "no-referrer"


def test_the_report_may_be_framed_by_the_console_only(desk):
    resp = desk.get("/v1/incidents/inc1/report?format=html", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert "frame-ancestors 'self'" in resp.headers["content-security-policy"]
    assert resp.headers["x-frame-options"] == "SAMEORIGIN"
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_a_refused_body_gets_the_headers_too(desk):
    resp = desk.post("/console/login", content=b"x" * (2 * LIMIT))
    assert resp.status_code in (413, 415)
    assert resp.headers["x-frame-options"] == "DENY"
