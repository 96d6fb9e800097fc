"""The console without a broker: login and sessions, CSRF, escaping, ledger filters and pages, live events."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from schemas.events import (
    Engagement,
    IncidentAction,
    IncidentActionKind,
    IncidentState,
    Platform,
    Tier,
    TierOverride,
)
from services.common.config import load_config
from services.desk import console as console_module
from services.desk.console import Sessions
from services.desk.readmodel import ReadModel
from tests.desk.world import TOKEN, desk_app
from tests.factories import (
    T0,
    assert_csv_neutralised,
    formula_hits,
    hit,
    incident_event,
    tier_change,
)


class Console:
    def __init__(self) -> None:
        self.sent: list[IncidentAction] = []
        self.app = desk_app(load_config(), self)
        self.model: ReadModel = self.app.state.desk.model

    async def action(self, group: str, action: IncidentAction) -> None:
        self.sent.append(action)

    async def override(self, group: str, command: TierOverride) -> None:
        raise AssertionError("the console never overrides tiers")


@pytest.fixture
def console() -> Console:
    c = Console()
    m = c.model
    m.apply(hit("a", 500))
    m.apply(hit("b", 9000, platform=Platform.douyin, demand="quality"))
    m.apply(hit("c", 7, group="other", sentiment=0.5))
    m.apply(tier_change(Tier.level3, Tier.none, {"2h": 5_000, "4h": 9_000, "8h": 12_000}, at=T0))
    m.apply(
        tier_change(
            Tier.level2,
            Tier.level3,
            {"2h": 20_000, "4h": 50_001, "8h": 60_000},
            at=T0 + timedelta(minutes=20),
        )
    )
    m.apply(incident_event(1, IncidentState.opened))
    return c


@pytest.fixture
def client(console: Console) -> Iterator[TestClient]:
    with TestClient(console.app, follow_redirects=False) as c:
        yield c


def login(client: TestClient, actor: str = "张三", token: str = TOKEN, next: str = "") -> TestClient:
    resp = client.post("/console/login", data={"actor": actor, "token": token, "next": next})
    assert resp.status_code == 303, resp.text
    return client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


# -- login, sessions ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/console/board",
        "/console/incidents",
        "/console/incidents/inc1",
        "/console/incidents/inc1/report",
        "/console/ledger?platform=weibo",
        "/console/ledger.csv",
    ],
)
def test_pages_without_a_session_redirect_to_login_and_back(client, path):
    resp = client.get(path)
    assert resp.status_code == 303
    target = urlsplit(resp.headers["location"])
    assert target.path == "/console/login"
    assert parse_qs(target.query)["next"] == [path]


def test_event_stream_and_posts_without_a_session_are_refused(client, console):
    assert client.get("/console/events?view=board").status_code == 401
    resp = client.post("/console/incidents/inc1/actions", data={"action": "ack", "csrf": "x"})
    assert resp.status_code == 303
    assert console.sent == []


def test_bad_token_is_refused_without_a_cookie(client):
    resp = client.post("/console/login", data={"actor": "张三", "token": "op-token-wrong"})
    assert resp.status_code == 403
    assert "令牌无效" in resp.text
    assert "set-cookie" not in resp.headers
    assert client.get("/console/board").status_code == 303


def test_login_needs_a_name(client):
    resp = client.post("/console/login", data={"actor": "  ", "token": TOKEN})
    assert resp.status_code == 403
    assert "请填写姓名" in resp.text


def test_login_sets_a_strict_httponly_cookie_and_returns_to_next(client):
    resp = client.post("/console/login", data={"actor": "张三", "token": TOKEN, "next": "/console/ledger"})
    assert resp.status_code == 303
    assert resp.headers["location"] == "/console/ledger"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith("yuqing-console=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    page = client.get("/console/board")
    assert page.status_code == 200
    assert "张三" in page.text


def test_cookie_is_secure_over_https(console):
    with TestClient(console.app, base_url="https://console.test", follow_redirects=False) as c:
        resp = c.post("/console/login", data={"actor": "李四", "token": TOKEN})
    assert "Secure" in resp.headers["set-cookie"]


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/v1/tiers", "/console/\\evil"]
)
def test_login_never_redirects_off_the_console(client, target):
    resp = client.post("/console/login", data={"actor": "张三", "token": TOKEN, "next": target})
    assert resp.headers["location"] == "/console/board"


def test_logout_needs_csrf_and_ends_the_session(client):
    page = login(client).get("/console/board").text
    assert client.post("/console/logout", data={"csrf": ""}).status_code == 403
    assert client.get("/console/board").status_code == 200
    resp = client.post("/console/logout", data={"csrf": csrf_of(page)})
    assert resp.status_code == 303
    assert 'yuqing-console=""' in resp.headers["set-cookie"]
    assert client.get("/console/board").status_code == 303


def test_a_copied_cookie_stops_working_after_logout(client, console):
    """Logout revokes the session on the server: deleting the cookie alone left a copy valid for 12 h."""
    page = login(client).get("/console/board").text
    copied = client.cookies["yuqing-console"]
    assert client.post("/console/logout", data={"csrf": csrf_of(page)}).status_code == 303
    with TestClient(console.app, follow_redirects=False, cookies={"yuqing-console": copied}) as thief:
        assert thief.get("/console/board").status_code == 303
        assert thief.get("/console/events?view=board").status_code == 401
        assert thief.post("/console/incidents/inc1/actions", data={"action": "ack"}).status_code == 303
    assert console.sent == []
    assert login(client, actor="张三").get("/console/board").status_code == 200  # a new login works


def test_a_revoked_session_is_forgotten_once_it_would_have_expired():
    nonces = iter(["n1", "n2", "n3"])
    sessions = Sessions(["tok-a"], b"secret", max_age=timedelta(hours=1), nonce=lambda: next(nonces))
    cookies = [sessions.issue("tok-a", "王五", T0) for _ in range(3)]
    first, other, last = (sessions.verify(c, T0) for c in cookies)
    assert first is not None
    assert other is not None
    assert last is not None
    sessions.revoke(first, T0)
    assert sessions.verify(cookies[0], T0) is None
    assert sessions.verify(cookies[1], T0) == other  # another session of the same token: unaffected
    sessions.revoke(last, T0 + timedelta(hours=2))  # the first would have expired by then: forgotten
    assert list(sessions._revoked) == ["n3"]


def test_failed_logins_lock_out_the_client_and_the_name(console):
    def attempt(client: TestClient, actor: str, token: str) -> httpx.Response:
        return client.post("/console/login", data={"actor": actor, "token": token})

    with TestClient(console.app, follow_redirects=False, client=("10.0.0.7", 50000)) as one:
        for _ in range(5):
            assert attempt(one, "张三", "op-token-wrong").status_code == 403
        locked = attempt(one, "李四", TOKEN)  # the right token, but this address is locked out
        assert locked.status_code == 429
        assert 800 <= int(locked.headers["retry-after"]) <= 900
        assert "登录失败次数过多，请 15 分钟后再试" in locked.text
        assert "Too many failed logins" in locked.text
        assert "set-cookie" not in locked.headers
    with TestClient(console.app, follow_redirects=False, client=("10.0.0.8", 50000)) as other:
        assert attempt(other, "张三", TOKEN).status_code == 429  # the name is locked from any address
        assert attempt(other, "王五", TOKEN).status_code == 303  # another name from a clean address


def test_sessions_expire_resist_tampering_and_end_with_their_token():
    sessions = Sessions(["tok-a", "tok-b"], b"secret", max_age=timedelta(hours=1), nonce=lambda: "n1")
    cookie = sessions.issue("tok-a", "王五", T0)
    assert cookie is not None
    session = sessions.verify(cookie, T0 + timedelta(minutes=59))
    assert session is not None
    assert (session.actor, session.expires) == ("王五", T0 + timedelta(hours=1))
    assert sessions.bearer(session) == "tok-a"
    assert sessions.verify(cookie, T0 + timedelta(hours=1)) is None
    assert sessions.issue("tok-c", "王五", T0) is None
    expires, nonce, key, actor, mac = cookie.split(".")
    forged_actor = ".".join([expires, nonce, key, "5p2O5Zub", mac])  # "李四", same signature
    assert sessions.verify(forged_actor, T0) is None
    later = ".".join([str(int(expires) + 3600), nonce, key, actor, mac])
    assert sessions.verify(later, T0 + timedelta(hours=1, minutes=30)) is None
    # The same secret without tok-a: sessions issued for it are over.
    assert Sessions(["tok-b"], b"secret").verify(cookie, T0) is None
    assert Sessions(["tok-a"], b"other secret").verify(cookie, T0) is None
    other = Sessions(["tok-a"], b"secret", nonce=lambda: "n2").issue("tok-a", "王五", T0)
    assert sessions.csrf(session) != sessions.csrf(sessions.verify(other, T0))  # type: ignore[arg-type]


def test_without_operator_tokens_any_token_opens_a_session():
    sessions = Sessions([], b"secret")
    cookie = sessions.issue("anything", "dev", T0)
    session = sessions.verify(cookie, T0)
    assert session is not None
    assert sessions.bearer(session) is None
    assert Sessions(["tok-a"], b"secret").verify(cookie, T0) is None


# -- incidents and actions ---------------------------------------------------------------------------
def test_action_without_csrf_is_refused_and_not_sent(client, console):
    login(client)
    resp = client.post("/console/incidents/inc1/actions", data={"action": "ack", "comment": "收到"})
    assert resp.status_code == 403
    assert "CSRF" in resp.text
    wrong = client.post("/console/incidents/inc1/actions", data={"action": "ack", "csrf": "A" * 43})
    assert wrong.status_code == 403
    assert console.sent == []


def test_ack_button_publishes_an_action_signed_by_the_session(client, console):
    page = login(client, actor="张三").get("/console/incidents/inc1")
    assert page.status_code == 200
    buttons = dict(re.findall(r'<button type="submit" name="action" value="(\w+)"([^>]*)>', page.text))
    assert set(buttons) == {"ack", "meeting_convened", "verified", "statement_published", "resolve"}
    assert "disabled" in buttons["meeting_convened"]  # level 2: verify facts, no emergency meeting
    assert "disabled" not in buttons["ack"]
    data = {"action": "ack", "comment": "已收到，核实中", "csrf": csrf_of(page.text)}
    resp = client.post("/console/incidents/inc1/actions", data=data)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/console/incidents/inc1?sent=ack"
    [action] = console.sent
    assert (action.incident_id, action.group, action.action) == ("inc1", "xinghe", IncidentActionKind.ack)
    assert (action.actor, action.comment) == ("张三", "已收到，核实中")
    assert "已提交「确认收到」" in client.get(resp.headers["location"]).text


def test_refused_transitions_and_bad_forms_show_why_and_send_nothing(client, console):
    csrf = csrf_of(login(client).get("/console/incidents/inc1").text)
    meeting = client.post(
        "/console/incidents/inc1/actions",
        data={"action": "meeting_convened", "comment": "留言", "csrf": csrf},
    )
    assert meeting.status_code == 409
    assert "level-1" in meeting.text
    assert ">留言</textarea>" in meeting.text  # the typed comment survives the refusal
    dance = client.post("/console/incidents/inc1/actions", data={"action": "dance", "csrf": csrf})
    assert dance.status_code == 422
    assert "action" in dance.text
    long = client.post(
        "/console/incidents/inc1/actions", data={"action": "ack", "comment": "长" * 4001, "csrf": csrf}
    )
    assert long.status_code == 422
    missing = client.post("/console/incidents/nope/actions", data={"action": "ack", "csrf": csrf})
    assert missing.status_code == 404
    json_body = client.post("/console/incidents/inc1/actions", json={"action": "ack", "csrf": csrf})
    assert json_body.status_code == 415
    assert console.sent == []


def test_incident_pages_show_state_deadlines_and_timeline(client, console):
    console.model.apply(incident_event(2, IncidentState.acknowledged, actor="张三", detail="ack: 已收到"))
    login(client)
    listing = client.get("/console/incidents").text
    assert "已确认" in listing
    assert 'data-due="2026-11-21T02:30:00Z"' in listing
    assert 'data-due="2026-11-21T03:00:00Z"' in listing
    detail = client.get("/console/incidents/inc1").text
    assert detail.index("ack: 已收到") < detail.index('class="kind kind-opened"')  # newest first
    allowed = re.search(r'data-allowed="([^"]*)"', detail)
    assert allowed is not None
    # resolve is offered before the closing review: with a comment "override: why" it is accepted; the
    # statement cannot be published before a version is approved
    assert allowed.group(1).split() == ["verified", "resolve"]
    assert client.get("/console/incidents/nope").status_code == 404


def test_resolve_before_closing_review_needs_an_override_comment(client, console):
    console.model.apply(incident_event(2, IncidentState.acknowledged))
    login(client)
    csrf = csrf_of(client.get("/console/incidents/inc1").text)
    refused = client.post(
        "/console/incidents/inc1/actions", data={"action": "resolve", "comment": "", "csrf": csrf}
    )
    assert refused.status_code == 409
    assert "override" in refused.text
    assert console.sent == []
    accepted = client.post(
        "/console/incidents/inc1/actions",
        data={"action": "resolve", "comment": "override: 误报，非本品牌", "csrf": csrf},
    )
    assert accepted.status_code == 303
    assert [a.action for a in console.sent] == [IncidentActionKind.resolve]


def test_superseded_deadline_is_not_a_countdown(client, console):
    event = incident_event(2, IncidentState.acknowledged)
    verified = next(d for d in event.deadlines if d.name == "facts_verified")
    superseded = verified.model_copy(update={"superseded_at": T0 + timedelta(minutes=5)})
    deadlines = tuple(superseded if d is verified else d for d in event.deadlines)
    console.model.apply(event.model_copy(update={"deadlines": deadlines}))
    login(client)
    page = client.get("/console/incidents/inc1").text
    assert "已取消（被新的时限取代）" in page
    assert 'data-due="2026-11-21T03:00:00Z"' not in page  # the facts deadline no longer counts down


def test_report_is_the_report_route_embedded(client):
    login(client)
    page = client.get("/console/incidents/inc1/report")
    assert page.status_code == 200
    assert 'src="/console/incidents/inc1/report.html"' in page.text
    report = client.get("/console/incidents/inc1/report.html")
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert "inc1" in report.text
    assert "frame-ancestors 'self'" in report.headers["content-security-policy"]


# -- escaping ----------------------------------------------------------------------------------------
def test_hostile_text_is_escaped_everywhere(client, console):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    console.model.apply(hit("evil", 10, excerpt=f"星河 {evil}", url="javascript:alert(1)"))
    console.model.apply(tier_change(Tier.level3, Tier.none, {"8h": 11_000}, group='"><svg onload=alert(1)>'))
    login(client, actor="<b>mallory</b>")
    ledger = client.get("/console/ledger").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in ledger
    assert "<script>alert" not in ledger
    assert "javascript:" not in ledger
    assert "&lt;b&gt;mallory&lt;/b&gt;" in ledger
    board = client.get("/console/board").text
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;" in board
    assert "<svg onload" not in board
    assert "script-src 'self'" in client.get("/console/board").headers["content-security-policy"]


# -- ledger ------------------------------------------------------------------------------------------
def test_ledger_pages_through_rows_and_keeps_the_filters(client, console):
    for i in range(120):
        console.model.apply(hit(f"p{i:03}", 100 + i, platform=Platform.zhihu, at=T0 + timedelta(seconds=i)))
    login(client)
    first = client.get("/console/ledger", params={"platform": "zhihu"}).text
    assert first.count(">知乎</td>") == 50
    assert "第 1 / 3 页" in first
    assert 'rel="prev"' not in first
    assert '<a href="/console/ledger?platform=zhihu&amp;page=2" rel="next">' in first
    last = client.get("/console/ledger", params={"platform": "zhihu", "page": "3"}).text
    assert last.count(">知乎</td>") == 20
    assert "第 101–120 条" in last
    assert 'rel="next"' not in last
    assert "星河空调投诉 p000" in last  # newest first: the oldest row is on the last page
    beyond = client.get("/console/ledger", params={"platform": "zhihu", "page": "99"}).text
    assert "第 3 / 3 页" in beyond
    assert "第 1 / 1 页" in client.get("/console/ledger", params={"page": "-2", "group": "other"}).text


def test_a_count_the_platform_never_reported_shows_as_unknown_not_zero(client, console):
    unknown = hit("u1", 0).model_copy(
        update={"cumulative": Engagement.model_validate({"reposts": 40, "comments": None, "likes": 2})}
    )
    console.model.apply(unknown)
    login(client)
    page = client.get("/console/ledger", params={"group": "xinghe"}).text
    assert "转 40 · 评 — · 赞 2" in page
    rows = list(csv.DictReader(io.StringIO(client.get("/console/ledger.csv").text.lstrip("\ufeff"))))
    row = next(r for r in rows if r["post_id"] == "u1")
    assert (row["reposts"], row["comments"], row["likes"], row["spread"]) == ("40", "", "2", "42")


def test_ledger_filters_read_local_time_and_reject_bad_values(client):
    login(client)

    def total(**params: str) -> int:
        page = client.get("/console/ledger", params=params)
        return int(re.search(r"<strong data-total>(\d+)</strong>", page.text).group(1))  # type: ignore[union-attr]

    assert total() == 3
    assert total(platform="douyin") == 1
    assert total(sentiment="positive") == 1
    assert total(demand="quality") == 1
    assert total(group="other") == 1
    # Hits are at 10:00 Asia/Shanghai (02:00 UTC); the form's times are local.
    assert total(since="2026-11-21T09:59") == 3
    assert total(since="2026-11-21T10:01") == 0
    assert total(until="2026-11-21T09:59") == 0
    bad = client.get("/console/ledger", params={"since": "yesterday", "platform": "myspace"})
    assert bad.status_code == 422
    assert "时间格式应为" in bad.text
    assert "&#39;myspace&#39; 不是可选值之一" in bad.text


def test_csv_export_uses_the_filters_and_keeps_chinese_text(client):
    login(client)
    page = client.get("/console/ledger", params={"platform": "douyin"}).text
    assert 'href="/console/ledger.csv?platform=douyin"' in page
    resp = client.get("/console/ledger.csv", params={"platform": "douyin"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["content-disposition"] == 'attachment; filename="ledger.csv"'
    lines = resp.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("first_seen,last_seen,platform,post_id,group,tier")
    assert len(lines) == 2
    assert ",douyin,b,xinghe,2," in lines[1]
    assert "星河空调投诉 b" in lines[1]
    assert client.get("/console/ledger.csv", params={"sentiment": "angry"}).status_code == 422


def test_csv_export_neutralises_formulas_from_post_text(console, client):
    for h in formula_hits():
        console.model.apply(h)
    login(client)
    resp = client.get("/console/ledger.csv")
    assert resp.status_code == 200
    assert_csv_neutralised(resp.content)


# -- tier board and live events ---------------------------------------------------------------------
def test_board_shows_every_group_with_counts_thresholds_and_history(client):
    login(client)
    board = client.get("/console/board").text
    cards = re.findall(r'data-announce="([^"]+)"', board)
    assert cards == ["xinghe：二级 较大"]  # "other" has hits but no tier: it is not a configured group
    assert '<td class="num" data-window="4h">50,001</td>' in board
    assert "&gt; 50,000 → 二级" in board
    assert 'aria-label="8h 传播量历史：12,000 → 60,000"' in board
    assert 'circle cx="117.0" cy="3.0"' in board  # the last point: right edge, top


def test_event_stream_pushes_the_fragment_only_when_it_changed(client, console, monkeypatch):
    monkeypatch.setattr(console_module, "_STREAM_SECONDS", 0.0)
    login(client)
    page = client.get("/console/board").text
    version = re.search(r'data-version="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    unchanged = client.get("/console/events", params={"view": "board", "v": version})
    assert unchanged.headers["content-type"].startswith("text/event-stream")
    assert unchanged.text == "retry: 2000\n\n"
    console.model.apply(tier_change(Tier.level1, Tier.level2, {"2h": 120_000}, at=T0 + timedelta(minutes=40)))
    changed = client.get("/console/events", params={"view": "board", "v": version})
    event, event_id, *data = changed.text.split("\n\n")[1].split("\n")
    assert event == "event: fragment"
    assert event_id.startswith("id: ")
    assert event_id != f"id: {version}"
    html = "\n".join(line.removeprefix("data: ") for line in data)
    assert 'data-announce="xinghe：一级 重大"' in html
    # A reconnecting browser sends the last id it saw: nothing new, nothing sent.
    again = client.get("/console/events", params={"view": "board"}, headers={"Last-Event-ID": event_id[4:]})
    assert again.text == "retry: 2000\n\n"
    assert client.get("/console/events", params={"view": "incident", "id": "nope"}).status_code == 404


def test_static_files_are_served_from_the_package(client):
    css = client.get("/console/static/console.css")
    assert css.status_code == 200
    assert "@media (max-width: 700px)" in css.text
    assert "EventSource" in client.get("/console/static/console.js").text


def test_deadlines_show_countdown_only_while_open(client, console):
    late = incident_event(2, IncidentState.acknowledged, actor="张三")
    met_late = late.deadlines[0].model_copy(
        update={"breached_at": T0 + timedelta(minutes=30), "met_at": T0 + timedelta(minutes=41)}
    )
    console.model.apply(late.model_copy(update={"deadlines": (met_late, late.deadlines[1])}))
    login(client)
    detail = client.get("/console/incidents/inc1").text
    assert "超时后完成 11-21 10:41" in detail  # late, and no longer counting
    assert 'data-due="2026-11-21T02:30:00Z"' not in detail
    assert 'data-due="2026-11-21T03:00:00Z" data-status="pending"' in detail
