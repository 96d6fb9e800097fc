"""Signed, expiring one-click links (acknowledge an incident from a phone).

token = base64url(JSON payload) + "." + base64url(HMAC-SHA256(secret, payload)). The payload names the
incident, its group, the action, an expiry and a nonce; the desk refuses a token that is tampered with,
expired or already used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common import json
from services.common.exceptions import BadLink

__all__ = ["BadLink", "LinkClaims", "sign_link", "verify_link"]


@dataclass(frozen=True)
class LinkClaims:
    incident_id: str
    group: str
    action: str
    expires_at: datetime
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(secret: bytes, incident_id: str, group: str, action: str, now: datetime, ttl: timedelta) -> str:
    expires = int((now + ttl).timestamp())
    nonce = hashlib.sha256(f"{incident_id}|{action}|{expires}".encode()).hexdigest()[:16]
    payload = json.dumps({"i": incident_id, "g": group, "a": action, "e": expires, "n": nonce})
    mac = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify_link(secret: bytes, token: str, now: datetime) -> LinkClaims:
    try:
        body, mac = token.split(".", 1)
        payload, given = _unb64(body), _unb64(mac)
    except ValueError:
        raise BadLink("malformed link") from None
    if not hmac.compare_digest(hmac.new(secret, payload, hashlib.sha256).digest(), given):
        raise BadLink("link signature does not match")
    try:
        data = json.loads(payload)
        claims = LinkClaims(
            str(data["i"]),
            str(data["g"]),
            str(data["a"]),
            datetime.fromtimestamp(int(data["e"]), now.tzinfo),
            str(data["n"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise BadLink("malformed link payload") from None
    if now >= claims.expires_at:
        raise BadLink(f"link expired at {claims.expires_at.isoformat()}")
    return claims
