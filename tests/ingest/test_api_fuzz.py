"""Thousands of malformed bodies at POST /v1/posts over a real Kafka: no 5xx, errors name their field,
and every accepted item lands on the topic exactly once per acceptance."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import json
from services.common.kafka import ensure_topics
from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import collect

pytestmark = pytest.mark.kafka

FIELDS = [
    "platform",
    "post_id",
    "text",
    "author",
    "author_type",
    "url",
    "published_at",
    "root_post_id",
    "engagement",
    "event_time",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
valid_posts = st.fixed_dictionaries(
    {
        "platform": st.sampled_from(
            ["weibo", "douyin", "xiaohongshu", "zhihu", "bilibili", "wechat", "news", "forum"]
        ),
        "post_id": st.text("abcdef0123456789", min_size=1, max_size=12),
        "text": st.text(min_size=1, max_size=60).filter(str.strip),
        "published_at": st.sampled_from(["2026-11-21T10:00:00+08:00", "2026-11-21T02:00:00Z"]),
        "event_time": st.sampled_from(["2026-11-21T10:05:00+08:00", "2026-11-21T02:06:00Z"]),
        "engagement": st.fixed_dictionaries(
            {"reposts": st.integers(0, 10**6), "likes": st.integers(0, 10**6)}
        ),
    }
)


@st.composite
def mutated_posts(draw: st.DrawFn) -> dict[str, Any]:
    post: dict[str, Any] = dict(draw(valid_posts))
    field = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        post.pop(field, None)
    else:
        post[field] = draw(json_values)
    return post


items = st.one_of(valid_posts, mutated_posts(), json_values)
bodies = st.one_of(items, st.lists(items, min_size=1, max_size=5))


@pytest.fixture(scope="module")
def client(kafka: str) -> Iterator[tuple[TestClient, IngestSettings]]:
    # A prefix of this run's own: on a reused broker (YUQING_TEST_BOOTSTRAP) an earlier run's posts would
    # otherwise be counted as duplicates.
    prefix = f"fuzz-api-{os.getpid()}-{int(time.time())}."
    s = IngestSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1)
    asyncio.run(ensure_topics(s))
    with TestClient(create_app(s)) as c:
        yield c, s


ACCEPTED: Counter[str] = Counter()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_malformed_bodies_get_field_errors_never_5xx(client, body):
    c, _ = client
    resp = c.post("/v1/posts", content=json.dumps(body))
    assert resp.status_code in (202, 207, 413, 422), (resp.status_code, resp.text[:300])
    data = resp.json()
    if resp.status_code in (202, 207):
        ACCEPTED.update(a["event_id"] for a in data["accepted"])
        errors = data["rejected"]
    elif resp.status_code == 422:
        errors = data["detail"]
    else:
        errors = []
    many = isinstance(body, list)
    for e in errors:
        assert e["loc"][0] == "body"
        if many:
            assert isinstance(e["loc"][1], int), e  # which item
        assert e["msg"]
    if resp.status_code == 422 and isinstance(body, dict) and set(body) >= {"platform", "post_id"}:
        assert any(len(e["loc"]) >= 2 for e in errors), "a bad post's error names its field"


def test_every_accepted_post_is_on_the_topic_exactly_once_per_acceptance(client, kafka):
    _, s = client
    assert sum(ACCEPTED.values()) > 50, "the fuzz run accepted too few posts to mean anything"
    values = asyncio.run(
        collect(kafka, f"{s.topic_prefix}posts.raw", lambda v: len(v) >= sum(ACCEPTED.values()), within=60)
    )
    on_topic = Counter(json.loads(v)["event_id"] for v in values)
    assert on_topic == ACCEPTED


def test_numbers_beyond_64_bits_are_a_422(client):
    c, _ = client
    resp = c.post("/v1/posts", content=b'{"platform": "weibo", "post_id": 1' + b"0" * 30 + b"}")
    assert resp.status_code == 422
