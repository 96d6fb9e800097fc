"""Channels against real local receivers: a robot server that checks signatures as WeCom, DingTalk and
Feishu do, and an SMTP server (aiosmtpd) that demands STARTTLS and AUTH. No mock of httpx or of SMTP."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from schemas.events import Alert, AlertKind, Tier
from services.cli.demo import WebhookReceiver
from services.common.alerttext import POST_LABEL
from services.common.broker import free_port
from services.common.clock import FakeClock
from services.common.config import ChannelConfig, EscalationConfig, NotifierConfig
from services.escalation.core import EscalationCore
from services.notifier.briefing import build_briefing
from services.notifier.channels import Channel, Outcome, build_channel, retry_after
from services.notifier.core import Dispatcher
from services.notifier.grouping import HitGrouper
from tests import factories
from tests.factories import T0
from tests.notifier.robots import (
    DING_SECRET,
    DING_TOKEN,
    FEISHU_SECRET,
    FEISHU_TOKEN,
    WECOM_KEY,
    HookServer,
    RobotServer,
)

ACK = "https://yuqing.example/ack/inc1?sig=abc123&exp=1795000000"


def alert(tier: Tier = Tier.level1, ack: str | None = ACK) -> Alert:
    return Alert(
        event_time=datetime.now(UTC),
        dedup_key=f"inc1|tier_change|{int(tier)}|x",
        kind=AlertKind.tier_change,
        group="xinghe",
        tier=tier,
        title="[一级] 舆情升级: xinghe",
        body="传播量: 2h: 120,345, 4h: 150,000\n- [weibo] 星河空调起火 避雷 (98,000)",
        incident_id="inc1",
        ack_url=ack,
    )


@pytest.fixture
def robots() -> Iterator[RobotServer]:
    with RobotServer() as server:
        yield server


def channel(kind: str, url: str, secret: str | None = None) -> Channel:
    return build_channel(ChannelConfig(name=kind, type=kind, url=url, secret=secret))


async def test_wecom_markdown_shows_tier_group_counts_top_post_and_ack(robots: RobotServer):
    ch = channel("wecom", robots.wecom_url())
    assert await ch.send(alert()) == Outcome(False, None)
    [body] = robots.received["wecom"]
    content = body["markdown"]["content"]
    for expected in ("一级 Level 1", "xinghe", "2h: 120,345", "星河空调起火", f"]({ACK})"):
        assert expected in content
    await ch.close()


async def test_dingtalk_signs_like_dingtalk_checks_and_sends_an_action_card(robots: RobotServer):
    ch = channel("dingtalk", robots.dingtalk_url(), DING_SECRET)
    for _ in range(5):  # several signatures, so one with '+' or '/' in it must survive URL encoding
        assert await ch.send(alert()) == Outcome(False, None)
    assert robots.rejected["dingtalk"] == []
    card = robots.received["dingtalk"][0]["actionCard"]
    assert card["singleURL"] == ACK
    assert "2h: 120,345" in card["text"]
    assert "一级 Level 1" in card["text"]
    # Nothing to acknowledge: plain markdown.
    assert await ch.send(alert(ack=None)) == Outcome(False, None)
    assert robots.received["dingtalk"][-1]["msgtype"] == "markdown"
    await ch.close()


async def test_feishu_signs_like_feishu_checks_and_sends_a_card_coloured_by_tier(robots: RobotServer):
    ch = channel("feishu", robots.feishu_url(), FEISHU_SECRET)
    assert await ch.send(alert(Tier.level1)) == Outcome(False, None)
    assert await ch.send(alert(Tier.level3)) == Outcome(False, None)
    assert robots.rejected["feishu"] == []
    red, yellow = robots.received["feishu"]
    assert red["card"]["header"]["template"] == "red"
    assert yellow["card"]["header"]["template"] == "yellow"
    fields = red["card"]["elements"][0]["fields"]
    assert "**等级 Tier**\n一级 Level 1" in [f["text"]["content"] for f in fields]
    assert "**规则组 Group**\nxinghe" in [f["text"]["content"] for f in fields]
    [button] = red["card"]["elements"][-1]["actions"]
    assert button["url"] == ACK
    await ch.close()


async def test_a_wrong_secret_or_token_is_permanent_and_never_shows_the_token(robots: RobotServer):
    cases = [
        (channel("dingtalk", robots.dingtalk_url(), "SECwrong"), "errcode 310000", DING_TOKEN),
        (channel("feishu", robots.feishu_url(), "wrong"), "code 19021", FEISHU_TOKEN),
        (channel("wecom", robots.wecom_url("bad-key-1234567")), "errcode 93000", "bad-key-1234567"),
        (
            channel("feishu", robots.feishu_url("no-such-hook-123"), FEISHU_SECRET),
            "HTTP 404",
            "no-such-hook-123",
        ),
    ]
    for ch, expected, token in cases:
        retryable, error, wait = await ch.send(alert())
        assert retryable is False
        assert error is not None
        assert expected in error
        assert token not in error
        assert wait is None
        await ch.close()
    assert robots.rejected == {"dingtalk": ["sign"], "feishu": ["sign", "token"], "wecom": ["key"]}


@pytest.mark.parametrize(
    ("platform", "reply", "retryable", "wait"),
    [
        ("wecom", (200, {}, {"errcode": 45009, "errmsg": "api freq out of limit"}), True, None),
        ("dingtalk", (200, {}, {"errcode": 130101, "errmsg": "send too fast"}), True, None),
        ("feishu", (200, {}, {"code": 9499, "msg": "too many request"}), True, None),
        ("wecom", (429, {"Retry-After": "7"}, None), True, 7.0),
        ("feishu", (429, {"Retry-After": "2"}, {"code": 11232, "msg": "frequency limited"}), True, 2.0),
        ("dingtalk", (500, {}, None), True, None),
        ("wecom", (503, {"Retry-After": "4"}, None), True, 4.0),
        ("dingtalk", (200, {}, {"errcode": 300001, "errmsg": "token is not exist"}), False, None),
        ("wecom", (400, {}, None), False, None),
    ],
)
async def test_platform_answers_are_classified(
    robots: RobotServer, platform: str, reply: Any, retryable: bool, wait: float | None
):
    url = {"wecom": robots.wecom_url(), "dingtalk": robots.dingtalk_url(), "feishu": robots.feishu_url()}
    secret = {"wecom": None, "dingtalk": DING_SECRET, "feishu": FEISHU_SECRET}
    ch = channel(platform, url[platform], secret[platform])
    robots.script[platform].append(reply)
    result = await ch.send(alert())
    assert (result.retryable, result.retry_after) == (retryable, wait)
    assert result.error is not None
    assert str(reply[0]) in result.error
    assert await ch.send(alert()) == Outcome(False, None)  # the next answer is a plain success
    await ch.close()


async def test_the_dispatcher_waits_what_a_real_429_asks_then_delivers(robots: RobotServer):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    robots.script["wecom"] += [
        (429, {"Retry-After": "3"}, None),
        (200, {}, {"errcode": 45009, "errmsg": "x"}),
    ]
    ch = channel("wecom", robots.wecom_url())
    d = Dispatcher({"wecom": ch}, clock=FakeClock(datetime.now(UTC)), sleep=sleep, base_delay=0.01)
    out = await d.dispatch(alert(), {})
    assert [(x.attempt, x.outcome.value) for x in out] == [(1, "retrying"), (2, "retrying"), (3, "delivered")]
    assert waits[0] == 3.0
    assert waits[1] <= 0.02  # errcode 45009 without a Retry-After: plain backoff
    assert len(robots.received["wecom"]) == 1
    await ch.close()


async def test_robot_tokens_never_reach_the_logs(robots: RobotServer, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    chans = [
        channel("wecom", robots.wecom_url()),
        channel("dingtalk", robots.dingtalk_url(), DING_SECRET),
        channel("feishu", robots.feishu_url(), FEISHU_SECRET),
    ]
    robots.script["wecom"].append((500, {}, None))
    for ch in chans:
        await ch.send(alert())
        await ch.close()
    closed = channel("wecom", f"http://127.0.0.1:1/cgi-bin/webhook/send?key={WECOM_KEY}")
    _, error, _ = await closed.send(alert())
    assert error is not None
    assert WECOM_KEY not in error
    await closed.close()
    assert sum(len(v) for v in robots.received.values()) == 2  # the scripted 500 was really answered
    for secret in (WECOM_KEY, DING_TOKEN, DING_SECRET, FEISHU_TOKEN, FEISHU_SECRET):
        assert secret not in caplog.text
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


async def test_generic_webhook_is_signed_and_console_shows_the_ack_link(caplog: pytest.LogCaptureFixture):
    with WebhookReceiver("hook-secret") as receiver:
        hook = channel("webhook", receiver.url, "hook-secret")
        assert await hook.send(alert()) == Outcome(False, None)
        await hook.close()
    assert receiver.bad_signatures == 0
    assert [a["ack_url"] for a in receiver.alerts] == [ACK]
    console = build_channel(ChannelConfig(name="c", type="console"))
    caplog.set_level(logging.WARNING)
    assert await console.send(alert()) == Outcome(False, None)
    assert ACK in caplog.text
    assert "一级 Level 1" in caplog.text


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    assert retry_after("120", now) == 120.0
    assert retry_after("Mon, 23 Nov 2026 01:00:30 GMT", now) == 30.0
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


# --- email -------------------------------------------------------------------------------------------------
class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.logins: list[tuple[str, bool]] = []
        self.fail_with: str | None = None

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.fail_with:
            return self.fail_with
        raw = envelope.original_content or b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.raw = raw
        return "250 OK"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        ok = auth_data.login == b"yuqing" and auth_data.password == b"s3cret"
        self.logins.append((auth_data.login.decode(), session.ssl is not None))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535 itself


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[_Mailbox, int, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    box = _Mailbox()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_tls,
        require_starttls=True,
        auth_require_tls=True,
        auth_required=True,
        authenticator=box.authenticate,
    )
    controller.start()
    try:
        yield box, controller.port, ca_file
    finally:
        controller.stop()


def mail_channel(port: int, ca_file: Path, password: str = "s3cret") -> Channel:  # noqa: S107
    return build_channel(
        ChannelConfig(
            name="mail",
            type="email",
            smtp_host="127.0.0.1",
            smtp_port=port,
            username="yuqing",
            password=password,
            sender="yuqing@example.com",
            recipients=("oncall@example.com", "pr@example.com"),
            ca_file=ca_file,
        )
    )


async def test_email_goes_over_starttls_with_auth_and_an_encoded_chinese_subject(smtp: Any):
    box, port, ca_file = smtp
    ch = mail_channel(port, ca_file)
    assert await ch.send(alert()) == Outcome(False, None)
    assert box.logins == [("yuqing", True)]  # AUTH happened inside TLS
    [msg] = box.messages
    assert msg["Subject"] == "[一级 Level 1] [一级] 舆情升级: xinghe"
    assert b"Subject: =?utf-8?" in box.raw  # RFC 2047, not raw UTF-8 in a header
    assert msg["To"] == "oncall@example.com, pr@example.com"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None
    assert html is not None
    assert ACK in text.get_content()
    assert "2h: 120,345" in text.get_content()
    assert f'href="{ACK.replace("&", "&amp;")}"' in html.get_content()


async def test_email_bad_login_is_permanent_and_a_4xx_is_retried(smtp: Any):
    box, port, ca_file = smtp
    retryable, error, _ = await mail_channel(port, ca_file, password="wrong").send(alert())
    assert (retryable, (error or "")[:8]) == (False, "SMTP 535")
    box.fail_with = "451 4.3.0 try again later"
    retryable, error, _ = await mail_channel(port, ca_file).send(alert())
    assert (retryable, (error or "")[:8]) == (True, "SMTP 451")
    assert box.messages == []


def test_secrets_stay_masked_in_config_and_an_incomplete_email_channel_is_refused():
    cfg = ChannelConfig(
        name="d", type="dingtalk", url=f"https://x/robot/send?access_token={DING_TOKEN}", secret="k"
    )
    assert DING_TOKEN not in repr(cfg)
    assert DING_TOKEN not in str(cfg.model_dump())
    with pytest.raises(ValueError, match="needs smtp_host, recipients"):
        ChannelConfig(name="m", type="email", sender="a@b")
    with pytest.raises(ValueError, match="a feishu channel needs 'url'"):
        ChannelConfig(name="f", type="feishu")


# --- text from the public in every channel ----------------------------------------------------------------
# A post written to look like yuqing's own ack button, with each dialect's other tricks: Feishu's mention
# of everyone, WeCom's mention of a user, coloured text, raw HTML, code, a line break opening a heading.
HOSTILE = (
    "[确认处理 Acknowledge](https://evil.example/phish) <at id=all></at><@zhangsan>"
    '<font color="warning">紧急</font> `x`\n### 已处理 <b>ok</b>'
)
SHOWN = "［确认处理 Acknowledge］（https：//evil．example/phish）"
POST = "https://weibo.com/1/AbC"
FORBIDDEN = ("https://evil", "evil.example", "<at", "<@", "<font", "<b>", "`x`", "### 已处理")
LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]*)\)")


def _hostile_alerts() -> dict[str, Alert]:
    """The excerpt as each producer puts it into an alert: a batch of hits, an incident, a briefing."""
    grouper, rows = HitGrouper(NotifierConfig(group_wait_seconds=0)), dict[str, dict[str, Any]]()
    grouper.add(factories.hit("p1", 120, excerpt=HOSTILE, url=POST), rows, T0, partition=0, offset=7)
    [batch] = grouper.due(rows, T0)
    core = EscalationCore(EscalationConfig(), ack_link=lambda iid, group, now: ACK)
    post = {"post": "weibo:p1", "platform": "weibo", "excerpt": HOSTILE, "spread": 120, "url": POST}
    opened = core.on_tier_change(
        factories.tier_change(Tier.level1, Tier.none, {"2h": 120_345}).model_copy(
            update={"top_posts": (post,)}
        ),
        {},
        T0,
    ).alerts[0]
    slot = datetime(2026, 11, 21, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    row = {"group": "xinghe", "platform": "weibo", "excerpt": HOSTILE, "spread": 120, "url": POST}
    brief = build_briefing(slot, slot - timedelta(hours=5), [], [{**row, "first_seen": T0.isoformat()}], [])
    return {
        "batch": batch.model_copy(update={"ack_url": ACK}),  # batches carry no ack link; check it anyway
        "incident": opened,
        "briefing": brief,
    }


def _only_our_links(text: str) -> None:
    assert SHOWN in text
    for bad in FORBIDDEN:
        assert bad not in text, (bad, text)
    assert {m.groups() for m in LINK.finditer(text)} <= {("确认处理 Acknowledge", ACK), (POST_LABEL, POST)}


@pytest.mark.parametrize("producer", ["batch", "incident", "briefing"])
async def test_post_text_reaches_every_robot_as_text_and_the_only_links_are_ours(
    robots: RobotServer, producer: str
):
    a = _hostile_alerts()[producer]
    chans = [
        channel("wecom", robots.wecom_url()),
        channel("dingtalk", robots.dingtalk_url(), DING_SECRET),
        channel("feishu", robots.feishu_url(), FEISHU_SECRET),
    ]
    for ch in chans:
        assert await ch.send(a) == Outcome(False, None)
        await ch.close()
    # The exact bytes the robots accepted: orjson writes '<', '/' and CJK unescaped, so a link or a tag in
    # the text would be in the bytes as the platform reads them.
    for platform in ("wecom", "dingtalk", "feishu"):
        [raw] = robots.raw[platform]
        assert SHOWN.encode() in raw
        for bad in FORBIDDEN:
            assert bad.encode() not in raw, (platform, bad)
    [wecom] = robots.received["wecom"]
    _only_our_links(wecom["markdown"]["content"])
    [ding] = robots.received["dingtalk"]
    body = ding.get("actionCard") or ding["markdown"]
    _only_our_links(body["text"])
    assert ding.get("actionCard", {}).get("singleURL", ACK) == ACK
    [card] = robots.received["feishu"]
    lark = [e["text"]["content"] for e in card["card"]["elements"] if e.get("tag") == "div" and "text" in e]
    _only_our_links("\n".join(lark))
    buttons = [b["url"] for e in card["card"]["elements"] if e.get("tag") == "action" for b in e["actions"]]
    assert buttons in ([], [ACK])


@pytest.mark.parametrize("producer", ["batch", "incident", "briefing"])
async def test_post_text_reaches_a_webhook_and_the_console_as_text(
    producer: str, caplog: pytest.LogCaptureFixture
):
    a = _hostile_alerts()[producer]
    with HookServer("hook-secret") as hook:
        ch = channel("webhook", hook.url, "hook-secret")
        assert await ch.send(a) == Outcome(False, None)
        await ch.close()
    [(_, raw)] = hook.receipts
    assert SHOWN.encode() in raw
    for bad in FORBIDDEN:
        assert bad.encode() not in raw, bad
    caplog.set_level(logging.WARNING)
    assert await build_channel(ChannelConfig(name="c", type="console")).send(a) == Outcome(False, None)
    _only_our_links(caplog.text)


@pytest.mark.parametrize("producer", ["batch", "incident", "briefing"])
async def test_post_text_reaches_a_mailbox_as_text_and_html_escapes_it(smtp: Any, producer: str):
    box, port, ca_file = smtp
    a = _hostile_alerts()[producer]
    assert await mail_channel(port, ca_file).send(a) == Outcome(False, None)
    [msg] = box.messages
    text, page = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None
    assert page is not None
    _only_our_links(text.get_content())
    html_text = page.get_content()
    assert SHOWN in html_text
    assert re.findall(r'href="([^"]*)"', html_text) == ([ACK.replace("&", "&amp;")] if a.ack_url else [])
    for bad in ("<at", "<@", "<font", "<b>", "https://evil", "evil.example"):
        assert bad not in html_text
