"""Local HTTP servers that receive alerts as the real ones do: WeCom, DingTalk and Feishu robots, and a
webhook receiver that deduplicates by the idempotency key.

The robot server verifies the access token, the signature and its timestamp window exactly as the platforms
document them, and the message format, answering with the platform's own error codes. Scripted replies (429
with Retry-After, 500, an errcode) can be queued per platform. Both keep the exact bytes of every request they
accepted, and can hold each request for a while before answering (a slow receiver, to crash a sender while a
request is out); `landed` is set as each request arrives.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.common import json
from services.notifier import sign
from services.notifier.render import REPEAT

WECOM_KEY = "wecom-key-6f1d2c3b"
DING_TOKEN = "ding-token-9a8b7c6d"
DING_SECRET = "SECdingsecret0123456789"
FEISHU_TOKEN = "feishu-hook-4e5f6a7b"
FEISHU_SECRET = "feishu-secret-abcdef"
_HOUR_S = 3600

Reply = tuple[int, dict[str, str], dict[str, Any] | None]


def _dingtalk_expected(ts: str) -> str:
    digest = hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _feishu_expected(ts: str) -> str:
    digest = hmac.new(f"{ts}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _without_mark(content: str) -> str:
    lines = [line for line in content.split("\n") if not line.startswith(f"**{REPEAT}**")]
    return "\n".join(lines).replace(f"[{REPEAT}] ", "")


class RobotServer:
    def __init__(self, hold: float = 0.0) -> None:
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.raw: dict[str, list[bytes]] = defaultdict(list)  # accepted request bodies, byte for byte
        self.rejected: dict[str, list[str]] = defaultdict(list)
        self.script: dict[str, list[Reply]] = defaultdict(list)
        self.lock = threading.Lock()
        self.hold = hold
        self.landed = threading.Event()
        self.landed_at = 0.0  # time.monotonic() when the latest request landed
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw) if raw else {}
                platform = ""
                if url.path == "/cgi-bin/webhook/send":
                    platform, reply = "wecom", server._wecom(query, body)
                elif url.path == "/robot/send":
                    platform, reply = "dingtalk", server._dingtalk(query, body)
                elif url.path.startswith("/open-apis/bot/v2/hook/"):
                    platform, reply = "feishu", server._feishu(url.path.rsplit("/", 1)[-1], body)
                else:
                    reply = (404, {}, None)
                if reply[2] and reply[2].get("errcode", reply[2].get("code")) == 0:
                    with server.lock:
                        server.raw[platform].append(raw)
                server.landed_at = time.monotonic()
                server.landed.set()
                time.sleep(server.hold)
                status, headers, payload = reply
                data = json.dumps(payload) if payload is not None else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the sender died while we held its request

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    # --- the platforms -------------------------------------------------------------------------------
    def _scripted(self, platform: str) -> Reply | None:
        with self.lock:
            return self.script[platform].pop(0) if self.script[platform] else None

    def _reject(self, platform: str, why: str, reply: Reply) -> Reply:
        self.rejected[platform].append(why)
        return reply

    def _wecom(self, query: dict[str, list[str]], body: dict[str, Any]) -> Reply:
        if query.get("key") != [WECOM_KEY]:
            return self._reject(
                "wecom", "key", (200, {}, {"errcode": 93000, "errmsg": "invalid webhook url"})
            )
        content = body.get("markdown", {}).get("content", "")
        if body.get("msgtype") != "markdown" or not content or len(content.encode()) > 4096:
            return self._reject(
                "wecom", "format", (200, {}, {"errcode": 40008, "errmsg": "invalid message type"})
            )
        scripted = self._scripted("wecom")
        if scripted:
            return scripted
        self.received["wecom"].append(body)
        return 200, {}, {"errcode": 0, "errmsg": "ok"}

    def _dingtalk(self, query: dict[str, list[str]], body: dict[str, Any]) -> Reply:
        if query.get("access_token") != [DING_TOKEN]:
            return self._reject(
                "dingtalk", "token", (200, {}, {"errcode": 300001, "errmsg": "token is not exist"})
            )
        ts, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
        fresh = ts.isdigit() and abs(time.time() * 1000 - int(ts)) < _HOUR_S * 1000
        # parse_qs has already URL-decoded sign: an unencoded '+' would have become a space and fail here.
        if not fresh or not hmac.compare_digest(sign, _dingtalk_expected(ts)):
            return self._reject(
                "dingtalk", "sign", (200, {}, {"errcode": 310000, "errmsg": "sign not match"})
            )
        kind = body.get("msgtype")
        ok = (kind == "markdown" and body["markdown"].get("title") and body["markdown"].get("text")) or (
            kind == "actionCard" and body["actionCard"].get("singleURL") and body["actionCard"].get("text")
        )
        if not ok:
            return self._reject(
                "dingtalk", "format", (200, {}, {"errcode": 40035, "errmsg": "缺少参数 json"})
            )
        scripted = self._scripted("dingtalk")
        if scripted:
            return scripted
        self.received["dingtalk"].append(body)
        return 200, {}, {"errcode": 0, "errmsg": "ok"}

    def _feishu(self, token: str, body: dict[str, Any]) -> Reply:
        if token != FEISHU_TOKEN:
            return self._reject(
                "feishu",
                "token",
                (404, {}, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}),
            )
        ts, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < _HOUR_S
        if not fresh or not hmac.compare_digest(sign, _feishu_expected(ts)):
            msg = "sign match fail or timestamp is not within one hour from current time"
            return self._reject("feishu", "sign", (200, {}, {"code": 19021, "msg": msg}))
        card = body.get("card", {})
        if body.get("msg_type") != "interactive" or not card.get("header") or not card.get("elements"):
            return self._reject("feishu", "format", (200, {}, {"code": 9499, "msg": "Bad Request"}))
        scripted = self._scripted("feishu")
        if scripted:
            return scripted
        self.received["feishu"].append(body)
        return 200, {}, {"code": 0, "msg": "success", "data": {}}

    # --- what people saw ------------------------------------------------------------------------------
    def contents(self, platform: str = "wecom") -> list[str]:
        """The markdown of every message the robot accepted, in order (WeCom)."""
        with self.lock:
            return [json.loads(raw)["markdown"]["content"] for raw in self.raw[platform]]

    def silent_repeats(self, platform: str = "wecom") -> list[str]:
        """Messages shown twice without the possible-repeat mark: the duplicates people would act on twice."""
        unmarked = Counter(c for c in self.contents(platform) if REPEAT not in c)
        return [c[:80] for c, n in unmarked.items() if n > 1]

    def marked(self, platform: str = "wecom") -> list[str]:
        """Messages sent again after a crash, marked 可能重复 (possible repeat), without the mark."""
        return [_without_mark(c) for c in self.contents(platform) if REPEAT in c]

    # --- urls ----------------------------------------------------------------------------------------
    def wecom_url(self, key: str = WECOM_KEY) -> str:
        return f"{self.base}/cgi-bin/webhook/send?key={key}"

    def dingtalk_url(self, token: str = DING_TOKEN) -> str:
        return f"{self.base}/robot/send?access_token={token}"

    def feishu_url(self, token: str = FEISHU_TOKEN) -> str:
        return f"{self.base}/open-apis/bot/v2/hook/{token}"

    def __enter__(self) -> RobotServer:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class HookServer:
    """A webhook receiver as the docs ask one to be: it checks the signature and keeps the idempotency key
    (X-Yuqing-Event-Id) of every alert it accepted, so a copy sent again is answered 200 and dropped.

    `receipts` holds every accepted request (key, exact body bytes), `alerts` the first copy of each key."""

    def __init__(self, secret: str, hold: float = 0.0) -> None:
        self.secret = secret.encode()
        self.hold = hold
        self.receipts: list[tuple[str, bytes]] = []
        self.alerts: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.landed = threading.Event()
        self.landed_at = 0.0  # time.monotonic() when the latest request landed
        self.lock = threading.Lock()
        hook = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ts = self.headers.get("X-Yuqing-Timestamp", "")
                if not hmac.compare_digest(
                    "sha256=" + sign(hook.secret, ts, body), self.headers.get("X-Yuqing-Signature", "")
                ):
                    hook.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                key = self.headers.get("X-Yuqing-Event-Id", "")
                with hook.lock:
                    seen = any(k == key for k, _ in hook.receipts)
                    hook.receipts.append((key, body))
                    if not seen:
                        hook.alerts.append(json.loads(body))
                hook.landed_at = time.monotonic()
                hook.landed.set()
                time.sleep(hook.hold)
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    pass  # the sender died while we held its request

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def repeats(self) -> int:
        """Copies dropped by the idempotency key: accepted requests minus distinct keys."""
        with self.lock:
            return len(self.receipts) - len({k for k, _ in self.receipts})

    def keys_with_different_bodies(self) -> list[str]:
        """Keys that arrived with different bytes: the key would then hide a different alert."""
        with self.lock:
            bodies: dict[str, set[bytes]] = defaultdict(set)
            for k, b in self.receipts:
                bodies[k].add(b)
        return [k for k, b in bodies.items() if len(b) > 1]

    def copies(self) -> Counter[str]:
        with self.lock:
            return Counter(k for k, _ in self.receipts)

    def keys_under_several_ids(self) -> list[str]:
        """Dedup keys that arrived under more than one idempotency key: the receiver keeps both, so on-call
        staff would see that alert twice. What the receiver really shows twice."""
        ids: dict[str, set[str]] = defaultdict(set)
        for a in list(self.alerts):
            ids[a["dedup_key"]].add(a["event_id"])
        return [k for k, v in ids.items() if len(v) > 1]

    def __enter__(self) -> HookServer:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
