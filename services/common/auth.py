"""Bearer-token checks with scopes: ingest tokens post posts, operator tokens read and act."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

__all__ = ["TokenCheck"]


class TokenCheck:
    def __init__(self, tokens: tuple[SecretStr, ...], scope: str) -> None:
        self._tokens = [t.get_secret_value().encode() for t in tokens]
        self.scope = scope

    def __call__(self, request: Request) -> JSONResponse | None:
        """None when allowed; otherwise the 401/403 response to return."""
        if not self._tokens:
            return None
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return JSONResponse(
                {"detail": "missing bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        given = header[7:].strip().encode()
        if not any(hmac.compare_digest(given, t) for t in self._tokens):
            return JSONResponse({"detail": f"token not accepted for {self.scope}"}, status_code=403)
        return None
