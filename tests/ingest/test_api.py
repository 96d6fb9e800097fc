"""The ingest API against a real Kafka: validation, auth, limits and what lands on the topic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from schemas.events import Post
from services.common import json
from services.common.kafka import ensure_topics
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import collect, write_config

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
        ingest_tokens=("tok-1-0123456789ab",),
        max_body_bytes=20_000,
    )
    await ensure_topics(s)
    return s


@pytest.fixture
def client(settings: IngestSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"Authorization": "Bearer tok-1-0123456789ab"}) as c:
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


def test_an_unknown_publication_time_is_stated_as_null_not_left_out(client):
    """published_at is required but nullable: a sender that does not know it says so; one that forgets
    the field is told."""
    resp = client.post("/v1/posts", json={**POST, "published_at": None})
    assert resp.status_code == 202, resp.text
    missing = {k: v for k, v in POST.items() if k != "published_at"}
    resp = client.post("/v1/posts", json=missing)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "published_at"]


def test_time_outside_the_utc_calendar_is_422_not_500(client):
    for when in ("0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-05:00"):
        resp = client.post("/v1/posts", json={**POST, "published_at": when})
        assert resp.status_code == 422, when
        assert resp.json()["detail"][0]["loc"] == ["body", "published_at"]
        assert "years 1 to 9999" in resp.json()["detail"][0]["msg"]


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
    assert "tok-1-0123456789ab" not in metrics


async def test_overload_is_shed_with_429_not_timeouts(kafka, prefix):
    """More posts in flight than the limit: some requests get 429 with Retry-After, none time out or 5xx."""
    import asyncio

    import httpx

    settings = IngestSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1, max_inflight_posts=50)
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
        expected[resp.json()["accepted"][0]["post"]] = adapt(platform, payload, datetime.now(UTC))
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


def test_crawl_times_per_request_and_per_item_are_the_event_times_and_the_receipt_shows_them(
    client, kafka, topics
):
    """A crawler uploading an hour of work says when it read each post; the receipt shows the time used
    and the real Kafka key (the thread: the sample weibo is a repost, keyed by its root)."""
    import asyncio

    weibo = json.loads((PAYLOADS / "weibo.json").read_bytes())
    crawled = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    item_time = crawled + timedelta(minutes=20)
    body = [weibo, {"observed_at": item_time.isoformat(), "payload": weibo}]
    resp = client.post(
        "/v1/platforms/weibo/posts", params={"observed_at": crawled.isoformat()}, content=json.dumps(body)
    )
    assert resp.status_code == 202, resp.text
    receipts = resp.json()["accepted"]
    assert [r["event_time"] for r in receipts] == [crawled.isoformat(), item_time.isoformat()]
    assert {r["key"] for r in receipts} == {"weibo:5102900011122233"}
    assert {r["post"] for r in receipts} == {"weibo:5102938475610234"}
    values = asyncio.run(collect(kafka, topics.posts_raw, lambda v: len(v) >= 2, within=20))
    assert sorted(Post.model_validate_json(v).event_time for v in values) == [crawled, item_time]

    late = client.post("/v1/posts", params={"observed_at": "2099-01-01T00:00:00Z"}, json=POST)
    assert late.status_code == 422
    assert late.json()["detail"][0]["loc"] == ["query", "observed_at"]
    assert "in the future" in late.json()["detail"][0]["msg"]
    normal = client.post("/v1/posts", params={"observed_at": crawled.isoformat()}, json=POST)
    assert normal.json()["accepted"][0]["event_time"] == crawled.isoformat()


def test_repeated_keys_and_non_integer_counts_are_refused_naming_them(client):
    dup = client.post(
        "/v1/posts",
        content=b'{"platform": "weibo", "post_id": "1", "post_id": "2", "text": "x", '
        b'"published_at": "2026-11-21T10:00:00+08:00"}',
    )
    assert dup.status_code == 422
    assert "duplicate key 'post_id'" in dup.json()["detail"][0]["msg"]
    strict = client.post("/v1/posts", json={**POST, "engagement": {"reposts": "3"}})
    assert strict.status_code == 422
    assert strict.json()["detail"][0]["loc"] == ["body", "engagement", "reposts"]


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

    s = IngestSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1, max_text_chars=10)
    asyncio.run(ensure_topics(s))
    with TestClient(create_app(s)) as c:
        resp = c.post(
            "/v1/posts", json=[{**POST, "text": "投诉" * 6}, {**POST, "post_id": "ok", "text": "差评"}]
        )
    assert resp.status_code == 207
    assert resp.json()["rejected"][0]["loc"] == ["body", 0, "text"]
    assert "limit is 10" in resp.json()["rejected"][0]["msg"]


RSS = (
    '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>财经</title>'
    "<item><title>星河电器遭投诉</title><link>http://news.example/1</link><guid>n1</guid>"
    "<pubDate>Sat, 21 Nov 2026 10:00:00 +0800</pubDate></item></channel></rss>"
).encode()


def test_configured_feeds_are_polled_into_posts(kafka, prefix, tmp_path):
    import asyncio
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Feed(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            self.wfile.write(RSS)

        def log_message(self, *args):
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rss"
        config = write_config(tmp_path / "c.yaml", ingest={"feeds": [{"url": url, "platform": "news"}]})
        s = IngestSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1, config_file=config)
        asyncio.run(ensure_topics(s))
        with TestClient(create_app(s)):
            values = asyncio.run(collect(kafka, f"{prefix}posts.raw", lambda v: len(v) >= 1, within=20))
    finally:
        server.shutdown()
    post = Post.model_validate_json(values[0])
    assert post.platform.value == "news"
    assert "星河电器遭投诉" in post.text
    assert post.engagement.total == 0
    assert post.published_at == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def test_replay_command_streams_a_file(kafka, prefix, tmp_path):
    import asyncio
    import os
    import subprocess
    import sys

    lines = [
        json.dumps({**POST, "post_id": f"r{i}", "event_time": "2026-11-21T10:00:00+08:00"}) for i in range(5)
    ]
    source = tmp_path / "posts.jsonl"
    source.write_bytes(b"\n".join([*lines, b"{broken"]) + b"\n")
    env = {
        **os.environ,
        "YUQING_KAFKA_BOOTSTRAP": kafka,
        "YUQING_TOPIC_PREFIX": prefix,
        "YUQING_PARTITIONS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "replay",
            str(source),
            "--report",
            str(tmp_path / "bad.txt"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sent 5 posts" in proc.stdout
    assert "1 bad lines" in proc.stdout
    assert (tmp_path / "bad.txt").read_text().strip()
    values = asyncio.run(collect(kafka, f"{prefix}posts.raw", lambda v: len(v) >= 5, within=20))
    assert sorted(Post.model_validate_json(v).post_id for v in values) == [f"r{i}" for i in range(5)]
