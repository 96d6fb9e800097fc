"""The operator API's statement and 回访 actions and the incident list's filters, over an in-process
escalation core (tests/desk.py); test_operator.py covers the same routes over a real producer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schemas.events import IncidentActionKind, Tier
from tests.desk.world import APPROVER, DRAFTER, TOKEN, Desk

A = IncidentActionKind


@pytest.fixture
def desk() -> Desk:
    return Desk()


@pytest.fixture
def api(desk: Desk) -> Iterator[TestClient]:
    with TestClient(desk.app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def act(api: TestClient, iid: str, **body: Any) -> tuple[int, Any]:
    resp = api.post(f"/v1/incidents/{iid}/actions", json=body)
    return resp.status_code, resp.json()


def test_the_statement_goes_through_review_over_the_api(desk, api):
    iid = desk.open()
    status, answer = act(api, iid, action="statement_published", actor=DRAFTER)
    assert status == 409
    assert "publishing needs a statement approved by the leadership group" in answer["detail"]
    assert act(api, iid, action="statement_drafted", actor=DRAFTER, text="我司高度重视。")[0] == 202
    assert desk.sent[-1].text == "我司高度重视。"
    assert act(api, iid, action="statement_submitted", actor=DRAFTER, version=1)[0] == 202
    status, answer = act(api, iid, action="statement_approved", actor="值班 张三", version=1)
    assert status == 409
    assert "'值班 张三' is not an approver" in answer["detail"]
    status, answer = act(api, iid, action="statement_approved", actor=DRAFTER, version=1)
    assert (status, "is not an approver" in answer["detail"]) == (409, True)
    assert act(api, iid, action="statement_approved", actor=APPROVER, version=1)[0] == 202
    assert act(api, iid, action="statement_published", actor=DRAFTER, comment="官微")[0] == 202
    assert desk.state(iid) == "statement_published"
    detail = api.get(f"/v1/incidents/{iid}").json()
    [version] = detail["statement"]
    assert (version["status"], version["reviewed_by"], version["text"]) == (
        "published",
        APPROVER,
        "我司高度重视。",
    )
    assert detail["statement"]
    assert all("statement" not in e for e in detail["timeline"])  # once, not on every event
    assert [e["action"] for e in detail["timeline"][-4:]] == [
        "statement_drafted",
        "statement_submitted",
        "statement_approved",
        "statement_published",
    ]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"action": "statement_drafted"}, "text", "statement_drafted needs text"),
        ({"action": "ack", "text": "x"}, "text", "text is only for statement_drafted, not ack"),
        ({"action": "statement_approved"}, "version", "statement_approved needs version"),
        ({"action": "ack", "version": 1}, "version", "version is only for"),
        ({"action": "follow_up_added"}, "follow_up", "follow_up_added needs follow_up"),
        ({"action": "follow_up_outcome", "outcome": "done"}, "item_id", "follow_up_outcome needs item_id"),
        ({"action": "follow_up_outcome", "item_id": "0123456789ab", "outcome": "maybe"}, "outcome", "Input"),
        ({"action": "statement_drafted", "text": "长" * 5001}, "text", "at most 5000 characters"),
    ],
)
def test_fields_that_do_not_fit_the_action_are_422_naming_the_field(desk, api, body, field, message):
    iid = desk.open()
    status, answer = act(api, iid, actor=DRAFTER, **body)
    assert status == 422
    [error] = answer["detail"]
    assert error["loc"][:2] == ["body", field]
    assert message in error["msg"]
    assert desk.sent == []


def test_a_follow_up_item_is_named_in_the_answer_and_blocks_resolve(desk, api):
    iid = desk.open()
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    item = {"target": "微博用户 @小王", "post": "weibo:wb1", "owner": "客服 李四", "due_at": due}
    status, answer = act(api, iid, action="follow_up_added", actor="客服 李四", follow_up=item)
    assert status == 202
    [listed] = api.get(f"/v1/incidents/{iid}").json()["follow_ups"]
    assert listed["item_id"] == answer["item_id"]
    assert (listed["owner"], listed["outcome"]) == ("客服 李四", None)
    status, answer = act(api, iid, action="resolve", actor="a", comment="")
    assert status == 409
    status, answer = act(api, iid, action="resolve", actor="a", comment="override: 误报")
    assert status == 202  # overridden with a reason
    naive = {**item, "due_at": "2026-11-21T10:00:00"}
    status, answer = act(api, iid, action="follow_up_added", actor="a", follow_up=naive)
    assert (status, answer["detail"][0]["loc"]) == (422, ["body", "follow_up", "due_at"])


def test_the_incident_list_filters_and_pages(desk, api):
    for i in range(7):
        desk.open(tier=(Tier.level1, Tier.level3)[i % 2], group=f"g{i}")
    listing = api.get("/v1/incidents", params={"limit": 3}).json()
    assert (listing["total"], listing["offset"], len(listing["items"])) == (7, 0, 3)
    assert len(api.get("/v1/incidents", params={"offset": 6}).json()["items"]) == 1
    assert api.get("/v1/incidents", params={"tier": 1}).json()["total"] == 4
    assert [i["group"] for i in api.get("/v1/incidents", params={"group": "g2"}).json()["items"]] == ["g2"]
    assert api.get("/v1/incidents", params={"state": "open"}).json()["total"] == 7
    assert api.get("/v1/incidents", params={"state": "closed"}).json()["total"] == 0
    first = api.get("/v1/incidents", params={"group": "g0"}).json()["items"][0]
    assert (first["statement"], first["follow_ups"]) == (None, {"total": 0, "open": 0})
    for bad in ({"state": "lost"}, {"tier": 5}, {"limit": 0}):
        assert api.get("/v1/incidents", params=bad).status_code == 422
