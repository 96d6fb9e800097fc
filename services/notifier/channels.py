"""Delivery channels. Each returns (retryable, error): error None means delivered."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from pathlib import Path
from typing import Protocol

import httpx

from schemas.events import Alert
from services.common import json
from services.common.config import ChannelConfig

__all__ = ["Channel", "build_channel", "sign"]

log = logging.getLogger(__name__)

SendResult = tuple[bool, str | None]


class Channel(Protocol):
    name: str

    async def send(self, alert: Alert) -> SendResult: ...

    async def close(self) -> None: ...


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over 'timestamp.body', hex: the X-Yuqing-Signature header is 'sha256=<this>'."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class _Webhook:
    def __init__(self, cfg: ChannelConfig) -> None:
        self.name = cfg.name
        self._url = str(cfg.url)
        self._secret = cfg.secret.get_secret_value().encode() if cfg.secret else b""
        self._client = httpx.AsyncClient(timeout=cfg.timeout_seconds)

    async def send(self, alert: Alert) -> SendResult:
        body = json.dumps(alert)
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Yuqing-Timestamp": ts,
            "X-Yuqing-Event-Id": alert.event_id,
        }
        if self._secret:
            headers["X-Yuqing-Signature"] = "sha256=" + sign(self._secret, ts, body)
        try:
            resp = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return True, f"{type(exc).__name__}: {exc}"
        if resp.is_success:
            return False, None
        retryable = resp.status_code == 429 or resp.status_code >= 500
        return retryable, f"HTTP {resp.status_code}: {resp.text[:200]}"

    async def close(self) -> None:
        await self._client.aclose()


class _File:
    """Appends alerts as JSON lines: the local 'webhook' of `yuqing dev`."""

    def __init__(self, cfg: ChannelConfig) -> None:
        self.name = cfg.name
        self._path = Path(cfg.path or "alerts.jsonl")

    async def send(self, alert: Alert) -> SendResult:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("ab") as f:
                f.write(json.dumps(alert) + b"\n")
        except OSError as exc:
            return True, str(exc)
        return False, None

    async def close(self) -> None:
        return None


class _Console:
    def __init__(self, cfg: ChannelConfig) -> None:
        self.name = cfg.name

    async def send(self, alert: Alert) -> SendResult:
        log.warning("ALERT %s\n%s", alert.title, alert.body)
        return False, None

    async def close(self) -> None:
        return None


def build_channel(cfg: ChannelConfig) -> Channel:
    kinds: dict[str, type[_Webhook] | type[_File] | type[_Console]] = {
        "webhook": _Webhook,
        "file": _File,
        "console": _Console,
    }
    return kinds[cfg.type](cfg)
