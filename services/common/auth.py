"""Bearer-token checks with scopes: ingest tokens post posts (ingest), operator tokens read and act (desk)."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

__all__ = ["TokenCheck", "is_loopback"]


class TokenCheck:
    def __init__(self, tokens: tuple[SecretStr, ...], scope: str) -> None:
        self._tokens = [t.get_secret_value().encode() for t in tokens]
        self.scope = scope

    def __call__(self, request: Request) -> JSONResponse | None:
        """None when allowed; otherwise the 401/403 response to return."""
        refusal = self._refusal(request)
        if refusal is None:
            return None
        status, detail, headers = refusal
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    def require(self, request: Request) -> None:
        """As a route dependency: raises the 401/403 (the same answer as `__call__`) before any parameter or
        body is validated, so that an unauthenticated caller never sees a route's schema in a 422."""
        refusal = self._refusal(request)
        if refusal is not None:
            status, detail, headers = refusal
            raise HTTPException(status, detail, headers=headers)

    def _refusal(self, request: Request) -> tuple[int, str, dict[str, str] | None] | None:
        if not self._tokens:
            return None
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return 401, "missing bearer token", {"WWW-Authenticate": "Bearer"}
        given = header[7:].strip().encode()
        if not any(hmac.compare_digest(given, t) for t in self._tokens):
            return 403, f"token not accepted for {self.scope}", None
        return None


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this host only: then open routes are a dev setup."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere
