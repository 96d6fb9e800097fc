"""Two ASGI middlewares that every route of an HTTP service (ingest, desk) passes through, so no route can
forget them.

- `BodyLimit`: no route reads more than its path's limit. A declared Content-Length over it is refused on the
  first read, before any byte is buffered; a chunked body is cut off by the read that passes the limit. A
  route reading with `read_capped` answers with its own message (and metric); any other read
  (`request.body()`, a form) ends in FastAPI's answer to `BodyTooLarge`, a 413 that closes the connection.
- `SecurityHeaders`: CSP, X-Frame-Options, nosniff and Referrer-Policy on every response that does not set
  its own (the console's report frame does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.limits import BodyTooLarge

__all__ = [
    "HTML_POLICY",
    "REPORT_HEADERS",
    "SECURITY_HEADERS",
    "BodyLimit",
    "SecurityHeaders",
    "install_guards",
]

# Scripts, styles and images from the service's own origin only; no frames around it, forms only to it.
HTML_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": HTML_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # An ack link carries its token in the path: no page of ours tells another site where it came from.
    "Referrer-Policy": "no-referrer",
}
# The post-mortem report is a page of its own (render_html) with an inline <style> of ours and no script; the
# console shows it in an iframe.
REPORT_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
}
# FastAPI's /docs and /redoc pages load their viewer from jsDelivr and start it with an inline script.
_DOCS_POLICY = (
    "default-src 'none'; script-src 'self' https://cdn.jsdelivr.net 'unsafe-inline'; "
    "style-src 'self' https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com; "
    "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
_DOCS_PATHS = frozenset({"/docs", "/redoc"})


class BodyLimit:
    """Caps what any route can read of a request body: `limit_for(path)` bytes."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _header(scope, b"content-length")
        state = {"read": 0, "started": False}

        async def capped() -> Message:
            if declared is not None:
                if not (declared.isascii() and declared.isdigit()):
                    raise BodyTooLarge(f"Content-Length {declared[:32]!r} is not a number of bytes", 400)
                if int(declared) > limit:
                    raise BodyTooLarge(f"body is {int(declared)} bytes; the limit is {limit}")
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                read = state["read"]
                if read > limit:
                    raise BodyTooLarge(
                        f"body is over {limit} bytes (stopped reading at {read}); the limit is {limit}"
                    )
            return message

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, capped, watched)
        except BodyTooLarge as exc:  # raised outside FastAPI's exception handling (a mounted app)
            if state["started"]:
                raise
            await _plain(send, exc.status_code, exc.detail)


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response, keeping any a route set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defaults = dict(SECURITY_HEADERS)
        if scope["path"] in _DOCS_PATHS:
            defaults["Content-Security-Policy"] = _DOCS_POLICY

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in defaults.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def install_guards(app: FastAPI, limit: int) -> None:
    """Both middlewares on `app`, no body read past `limit` bytes on any route. The headers go outermost, so
    that a refused body gets them too."""
    app.add_middleware(BodyLimit, limit_for=lambda _path: limit)
    app.add_middleware(SecurityHeaders)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1").strip())
    return None


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
