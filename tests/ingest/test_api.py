"""The ingest API against a real Kafka: validation, auth, limits and what lands on the topic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from schemas.events import Post
from services.common import json
from services.common.kafka import ensure_topics
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import collect

pytestmark = pytest.mark.kafka

POST = {
    "platform": "weibo",
    "post_id": "4890123456",
    "text": "避雷星河冰箱，质量问题太多",
    "published_at": "2026-11-21T10:00:00+08:00",
    "engagement": {"reposts": 3, "comments": 4, "likes": 5},
}


@pytest.fixture
async def settings(kafka: str, prefix: str) -> IngestSettings:
    s = IngestSettings(
        kafka_bootstrap=kafka,
        topic_prefix=prefix,
        partitions=1,
        ingest_tokens=("tok-1",),
        max_body_bytes=20_000,
    )
    await ensure_topics(s)
    return s


@pytest.fixture
def client(settings: IngestSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": "Bearer tok-1"}) as c:
        yield c


def test_one_post_is_accepted_and_lands_keyed_by_platform_and_id(client, kafka, topics):
    resp = client.post("/v1/posts", json=POST)
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"][0]["key"] == "weibo:4890123456"
    import asyncio

    values = asyncio.run(collect(kafka, topics.posts_raw, lambda v: len(v) >= 1, within=20))
    post = Post.model_validate_json(values[0])
    assert post.published_at == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    assert post.engagement.total == 12


def test_bad_field_gets_422_naming_the_field(client):
    resp = client.post("/v1/posts", json={**POST, "platform": "weibo2"})
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert detail[0]["loc"] == ["body", "platform"]
    assert "weibo" in detail[0]["msg"]


def test_naive_time_is_refused(client):
    resp = client.post("/v1/posts", json={**POST, "published_at": "2026-11-21T10:00:00"})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "published_at"]


def test_mixed_batch_accepts_good_items_and_reports_bad_ones(client):
    resp = client.post("/v1/posts", json=[POST, {**POST, "post_id": ""}, {**POST, "post_id": "2"}, 7])
    assert resp.status_code == 207
    body = resp.json()
    assert [a["index"] for a in body["accepted"]] == [0, 2]
    assert {tuple(e["loc"][:2]) for e in body["rejected"]} == {("body", 1), ("body", 3)}
    assert body["rejected"][0]["loc"] == ["body", 1, "post_id"]


def test_invalid_json_and_wrong_shapes_are_422_not_500(client):
    for body in (b"{", b"null", b"[1,2]", b'"text"', b"\xff\xfe"):
        resp = client.post("/v1/posts", content=body)
        assert resp.status_code == 422, (body, resp.text)


def test_body_size_limit(client):
    resp = client.post("/v1/posts", json={**POST, "text": "投" * 15_000})
    assert resp.status_code == 413


def test_auth_is_required(settings):
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/posts", json=POST).status_code == 401
        wrong = c.post("/v1/posts", json=POST, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403


def test_health_ready_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.post("/v1/posts", json=POST)
    metrics = client.get("/metrics").text
    assert 'yuqing_posts_accepted_total{platform="weibo"} 1.0' in metrics
    assert "tok-1" not in metrics


async def test_overload_is_shed_with_429_not_timeouts(kafka, prefix):
    """More posts in flight than the limit: some requests get 429 with Retry-After, none time out or 5xx."""
    import asyncio

    import httpx

    settings = IngestSettings(
        kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1, max_inflight_posts=50, read_model=False
    )
    await ensure_topics(settings)
    app = create_app(settings)
    batch = [{**POST, "post_id": f"o{i}"} for i in range(40)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30) as client:
            responses = await asyncio.gather(*[client.post("/v1/posts", json=batch) for _ in range(10)])
    codes = sorted(r.status_code for r in responses)
    assert set(codes) <= {202, 429}
    assert 202 in codes
    assert 429 in codes
    shed = next(r for r in responses if r.status_code == 429)
    assert shed.headers["Retry-After"] == "1"


PAYLOADS = Path(__file__).parent / "payloads"


def test_native_payloads_of_every_platform_land_as_posts(client, kafka, topics):
    """Each platform's own payload, over HTTP and real Kafka, checked field by field against the adapter."""
    import asyncio

    from services.ingest.adapters import adapt

    expected = {}
    for path in sorted(PAYLOADS.glob("*.json")):
        platform = path.stem
        payload = json.loads(path.read_bytes())
        resp = client.post(f"/v1/platforms/{platform}/posts", content=path.read_bytes())
        assert resp.status_code == 202, (platform, resp.text)
        expected[resp.json()["accepted"][0]["key"]] = adapt(platform, payload, datetime.now(UTC))
    assert len(expected) == 8
    values = asyncio.run(collect(kafka, topics.posts_raw, lambda v: len(v) >= 8, within=30))
    landed = {p.key: p for p in (Post.model_validate_json(v) for v in values)}
    assert set(landed) == set(expected)
    for key, want in expected.items():
        got = landed[key]
        for field in (
            "platform",
            "post_id",
            "text",
            "author",
            "author_type",
            "url",
            "published_at",
            "root_post_id",
        ):
            assert getattr(got, field) == getattr(want, field), (key, field)
        assert got.engagement == want.engagement, key


def test_unknown_platform_route_names_the_platform(client):
    resp = client.post("/v1/platforms/myspace/posts", json={})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["path", "platform"]


def test_native_payload_errors_name_the_native_field(client):
    resp = client.post("/v1/platforms/weibo/posts", json=[{"id": 1}, {"text": "x"}])
    assert resp.status_code == 422
    for error in resp.json()["detail"]:
        assert error["loc"][:2] in (["body", 0], ["body", 1])
        assert len(error["loc"]) >= 3


def test_ndjson_with_a_bad_line_accepts_the_rest(client):
    lines = [json.dumps({**POST, "post_id": "n1"}), b"{oops", json.dumps({**POST, "post_id": "n2"})]
    resp = client.post(
        "/v1/posts", content=b"\n".join(lines), headers={"Content-Type": "application/x-ndjson"}
    )
    assert resp.status_code == 207
    body = resp.json()
    assert [a["index"] for a in body["accepted"]] == [0, 2]
    assert body["rejected"][0]["loc"] == ["body", 1]
    assert "invalid JSON" in body["rejected"][0]["msg"]


def test_text_length_limit_is_configurable(kafka, prefix):
    import asyncio

    s = IngestSettings(
        kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1, max_text_chars=10, read_model=False
    )
    asyncio.run(ensure_topics(s))
    with TestClient(create_app(s)) as c:
        resp = c.post(
            "/v1/posts", json=[{**POST, "text": "投诉" * 6}, {**POST, "post_id": "ok", "text": "差评"}]
        )
    assert resp.status_code == 207
    assert resp.json()["rejected"][0]["loc"] == ["body", 0, "text"]
    assert "limit is 10" in resp.json()["rejected"][0]["msg"]
