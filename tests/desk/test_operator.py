"""The desk's operator routes over a real broker: tiers, ledger, incidents, actions (409s), report, auth
scopes, and the read model following the topics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from schemas.events import (
    Deadline,
    IncidentAction,
    IncidentEvent,
    IncidentEventKind,
    IncidentState,
    Platform,
    Tier,
    TierChange,
)
from services.common import json
from services.common.kafka import ensure_topics
from services.common.links import sign_link
from services.desk.app import create_app
from services.desk.settings import DeskSettings
from tests.conftest import collect, produce
from tests.factories import T0, hit

pytestmark = pytest.mark.kafka


def incident_event(seq: int, state: IncidentState, tier: Tier = Tier.level2) -> IncidentEvent:
    deadlines = (
        Deadline(name="ack", due_at=T0 + timedelta(minutes=30)),
        Deadline(name="facts_verified", due_at=T0 + timedelta(minutes=60)),
    )
    return IncidentEvent(
        event_time=T0 + timedelta(minutes=seq),
        incident_id="inc1",
        group="xinghe",
        kind=IncidentEventKind.opened if seq == 1 else IncidentEventKind.transitioned,
        state=state,
        tier=tier,
        deadlines=deadlines,
        sequence=seq,
    )


@pytest.fixture
async def settings(kafka: str, prefix: str) -> DeskSettings:
    s = DeskSettings(
        kafka_bootstrap=kafka,
        topic_prefix=prefix,
        partitions=1,
        operator_tokens=("op-token-0123456789",),
        link_secret="k-link-0123456789",
        read_model=False,
    )
    await ensure_topics(s)
    return s


@pytest.fixture
def client(settings: DeskSettings) -> Iterator[TestClient]:
    app = create_app(settings)
    model = app.state.desk.model
    model.apply(hit("a", 500))
    model.apply(hit("b", 9000, platform=Platform.douyin))
    model.apply(hit("c", 7, group="other"))
    model.apply(
        TierChange(
            event_time=T0,
            group="xinghe",
            previous=Tier.none,
            tier=Tier.level2,
            direction="up",
            reason="threshold",
            window_end=T0,
            counts={"2h": 1, "4h": 50_001, "8h": 60_000},
            detected_at=T0,
        )
    )
    model.apply(incident_event(1, IncidentState.opened))
    with TestClient(app, headers={"Authorization": "Bearer op-token-0123456789"}) as c:
        yield c


def test_scopes_are_enforced(client):
    assert (
        client.get("/v1/tiers", headers={"Authorization": "Bearer ing-token-0123456789"}).status_code == 403
    )
    assert client.get("/v1/tiers", headers={"Authorization": ""}).status_code == 401
    # An unauthenticated caller is refused before the query is validated: no schema in a 422.
    assert client.get("/v1/ledger", params={"tier": "x"}, headers={"Authorization": ""}).status_code == 401
    post = {"platform": "weibo", "post_id": "1", "text": "x", "published_at": "2026-11-21T10:00:00+08:00"}
    assert client.post("/v1/posts", json=post).status_code == 404  # posts go to ingest, not to the desk


def test_tier_board(client):
    groups = client.get("/v1/tiers").json()["groups"]
    assert [(g["group"], g["tier"], g["counts"]["4h"]) for g in groups] == [("xinghe", 2, 50_001)]


def test_ledger_filters_and_csv(client):
    items = client.get("/v1/ledger").json()["items"]
    assert {i["post_id"] for i in items} == {"a", "b", "c"}
    assert [
        i["post_id"] for i in client.get("/v1/ledger", params={"platform": "douyin"}).json()["items"]
    ] == ["b"]
    assert {i["post_id"] for i in client.get("/v1/ledger", params={"tier": 2}).json()["items"]} == {"a", "b"}
    assert client.get("/v1/ledger", params={"group": "other"}).json()["total"] == 1
    assert client.get("/v1/ledger", params={"since": "2026-11-21T10:00:00"}).status_code == 422
    csv = client.get("/v1/ledger", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.lstrip("\ufeff").splitlines()
    assert lines[0].startswith("first_seen,last_seen,platform,post_id")
    assert len(lines) == 4
    assert "投诉 b" in csv.text


def test_actions_produce_or_get_409(client, kafka, topics):
    bad = client.post("/v1/incidents/inc1/actions", json={"action": "meeting_convened", "actor": "张三"})
    assert bad.status_code == 409
    assert "level-1" in bad.json()["detail"]
    assert client.post("/v1/incidents/nope/actions", json={"action": "ack", "actor": "a"}).status_code == 404
    assert (
        client.post("/v1/incidents/inc1/actions", json={"action": "dance", "actor": "a"}).status_code == 422
    )
    ok = client.post("/v1/incidents/inc1/actions", json={"action": "ack", "actor": "张三", "comment": "收到"})
    assert ok.status_code == 202
    values = asyncio.run(collect(kafka, topics.incident_actions, lambda v: len(v) >= 1, within=20))
    action = IncidentAction.model_validate_json(values[0])
    assert (action.incident_id, action.group, action.action.value, action.actor) == (
        "inc1",
        "xinghe",
        "ack",
        "张三",
    )


def test_incident_timeline_and_report(client):
    client.app.state.desk.model.apply(incident_event(2, IncidentState.acknowledged))
    detail = client.get("/v1/incidents/inc1").json()
    assert detail["state"] == "acknowledged"
    assert [e["sequence"] for e in detail["timeline"]] == [1, 2]
    md = client.get("/v1/incidents/inc1/report")
    assert md.status_code == 200
    assert "危机复盘报告" in md.text
    assert "facts verified" in md.text
    assert "9,000" in md.text  # the top post by spread
    page = client.get("/v1/incidents/inc1/report", params={"format": "html"})
    assert "<table>" in page.text


def test_expired_link_is_refused(client):
    token = sign_link(
        b"k-link-0123456789",
        "inc1",
        "xinghe",
        "ack",
        datetime.now(UTC) - timedelta(days=2),
        timedelta(hours=1),
    )
    resp = client.get(f"/v1/ack/{token}")
    assert resp.status_code == 403
    assert "expired" in resp.text
    assert client.post(f"/v1/ack/{token}").status_code == 403


def test_a_statement_draft_reaches_the_topic_with_its_text(client, kafka, topics):
    text = "我司高度重视，正在核查。\n<b>不是标记</b>"
    ok = client.post(
        "/v1/incidents/inc1/actions", json={"action": "statement_drafted", "actor": "王五", "text": text}
    )
    assert ok.status_code == 202, ok.text
    values = asyncio.run(collect(kafka, topics.incident_actions, lambda v: len(v) >= 1, within=20))
    action = IncidentAction.model_validate_json(values[0])
    assert (action.action.value, action.actor, action.text, action.version) == (
        "statement_drafted",
        "王五",
        text,
        None,
    )
    assert action.event_id == ok.json()["event_id"]


def test_a_tier_override_reaches_its_topic(client, kafka, topics):
    ok = client.post("/v1/tiers/xinghe/override", json={"tier": 1, "actor": "张三", "comment": "媒体跟进"})
    assert ok.status_code == 202, ok.text
    values = asyncio.run(collect(kafka, topics.tier_overrides, lambda v: len(v) >= 1, within=20))
    assert [json.loads(v)["event_id"] for v in values] == [ok.json()["event_id"]]


async def test_the_read_model_follows_the_topics_and_readiness_waits_for_it(settings, topics):
    hits = [hit(str(i), 100 * i) for i in range(1, 41)]
    await produce(settings.kafka_bootstrap, topics.keyword_hits, [(b"xinghe", json.dumps(h)) for h in hits])
    app = create_app(settings.model_copy(update={"read_model": True}))
    headers = {"Authorization": "Bearer op-token-0123456789"}
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://desk", headers=headers
        )
        async with client:
            for _ in range(100):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.2)
            # Ready means caught up: every hit on the topic when the desk started is in the ledger.
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/v1/ledger")).json()["total"] == 40
            await produce(
                settings.kafka_bootstrap, topics.keyword_hits, [(b"xinghe", json.dumps(hit("new", 5)))]
            )
            for _ in range(100):
                if (await client.get("/v1/ledger")).json()["total"] == 41:
                    break
                await asyncio.sleep(0.1)
            assert (await client.get("/v1/ledger")).json()["total"] == 41
