"""One Alert in each platform's documented message format: tier, rule group, counts, top posts, ack link.

Pure functions from an Alert to a payload; the channels add signing and transport. The body is markdown in
which text from outside is already inert (services/common/alerttext.py); the fields shown beside it (the
group) are made inert here, and the only links are the ack link and fixed-label post links built by yuqing.
"""

from __future__ import annotations

import html
import urllib.parse
from email.message import EmailMessage
from typing import Any

from schemas.events import Alert
from services.common.alerttext import inert

__all__ = ["REPEAT", "dingtalk", "email", "feishu", "plain", "possible_repeat", "tier_label", "wecom"]

REPEAT = "可能重复 (possible repeat)"

_TIER = {0: "无等级", 1: "一级 Level 1", 2: "二级 Level 2", 3: "三级 Level 3"}
# Feishu card header templates: red for a major crisis down to blue for no tier.
_COLOUR = {1: "red", 2: "orange", 3: "yellow", 0: "blue"}
_ACK = "确认处理 Acknowledge"
# WeCom caps markdown content at 4,096 bytes; DingTalk and Feishu allow far more but a page should be short.
_WECOM_BYTES = 4096
_MAX_BYTES = 16_000


def tier_label(alert: Alert) -> str:
    return _TIER[int(alert.tier)]


def possible_repeat(alert: Alert) -> Alert:
    """The alert as people see it when it is sent again after a crash that may have come after its first
    copy reached them: marked in the title and at the top, so that nobody acts on it twice."""
    note = (
        f"**{REPEAT}**: 通知服务在发送时重启，这条消息可能已经收到过，请勿重复处理。"
        "The notifier restarted while sending; this message may have arrived before."
    )
    return alert.model_copy(update={"title": f"[{REPEAT}] {alert.title}", "body": f"{note}\n{alert.body}"})


def _line(text: str) -> str:
    """A title on one line: a line break in it would start markdown of its own."""
    return " ".join(text.split())


def _link(url: str | None) -> str | None:
    """The ack link for markdown `[label](url)`: http(s) only, and percent-encoded wherever a character could
    end the link or open a tag."""
    if not url or urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        return None
    return urllib.parse.quote(url, safe="/:?#%=&+,;-._~")


def _facts(alert: Alert) -> list[tuple[str, str]]:
    facts = [
        ("等级 Tier", tier_label(alert)),
        ("规则组 Group", inert(alert.group, 64)),
        ("类型 Kind", alert.kind.value),
    ]
    if alert.hit_count:
        facts.append(("命中 Hits", f"{alert.hit_count:,}"))
    if alert.incident_id:
        facts.append(("事件 Incident", alert.incident_id))
    return facts


def _cut(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 20].decode(errors="ignore") + "\n…(truncated)"


def markdown(alert: Alert, limit: int = _MAX_BYTES) -> str:
    """The common markdown: title, facts, the alert's body (counts and top posts), then the ack link."""
    head = [f"### {_line(alert.title)}", *(f"> **{k}**: {v}" for k, v in _facts(alert)), ""]
    ack = _link(alert.ack_url)
    tail = ["", f"[{_ACK}]({ack})"] if ack else []
    room = limit - len("\n".join([*head, *tail]).encode()) - 2
    return "\n".join([*head, _cut(alert.body, room), *tail])


def plain(alert: Alert) -> str:
    lines = [alert.title, *(f"{k}: {v}" for k, v in _facts(alert)), "", alert.body]
    if alert.ack_url:
        lines += ["", f"{_ACK}: {alert.ack_url}"]
    return "\n".join(lines)


def wecom(alert: Alert) -> dict[str, Any]:
    """企业微信群机器人 markdown message."""
    return {"msgtype": "markdown", "markdown": {"content": markdown(alert, _WECOM_BYTES)}}


def dingtalk(alert: Alert) -> dict[str, Any]:
    """钉钉机器人: an actionCard whose button is the ack link, or markdown when there is nothing to ack."""
    text = markdown(alert.model_copy(update={"ack_url": None}))
    ack = _link(alert.ack_url)
    if ack:
        return {
            "msgtype": "actionCard",
            "actionCard": {
                "title": _line(alert.title),
                "text": text,
                "btnOrientation": "0",
                "singleTitle": _ACK,
                "singleURL": ack,
            },
        }
    return {"msgtype": "markdown", "markdown": {"title": _line(alert.title), "text": text}}


def feishu(alert: Alert) -> dict[str, Any]:
    """飞书 custom bot interactive card: header coloured by tier, fields, the body, an ack button."""
    elements: list[dict[str, Any]] = [
        {
            "tag": "div",
            "fields": [
                {"is_short": True, "text": {"tag": "lark_md", "content": f"**{k}**\n{v}"}}
                for k, v in _facts(alert)
            ],
        },
        {"tag": "hr"},
        {"tag": "div", "text": {"tag": "lark_md", "content": _cut(alert.body, _MAX_BYTES)}},
    ]
    ack = _link(alert.ack_url)
    if ack:
        elements.append(
            {
                "tag": "action",
                "actions": [
                    {
                        "tag": "button",
                        "text": {"tag": "plain_text", "content": _ACK},
                        "type": "danger" if int(alert.tier) == 1 else "primary",
                        "url": ack,
                    }
                ],
            }
        )
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "template": _COLOUR[int(alert.tier)],
                "title": {"tag": "plain_text", "content": _line(alert.title)},
            },
            "elements": elements,
        },
    }


def email(alert: Alert, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """Text and HTML parts; EmailMessage encodes the Chinese subject (RFC 2047) and bodies as UTF-8."""
    msg = EmailMessage()
    msg["Subject"] = f"[{tier_label(alert)}] {_line(alert.title)}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["X-Yuqing-Dedup-Key"] = alert.dedup_key
    msg.set_content(plain(alert))
    rows = "".join(
        f"<tr><th align=left>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _facts(alert)
    )
    link = _link(alert.ack_url)
    ack = f'<p><a href="{html.escape(link, quote=True)}">{_ACK}</a></p>' if link else ""
    msg.add_alternative(
        f"<html><body><h3>{html.escape(alert.title)}</h3><table>{rows}</table>"
        f"<pre>{html.escape(alert.body)}</pre>{ack}</body></html>",
        subtype="html",
    )
    return msg
