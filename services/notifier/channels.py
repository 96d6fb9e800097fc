"""Delivery channels. Each send returns an Outcome (retryable, error[, retry_after]): error None = delivered.

Chat robots answer HTTP 200 with a non-zero errcode/code when they refuse a message, so the body decides, not
the status alone. Their URLs carry the access token: the URL is a SecretStr, httpx's request log is silenced
and every error text is scrubbed of it before it reaches a log line or a Delivery record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import ssl
import time
import urllib.parse
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import aiosmtplib
import httpx

from schemas.events import Alert
from services.common import json
from services.common.config import ChannelConfig
from services.common.exceptions import ConfigError
from services.notifier import render

__all__ = ["Channel", "Outcome", "build_channel", "dingtalk_sign", "feishu_sign", "sign"]

log = logging.getLogger(__name__)


class Outcome(NamedTuple):
    retryable: bool
    error: str | None
    retry_after: float | None = None  # seconds the platform asked us to wait (Retry-After)


_OK = Outcome(False, None)


class Channel(Protocol):
    name: str
    # True when the receiving end drops a second copy of an alert by its id (X-Yuqing-Event-Id for a
    # webhook): an alert that may have arrived before a crash is then sent again as it was. Otherwise
    # (people read the channel) it is sent again with `repeat`, which marks it as a possible repeat.
    dedups_by_id: bool

    async def send(self, alert: Alert, repeat: bool = False) -> Outcome: ...

    async def close(self) -> None: ...


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over 'timestamp.body', hex: the X-Yuqing-Signature header is 'sha256=<this>'."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """钉钉加签: base64(HMAC-SHA256(key=secret, msg='{timestamp_ms}\\n{secret}')), not yet URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """飞书签名校验: base64(HMAC-SHA256(key='{timestamp_s}\\n{secret}', msg=empty))."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _Http:
    """Shared transport: POST JSON, classify HTTP failures, scrub secrets out of error text."""

    dedups_by_id = False

    def __init__(self, cfg: ChannelConfig) -> None:
        self.name = cfg.name
        if cfg.url is None:
            raise ConfigError(f"channel {cfg.name!r}: a {cfg.type} channel needs 'url'")
        self._url = cfg.url.get_secret_value()
        self._secret = cfg.secret.get_secret_value() if cfg.secret else ""
        self._client = httpx.AsyncClient(timeout=cfg.timeout_seconds)
        parsed = urllib.parse.urlsplit(self._url)
        tokens = [v for _, v in urllib.parse.parse_qsl(parsed.query)] + [
            parsed.path.rstrip("/").rsplit("/", 1)[-1]
        ]
        self._scrub = sorted({self._url, *(t for t in tokens if len(t) >= 8), self._secret} - {""}, key=len)[
            ::-1
        ]

    def scrub(self, text: str) -> str:
        for s in self._scrub:
            text = text.replace(s, "***")
        return text

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response | Outcome:
        try:
            return await self._client.post(
                url, content=body, headers={"Content-Type": "application/json", **headers}
            )
        except httpx.HTTPError as exc:
            return Outcome(True, self.scrub(f"{type(exc).__name__}: {exc}"))

    def http_failure(self, resp: httpx.Response) -> Outcome | None:
        if resp.is_success:
            return None
        retryable = resp.status_code in (408, 425, 429) or resp.status_code >= 500
        wait = retry_after(resp.headers.get("Retry-After")) if retryable else None
        return Outcome(retryable, self.scrub(f"HTTP {resp.status_code}: {resp.text[:200]}"), wait)

    async def close(self) -> None:
        await self._client.aclose()


class _Webhook(_Http):
    """The Alert as JSON. X-Yuqing-Event-Id is its idempotency key: the same for every copy of one alert, so
    a receiver that keeps the keys it has seen drops a copy sent again after a crash."""

    dedups_by_id = True

    async def send(self, alert: Alert, repeat: bool = False) -> Outcome:
        body = json.dumps(alert)
        ts = str(int(time.time()))
        headers = {"X-Yuqing-Timestamp": ts, "X-Yuqing-Event-Id": alert.event_id}
        if self._secret:
            headers["X-Yuqing-Signature"] = "sha256=" + sign(self._secret.encode(), ts, body)
        resp = await self.post(self._url, body, headers)
        if isinstance(resp, Outcome):
            return resp
        return self.http_failure(resp) or _OK


class _Robot(_Http):
    """A chat robot: HTTP 200 plus {errcode|code: 0} is success; some non-zero codes mean 'slow down'."""

    code_field = "errcode"
    retryable_codes: frozenset[int] = frozenset()

    def payload(self, alert: Alert) -> dict[str, Any]:
        raise NotImplementedError

    def target(self) -> str:
        return self._url

    async def send(self, alert: Alert, repeat: bool = False) -> Outcome:
        shown = render.possible_repeat(alert) if repeat else alert
        resp = await self.post(self.target(), json.dumps(self.payload(shown)), {})
        if isinstance(resp, Outcome):
            return resp
        try:
            data = json.loads(resp.content) if resp.content else {}
        except json.JSONDecodeError:
            data = {}
        code = data.get(self.code_field, data.get("StatusCode")) if isinstance(data, dict) else None
        failed = self.http_failure(resp)
        if code in (None, 0) and failed is None:
            return _OK
        if code not in (None, 0):
            message = data.get("errmsg") or data.get("msg") or data.get("StatusMessage") or ""
            retryable = code in self.retryable_codes or (failed is not None and failed.retryable)
            wait = retry_after(resp.headers.get("Retry-After")) if retryable else None
            return Outcome(
                retryable, self.scrub(f"HTTP {resp.status_code}, {self.code_field} {code}: {message}"), wait
            )
        return failed or _OK


class _WeCom(_Robot):
    """企业微信群机器人. 45009: over the per-robot rate limit; -1: system busy."""

    retryable_codes = frozenset({45009, -1})

    def payload(self, alert: Alert) -> dict[str, Any]:
        return render.wecom(alert)


class _DingTalk(_Robot):
    """钉钉自定义机器人 with 加签: timestamp and sign go in the query string. 130101: sending too fast."""

    retryable_codes = frozenset({130101, -1})

    def payload(self, alert: Alert) -> dict[str, Any]:
        return render.dingtalk(alert)

    def target(self) -> str:
        if not self._secret:
            return self._url
        ts = str(int(time.time() * 1000))
        query = urllib.parse.urlencode({"timestamp": ts, "sign": dingtalk_sign(self._secret, ts)})
        return f"{self._url}{'&' if '?' in self._url else '?'}{query}"


class _Feishu(_Robot):
    """飞书自定义机器人 with 签名校验: timestamp and sign go in the body. 9499 / 11232: rate limited."""

    code_field = "code"
    retryable_codes = frozenset({9499, 11232})

    def payload(self, alert: Alert) -> dict[str, Any]:
        body = render.feishu(alert)
        if self._secret:
            ts = str(int(time.time()))
            body = {"timestamp": ts, "sign": feishu_sign(self._secret, ts), **body}
        return body


class _Email:
    """SMTP with STARTTLS and AUTH. A 4xx reply is temporary (retry), a 5xx one permanent (bad login)."""

    dedups_by_id = False

    def __init__(self, cfg: ChannelConfig) -> None:
        if not (cfg.smtp_host and cfg.sender):
            raise ConfigError(f"channel {cfg.name!r}: an email channel needs 'smtp_host' and 'sender'")
        self.name = cfg.name
        self._cfg = cfg
        self._host, self._sender = cfg.smtp_host, cfg.sender
        self._tls = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)

    async def send(self, alert: Alert, repeat: bool = False) -> Outcome:
        cfg = self._cfg
        msg = render.email(render.possible_repeat(alert) if repeat else alert, self._sender, cfg.recipients)
        try:
            await aiosmtplib.send(
                msg,
                hostname=self._host,
                port=cfg.smtp_port,
                username=cfg.username,
                password=cfg.password.get_secret_value() if cfg.password else None,
                start_tls=cfg.starttls,
                use_tls=False,
                tls_context=self._tls,
                timeout=cfg.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return Outcome(False, f"SMTP recipients refused: {sorted(r.recipient for r in exc.recipients)}")
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome(400 <= exc.code < 500, f"SMTP {exc.code}: {exc.message[:200]}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome(True, f"{type(exc).__name__}: {exc}")
        return _OK

    async def close(self) -> None:
        return None


class _File:
    """Appends alerts as JSON lines: the local 'webhook' of `yuqing dev`. A reader keys on event_id."""

    dedups_by_id = True

    def __init__(self, cfg: ChannelConfig) -> None:
        self.name = cfg.name
        self._path = Path(cfg.path or "alerts.jsonl")

    async def send(self, alert: Alert, repeat: bool = False) -> Outcome:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("ab") as f:
                f.write(json.dumps(alert) + b"\n")
        except OSError as exc:
            return Outcome(True, str(exc))
        return _OK

    async def close(self) -> None:
        return None


class _Console:
    dedups_by_id = False

    def __init__(self, cfg: ChannelConfig) -> None:
        self.name = cfg.name

    async def send(self, alert: Alert, repeat: bool = False) -> Outcome:
        log.warning("ALERT %s", render.plain(render.possible_repeat(alert) if repeat else alert))
        return _OK

    async def close(self) -> None:
        return None


_KINDS: dict[str, Any] = {
    "webhook": _Webhook,
    "wecom": _WeCom,
    "dingtalk": _DingTalk,
    "feishu": _Feishu,
    "email": _Email,
    "file": _File,
    "console": _Console,
}


def build_channel(cfg: ChannelConfig) -> Channel:
    # httpx logs every request URL at INFO, and a robot's URL is its access token.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
    channel: Channel = _KINDS[cfg.type](cfg)
    return channel
