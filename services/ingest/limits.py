"""Request bodies read with a cap: Content-Length is checked before reading, and a chunked body without
one is cut off as soon as it passes the limit, so no client can make the API buffer more than the limit."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

__all__ = ["TooLarge", "read_capped"]


class TooLarge:
    """Why a body was refused, ready to answer; `response` is a 413 (or 400 for a bad Content-Length)."""

    def __init__(self, detail: str, status: int = 413) -> None:
        self.detail = detail
        self.response = JSONResponse({"detail": detail}, status_code=status)


async def read_capped(request: Request, limit: int) -> bytes | TooLarge:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return TooLarge(f"Content-Length {declared[:32]!r} is not a number of bytes", 400)
        if int(declared) > limit:
            return TooLarge(f"body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return TooLarge(f"body is over {limit} bytes (stopped reading at {size}); the limit is {limit}")
        chunks.append(chunk)
    return b"".join(chunks)
