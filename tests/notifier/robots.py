"""A local HTTP server that plays WeCom, DingTalk and Feishu robots, checking what each platform checks.

It verifies the access token, the signature and its timestamp window exactly as the platforms document them,
and the message format, answering with the platform's own error codes. Scripted replies (429 with
Retry-After, 500, an errcode) can be queued per platform.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import urllib.parse
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.common import json

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


class RobotServer:
    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.rejected: dict[str, list[str]] = defaultdict(list)
        self.script: dict[str, list[Reply]] = defaultdict(list)
        self.lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw) if raw else {}
                if url.path == "/cgi-bin/webhook/send":
                    reply = server._wecom(query, body)
                elif url.path == "/robot/send":
                    reply = server._dingtalk(query, body)
                elif url.path.startswith("/open-apis/bot/v2/hook/"):
                    reply = server._feishu(url.path.rsplit("/", 1)[-1], body)
                else:
                    reply = (404, {}, None)
                status, headers, payload = reply
                data = json.dumps(payload) if payload is not None else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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
