"""Request bodies read with a cap: Content-Length is checked before reading, and a chunked body without
one is cut off as soon as it passes the limit, so no client can make a service buffer more than the limit."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

__all__ = ["BodyTooLarge", "TooLarge", "read_capped"]


class BodyTooLarge(HTTPException):
    """Raised by a read past the limit (services/common/guard.py): a 413 that also closes the connection, so
    that the server does not read the rest of the body only to discard it."""

    def __init__(self, detail: str, status: int = 413) -> None:
        super().__init__(status, detail, headers={"Connection": "close"})


class TooLarge:
    """Why a body was refused, ready to answer; `response` is a 413 (or 400 for a bad Content-Length)."""

    def __init__(self, detail: str, status: int = 413) -> None:
        self.detail = detail
        self.status = status
        # Closing the connection spares reading (and discarding) the rest of a body nobody wants.
        self.response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})


async def read_capped(request: Request, limit: int) -> bytes | TooLarge:
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        if not (declared.isascii() and declared.isdigit()):  # "²".isdigit() holds, int("²") fails
            return TooLarge(f"Content-Length {declared[:32]!r} is not a number of bytes", 400)
        if int(declared) > limit:
            return TooLarge(f"body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return TooLarge(
                    f"body is over {limit} bytes (stopped reading at {size}); the limit is {limit}"
                )
            chunks.append(chunk)
    except BodyTooLarge as exc:  # the app-wide cap (guard.BodyLimit) is the lower one
        return TooLarge(exc.detail, exc.status_code)
    return b"".join(chunks)
