"""The ingest API without a broker: size limits, time bounds, spoofed ids, per-item metrics, partial acks,
and the start-up rules for auth. A fake producer stands in for Kafka where a produce is reached."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from schemas.events import Post
from services.common import json, producer
from services.common.exceptions import ConfigError
from services.common.settings import load_settings
from services.ingest.api import create_app
from services.ingest.batch import Body, normalised, to_posts
from services.ingest.settings import IngestSettings
from tests.ingest.test_adapters import sample

NOW = datetime.now(UTC)
POST = {
    "platform": "weibo",
    "post_id": "4890123456",
    "text": "避雷星河冰箱，质量问题太多",
    "published_at": (NOW - timedelta(hours=1)).isoformat(),
    "engagement": {"reposts": 3, "comments": 4, "likes": 5},
}
AUTH = {"Authorization": "Bearer tok-i-0123456789ab"}


class FakeProducer:
    """Acks every send except those whose post_id starts with 'fail'."""

    sent: list[bytes]

    def __init__(self, **_: Any) -> None:
        self.sent = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_and_wait(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append(value)

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if json.loads(value)["post_id"].startswith("fail"):
            future.set_exception(TimeoutError("no ack from the broker"))
        else:
            self.sent.append(value)
            future.set_result(None)
        return future


def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP service's Kafka (services/common/producer.py), faked: a producer that acks (post ids starting
    'fail' time out), and topic creation that succeeds, so the background connect is done before the first
    request."""

    async def topics_exist(*_: Any, **__: Any) -> list[str]:
        return []

    monkeypatch.setattr(producer, "AIOKafkaProducer", FakeProducer)
    monkeypatch.setattr(producer, "ensure_topics", topics_exist)


def settings(**overrides: Any) -> IngestSettings:
    return IngestSettings(
        ingest_tokens=("tok-i-0123456789ab",),
        max_body_bytes=4000,
        **overrides,
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def client(registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    fake_kafka(monkeypatch)
    with TestClient(create_app(settings(), registry)) as c:
        yield c


def rejected(registry: CollectorRegistry, platform: str, reason: str) -> float:
    value = registry.get_sample_value("yuqing_posts_rejected_total", {"platform": platform, "reason": reason})
    return value or 0.0


# --- body size ------------------------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_before_reading(client, registry):
    resp = client.post(
        "/v1/posts", content=b"{}", headers={**AUTH, "Content-Length": "999999", "Content-Type": "x"}
    )
    assert resp.status_code == 413
    assert resp.json()["detail"] == "body is 999999 bytes; the limit is 4000"
    assert rejected(registry, "unknown", "too_large") == 1


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(client, registry):
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(100):
            yield json.dumps(POST) + b","

    resp = client.post("/v1/platforms/weibo/posts", content=chunks(), headers=AUTH)
    assert resp.status_code == 413
    assert "over 4000 bytes" in resp.json()["detail"]
    assert rejected(registry, "weibo", "too_large") == 1


def test_a_malformed_content_length_is_a_400(client):
    resp = client.post("/v1/posts", content=b"{}", headers={**AUTH, "Content-Length": "12abc"})
    assert resp.status_code in (400, 413)  # the server may refuse it before the app sees it


def test_too_many_items_count_one_rejection_per_item_and_platform(registry, monkeypatch):
    fake_kafka(monkeypatch)
    with TestClient(create_app(settings(max_items=2), registry)) as c:
        items = [{**POST, "post_id": str(i)} for i in range(2)] + [{**POST, "platform": "x"}]
        resp = c.post("/v1/posts", json=items, headers=AUTH)
    assert resp.status_code == 413
    assert rejected(registry, "weibo", "too_many_items") == 2
    assert rejected(registry, "unknown", "too_many_items") == 1


# --- items ----------------------------------------------------------------------------------------


def test_rejections_count_items_not_field_errors_per_platform(client, registry):
    bad = {**POST, "post_id": "", "text": ""}  # two field errors, one item
    resp = client.post(
        "/v1/posts", json=[bad, {**bad, "platform": "douyin"}, {"platform": "??"}], headers=AUTH
    )
    assert resp.status_code == 422
    assert len(resp.json()["detail"]) > 3
    assert rejected(registry, "weibo", "invalid") == 1
    assert rejected(registry, "douyin", "invalid") == 1
    assert rejected(registry, "unknown", "invalid") == 1


def test_a_spoofed_event_id_is_refused_naming_event_id(client):
    resp = client.post("/v1/posts", json={**POST, "event_id": "spoofed"}, headers=AUTH)
    assert resp.status_code == 422
    (error,) = resp.json()["detail"]
    assert error["loc"] == ["body", "event_id"]
    assert "does not match the id derived from platform, post_id, event_time" in error["msg"]


def test_the_derived_event_id_is_accepted_and_two_posts_cannot_share_one(client):
    first = Post.model_validate({**POST, "event_time": NOW.isoformat()})
    ok = client.post(
        "/v1/posts", json={**POST, "event_time": NOW.isoformat(), "event_id": first.event_id}, headers=AUTH
    )
    assert ok.status_code == 202, ok.text
    other = {**POST, "post_id": "other", "event_time": NOW.isoformat(), "event_id": first.event_id}
    assert client.post("/v1/posts", json=other, headers=AUTH).status_code == 422


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("event_time", "2099-01-01T00:00:00Z", "in the future"),
        ("published_at", "2099-01-01T00:00:00Z", "in the future"),
        ("published_at", "1970-01-01T00:00:00Z", "before 2000-01-01"),
        ("event_time", "1999-12-31T00:00:00Z", "before 2000-01-01"),
    ],
)
def test_implausible_times_are_refused_naming_the_field(client, field, value, reason):
    resp = client.post("/v1/posts", json={**POST, field: value}, headers=AUTH)
    assert resp.status_code == 422
    (error,) = resp.json()["detail"]
    assert error["loc"] == ["body", field]
    assert reason in error["msg"]


