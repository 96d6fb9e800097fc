"""The console's statement review and 回访 pages, over an in-process escalation core (tests/desk.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from schemas.events import IncidentActionKind, Tier
from services.desk import console as console_module
from tests.desk.world import APPROVER, DRAFTER, OTHER_APPROVER, TOKEN, Desk, desk_config

A = IncidentActionKind
TOP = (
    {
        "post": "weibo:wb1",
        "platform": "weibo",
        "spread": 40_000,
        "excerpt": "星河空调起火，客服不理",
        "url": None,
    },
    {"post": "douyin:dy2", "platform": "douyin", "spread": 9_000, "excerpt": "避雷星河", "url": None},
)


# Two days ahead, as the form takes it (Asia/Shanghai, to the minute).
DUE = (
    (datetime.now(UTC) + timedelta(days=2))
    .astimezone(ZoneInfo("Asia/Shanghai"))
    .replace(second=0, microsecond=0)
)
DUE_FORM = DUE.strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def desk() -> Desk:
    return Desk()


def client_for(desk: Desk, actor: str) -> TestClient:
    client = TestClient(desk.app, follow_redirects=False)
    resp = client.post("/console/login", data={"actor": actor, "token": TOKEN})
    assert resp.status_code == 303, resp.text
    return client


@pytest.fixture
def drafter(desk: Desk) -> Iterator[TestClient]:
    with client_for(desk, DRAFTER) as c:
        yield c


@pytest.fixture
def approver(desk: Desk) -> Iterator[TestClient]:
    with client_for(desk, APPROVER) as c:
        yield c


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def ops(page: str) -> dict[str, bool]:
    """The statement buttons on a page: op -> enabled."""
    return {op: "disabled" not in attrs for op, attrs in re.findall(r'name="op" value="(\w+)"([^>]*)>', page)}


def statement(client: TestClient, iid: str, **form: str) -> tuple[int, str]:
    page = client.get(f"/console/incidents/{iid}/statement").text
    resp = client.post(f"/console/incidents/{iid}/statement", data={"csrf": csrf_of(page), **form})
    return resp.status_code, resp.headers.get("location", "") or resp.text


def test_draft_submit_approve_publish_with_two_logins(desk, drafter, approver):
    iid = desk.open()
    page = drafter.get(f"/console/incidents/{iid}/statement")
    assert page.status_code == 200
    assert "尚无声明" in page.text
    assert ops(page.text) == {"draft": True}

    assert statement(drafter, iid, op="draft", text="我司高度重视，正在核查。") == (
        303,
        f"/console/incidents/{iid}/statement?sent=statement_drafted",
    )
    assert ops(drafter.get(f"/console/incidents/{iid}/statement").text) == {"draft": True, "submit": True}
    assert statement(drafter, iid, op="submit", version="1")[0] == 303
    waiting = drafter.get(f"/console/incidents/{iid}/statement").text
    assert "第 1 版等待领导小组审核（审核人：总经理 赵六、法务负责人 周八）" in waiting
    assert "approve" not in ops(waiting)  # only approvers see the review buttons

    review = approver.get(f"/console/incidents/{iid}/statement").text
    assert ops(review) == {"draft": True, "approve": True, "return": True}
    assert statement(approver, iid, op="approve", version="1", comment="同意")[0] == 303
    assert desk.state(iid) == "opened"  # approved, not yet out

    assert ops(drafter.get(f"/console/incidents/{iid}/statement").text)["publish"]
    assert statement(drafter, iid, op="publish", version="1", comment="官微发布")[0] == 303
    assert desk.state(iid) == "statement_published"
    done = drafter.get(f"/console/incidents/{iid}/statement").text
    assert 'data-statement-status="published"' in done
    assert f"批准 {APPROVER}" in done
    assert f"发布 {DRAFTER}" in done
    assert [a.action for a in desk.sent] == [
        A.statement_drafted,
        A.statement_submitted,
        A.statement_approved,
        A.statement_published,
    ]
    incident = drafter.get(f"/console/incidents/{iid}").text
    assert "第 1 版 · 已发布" in incident


def test_an_approver_cannot_approve_their_own_draft(desk, approver):
    iid = desk.open()
    statement(approver, iid, op="draft", text="总经理亲拟")
    statement(approver, iid, op="submit", version="1")
    page = approver.get(f"/console/incidents/{iid}/statement").text
    assert ops(page) == {"draft": True, "approve": False, "return": True}
    assert "drafted version 1 and may not approve it too" in page
    status, body = statement(approver, iid, op="approve", version="1")
    assert status == 409
    assert "allow_self_approval is false" in body
    with client_for(desk, OTHER_APPROVER) as other:
        assert statement(other, iid, op="approve", version="1")[0] == 303
    assert desk.model.incident(iid)[-1].statement[-1].reviewed_by == OTHER_APPROVER


def test_self_approval_when_configured():
    desk = Desk(desk_config(allow_self_approval=True))
    iid = desk.open()
    with client_for(desk, APPROVER) as approver:
        statement(approver, iid, op="draft", text="总经理亲拟")
        statement(approver, iid, op="submit", version="1")
        assert statement(approver, iid, op="approve", version="1")[0] == 303


def test_a_return_needs_a_comment_and_the_next_version_shows_a_character_diff(desk, drafter, approver):
    iid = desk.open()
    statement(drafter, iid, op="draft", text="我司高度重视，正在核查。\n感谢关注。")
    statement(drafter, iid, op="submit", version="1")
    status, body = statement(approver, iid, op="return", version="1")
    assert status == 409
    assert "needs a comment saying what to change" in body
    assert statement(approver, iid, op="return", version="1", comment="补充召回批次")[0] == 303
    statement(drafter, iid, op="draft", text="我司高度重视，已召回 2026-08 批次。\n感谢关注。")
    page = drafter.get(f"/console/incidents/{iid}/statement").text
    assert "最新修改：第 1 版 → 第 2 版" in page
    diff = page.split('<div class="diff" lang="zh-CN">')[1].split("</div>")[0]
    assert diff == "我司高度重视，<del>正在核查</del><ins>已召回 2026-08 批次</ins>。\n感谢关注。"
    assert "审核意见：补充召回批次" in page
    # Any two versions on request, outside the live part.
    compare = drafter.get(f"/console/incidents/{iid}/statement", params={"a": "2", "b": "1"}).text
    assert "第 2 版 → 第 1 版" in compare


def test_statement_text_and_comments_are_escaped(desk, drafter, approver, monkeypatch):
    monkeypatch.setattr(console_module, "_STREAM_SECONDS", 0.0)
    iid = desk.open()
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    statement(drafter, iid, op="draft", text=f"声明 {evil}")
    statement(drafter, iid, op="submit", version="1")
    statement(approver, iid, op="return", version="1", comment=evil)
    statement(drafter, iid, op="draft", text=f"声明 {evil} 改")
    for page in (
        drafter.get(f"/console/incidents/{iid}/statement").text,
        drafter.get("/console/events", params={"view": "statement", "id": iid}).text,
    ):
        assert "<script>" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_refused_statement_actions_keep_the_typed_text_and_send_nothing(desk, drafter):
    iid = desk.open()
    status, body = statement(drafter, iid, op="publish")
    assert status == 409
    assert "publishing needs a statement approved by the leadership group" in body
    long = statement(drafter, iid, op="draft", text="长" * 5001)
    assert long[0] == 422
    assert "长" * 100 in long[1]  # the typed text is still in the editor
    assert statement(drafter, iid, op="dance")[0] == 422
    page = drafter.get(f"/console/incidents/{iid}/statement").text
    no_csrf = drafter.post(f"/console/incidents/{iid}/statement", data={"op": "draft", "text": "x"})
    assert no_csrf.status_code == 403
    wrong = drafter.post(
        f"/console/incidents/{iid}/statement", data={"op": "draft", "text": "x", "csrf": csrf_of(page)[::-1]}
    )
    assert wrong.status_code == 403
    assert desk.sent == []
    assert drafter.get("/console/incidents/nope/statement").status_code == 404


def test_statement_pages_need_a_session(desk):
    iid = desk.open()
    with TestClient(desk.app, follow_redirects=False) as anonymous:
        for path in (f"/console/incidents/{iid}/statement", f"/console/incidents/{iid}/follow-ups"):
            assert anonymous.get(path).status_code == 303
            assert anonymous.post(path, data={"op": "draft", "text": "x"}).status_code == 303
        assert anonymous.get("/console/events", params={"view": "statement", "id": iid}).status_code == 401
    assert desk.sent == []


# -- 回访 ---------------------------------------------------------------------------------------------------
def follow_ups(client: TestClient, iid: str) -> str:
    return client.get(f"/console/incidents/{iid}/follow-ups").text


def test_follow_ups_from_top_posts_and_by_hand_block_resolve_until_done(desk, drafter, approver):
    iid = desk.open(top_posts=TOP)
    page = follow_ups(drafter, iid)
    assert '<option value="weibo:wb1">[微博] 星河空调起火，客服不理（40,000）</option>' in page
    add = {"csrf": csrf_of(page), "owner": "客服 李四", "due": DUE_FORM}
    resp = drafter.post(
        f"/console/incidents/{iid}/follow-ups", data={**add, "post": "weibo:wb1", "target": ""}
    )
    assert resp.headers["location"] == f"/console/incidents/{iid}/follow-ups?sent=follow_up_added"
    drafter.post(f"/console/incidents/{iid}/follow-ups", data={**add, "target": "电话投诉用户 138****0000"})
    listed = follow_ups(drafter, iid)
    assert "[微博] 星河空调起火，客服不理" in listed
    assert "weibo:wb1" in listed
    assert "共 <strong data-follow-up-total>2</strong> 项" in listed
    items = desk.model.incident(iid)[-1].follow_ups
    assert [i.owner for i in items] == ["客服 李四", "客服 李四"]
    assert items[0].due_at == DUE  # the form's time is Asia/Shanghai

    # The statement out and spread stopped: cooling. Open items still block the close.
    statement(drafter, iid, op="draft", text="致歉")
    statement(drafter, iid, op="submit", version="1")
    statement(approver, iid, op="approve", version="1")
    statement(drafter, iid, op="publish", version="1")
    desk.cool()
    assert desk.state(iid) == "cooling"
    incident = drafter.get(f"/console/incidents/{iid}").text
    resolve = drafter.post(
        f"/console/incidents/{iid}/actions", data={"action": "resolve", "csrf": csrf_of(incident)}
    )
    assert resolve.status_code == 409
    assert "2 open 回访 item(s)" in resolve.text
    for item in items:
        page = follow_ups(drafter, iid)
        done = drafter.post(
            f"/console/incidents/{iid}/follow-ups/{item.item_id}",
            data={"csrf": csrf_of(page), "outcome": "done", "note": "已退款并致歉"},
        )
        assert done.status_code == 303
    assert "已完成 <strong data-follow-up-done>2</strong> 项" in follow_ups(drafter, iid)
    resolve = drafter.post(
        f"/console/incidents/{iid}/actions", data={"action": "resolve", "csrf": csrf_of(incident)}
    )
    assert resolve.status_code == 303
    assert desk.state(iid) == "closed"


def test_bad_follow_up_forms_say_why_and_send_nothing(desk, drafter):
    iid = desk.open(top_posts=TOP)
    csrf = csrf_of(follow_ups(drafter, iid))
    url = f"/console/incidents/{iid}/follow-ups"
    base = {"csrf": csrf, "owner": "客服 李四", "due": DUE_FORM, "target": "用户"}
    not_top = drafter.post(url, data={**base, "post": "weibo:elsewhere"})
    assert not_top.status_code == 422
    assert "不是本事件的主要传播内容" in not_top.text
    assert drafter.post(url, data={**base, "due": "tomorrow"}).status_code == 422
    past = drafter.post(url, data={**base, "due": "2000-01-01T10:00"})
    assert past.status_code == 409
    assert "is not after the action" in past.text
    no_target = drafter.post(url, data={**base, "target": ""})
    assert no_target.status_code == 422
    assert "target" in no_target.text
    evil = drafter.post(url, data={**base, "target": "<script>x</script>", "owner": "<b>o</b>"})
    assert evil.status_code == 303
    listed = follow_ups(drafter, iid)
    assert "&lt;script&gt;x&lt;/script&gt;" in listed
    assert "&lt;b&gt;o&lt;/b&gt;" in listed
    bad_outcome = drafter.post(f"{url}/0123456789ab", data={"csrf": csrf, "outcome": "maybe"})
    assert bad_outcome.status_code == 422
    unknown = drafter.post(f"{url}/0123456789ab", data={"csrf": csrf, "outcome": "done"})
    assert unknown.status_code == 409
    assert drafter.post(url, data={**base, "csrf": ""}).status_code == 403
    assert [a.action for a in desk.sent] == [A.follow_up_added]


# -- the incident list ------------------------------------------------------------------------------------
@pytest.fixture
def many(desk: Desk) -> Desk:
    groups = ["xinghe", "kuaidi"]
    for i in range(45):
        desk.open(tier=(Tier.level1, Tier.level2, Tier.level3)[i % 3], group=f"{groups[i % 2]}-{i}")
    return desk


def test_the_incident_list_pages_and_keeps_its_filters(many, drafter):
    first = drafter.get("/console/incidents").text
    assert "共 <strong data-total>45</strong> 个事件" in first
    assert first.count('<td data-label="事件">') == 20
    assert "第 1 / 3 页" in first
    assert 'href="/console/incidents?page=2" rel="next"' in first
    last = drafter.get("/console/incidents", params={"page": "3"}).text
    assert last.count('<td data-label="事件">') == 5
    level1 = drafter.get("/console/incidents", params={"tier": "1"}).text
    assert "共 <strong data-total>15</strong> 个事件（全部 45 个）" in level1
    assert level1.count("一级 重大</span>") == 15
    group = drafter.get("/console/incidents", params={"group": "kuaidi-1"}).text
    assert "共 <strong data-total>1</strong> 个事件" in group
    assert drafter.get("/console/incidents", params={"state": "closed"}).text.count('data-label="事件"') == 0
    opened = drafter.get("/console/incidents", params={"state": "open", "page": "2"}).text
    assert "共 <strong data-total>45</strong> 个事件，当前第 21–40 个" in opened
    assert 'href="/console/incidents?state=open&amp;page=1" rel="prev"' in opened
    assert 'href="/console/incidents?state=open&amp;page=3" rel="next"' in opened
    assert 'data-live-query="state=open&amp;page=2"' in opened
    assert (
        "共 <strong data-total>15</strong> 个事件"
        in drafter.get("/console/incidents", params={"tier": "2"}).text
    )
    bad = drafter.get("/console/incidents", params={"state": "lost", "tier": "9"})
    assert bad.status_code == 422
    assert "&#39;lost&#39; 不是可选值之一" in bad.text
    assert "tier: &#39;9&#39; 不是可选值之一" in bad.text


def test_the_live_list_follows_its_filter(many, drafter, monkeypatch):
    monkeypatch.setattr(console_module, "_STREAM_SECONDS", 0.0)
    stream = drafter.get("/console/events", params={"view": "incidents", "tier": "3", "page": "1"}).text
    assert stream.count("三级 一般</span>") == 15
    assert "一级 重大</span>" not in stream