def test_published_after_observed_is_refused():
    resp_json = {**POST, "event_time": (NOW - timedelta(days=2)).isoformat()}
    batch = to_posts(Body([resp_json], single=True), normalised(20_000), NOW)
    assert batch.errors[0]["loc"] == ["body", "published_at"]
    assert "after event_time" in batch.errors[0]["msg"]


def test_native_text_over_the_configured_limit_is_a_per_item_error(registry, monkeypatch):
    fake_kafka(monkeypatch)
    short, long = sample("douyin"), sample("douyin")
    long["desc"] = "投诉" * 40
    with TestClient(create_app(settings(max_text_chars=50), registry)) as c:
        resp = c.post("/v1/platforms/douyin/posts", json=[short, long], headers=AUTH)
    assert resp.status_code == 207
    (error,) = resp.json()["rejected"]
    assert error["loc"] == ["body", 1, "text"]
    assert error["msg"] == "80 characters after removing markup; the limit is 50"


def test_ndjson_errors_carry_their_line_number_and_warnings_ride_on_the_receipt(client):
    payload = sample("bilibili")
    payload["stat"]["view"] = "--"
    body = b"\n".join([json.dumps(payload), b"", b"{oops", json.dumps({"bvid": "BV1"})])
    resp = client.post(
        "/v1/platforms/bilibili/posts", content=body, headers={**AUTH, "Content-Type": "application/x-ndjson"}
    )
    assert resp.status_code == 207
    data = resp.json()
    assert data["accepted"][0]["warnings"][0].startswith("stat.view: expected a count")
    assert [(e["loc"][1], e["line"]) for e in data["rejected"]] == [(1, 3), (2, 4)]


def test_a_partial_ack_is_a_503_that_says_which_posts_kafka_has(client, registry):
    items = [{**POST, "post_id": "ok1"}, {**POST, "post_id": "fail1"}, {**POST, "post_id": "ok2"}]
    resp = client.post("/v1/posts", json=items, headers=AUTH)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    body = resp.json()
    assert [a["index"] for a in body["accepted"]] == [0, 2]
    assert body["not_acknowledged"] == [1]
    assert "2 of 3 valid posts were acknowledged" in body["detail"]
    assert "safe" in body["detail"]
    assert registry.get_sample_value("yuqing_posts_accepted_total", {"platform": "weibo"}) == 2
    assert rejected(registry, "weibo", "kafka_unavailable") == 1


# --- auth at start-up -----------------------------------------------------------------------------


def test_an_open_scope_is_a_loud_warning(caplog, monkeypatch):
    fake_kafka(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="services.ingest.api"):
        create_app(IngestSettings())
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith("AUTH IS OFF for the post routes: YUQING_INGEST_TOKENS is empty")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="services.ingest.api"):
        create_app(IngestSettings(ingest_tokens=("t-0123456789abcdef",)))
    assert not caplog.records


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "api.example.cn", "::"])  # noqa: S104
def test_a_reachable_api_without_tokens_refuses_to_start(host):
    with pytest.raises(ConfigError, match="ingest_tokens is empty") as caught:
        load_settings(IngestSettings, api_host=host)
    assert "YUQING_ALLOW_NO_AUTH" in str(caught.value)
    assert load_settings(IngestSettings, api_host=host, ingest_tokens="t-0123456789abcdef").api_host == host
    assert load_settings(IngestSettings, api_host=host, allow_no_auth=True).allow_no_auth


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.5"])
def test_loopback_without_tokens_starts_for_development(host):
    assert load_settings(IngestSettings, api_host=host).api_host == host
