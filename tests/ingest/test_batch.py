"""Request bodies to posts without a broker: observation times per request and per item, strict counts on
normalised posts, and repeated keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.common import json
from services.ingest.batch import Body, native, normalised, observed_time, parse_body, to_posts
from services.ingest.timeparse import TimeBounds

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
CRAWLED = datetime(2026, 11, 22, 6, 30, tzinfo=UTC)
POST = {
    "platform": "weibo",
    "post_id": "4890123456",
    "text": "避雷星河冰箱，质量问题太多",
    "published_at": "2026-11-21T10:00:00+08:00",
    "engagement": {"reposts": 3, "comments": 4, "likes": 5},
}
DOUYIN = json.loads((Path(__file__).parent / "payloads" / "douyin.json").read_bytes())


def test_the_request_observation_time_is_every_item_event_time_unless_the_item_has_its_own():
    own = {**POST, "post_id": "2", "event_time": "2026-11-22T07:00:00Z"}
    batch = to_posts(Body([POST, own], single=False), normalised(20_000), NOW, CRAWLED)
    assert [p.event_time for _, p in batch.posts] == [CRAWLED, datetime(2026, 11, 22, 7, 0, tzinfo=UTC)]
    native_batch = to_posts(Body([DOUYIN], single=True), native("douyin"), NOW, CRAWLED)
    assert native_batch.posts[0][1].event_time == CRAWLED
    assert to_posts(Body([DOUYIN], single=True), native("douyin"), NOW).posts[0][1].event_time == NOW


def test_a_native_item_carries_its_own_crawl_time_in_an_envelope():
    items = [
        {"observed_at": "2026-11-22T14:00:00+08:00", "payload": DOUYIN},
        {"payload": DOUYIN},
        DOUYIN,
    ]
    batch = to_posts(Body(items, single=False), native("douyin"), NOW, CRAWLED)
    assert batch.errors == []
    own = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    assert [p.event_time for _, p in batch.posts] == [own, CRAWLED, CRAWLED]
    # Two crawl times, two snapshots: the one read twice at the same time has one event id (counts once).
    assert len({p.event_id for _, p in batch.posts}) == 2


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2099-01-01T00:00:00Z", "in the future"),
        ("1970-01-02T00:00:00Z", "before 2000-01-01"),
        ("5分钟前", "unrecognised time"),
        ("soon", "unrecognised time"),
        (True, "expected a time"),
    ],
)
def test_an_implausible_crawl_time_is_refused_naming_the_field(value, reason):
    batch = to_posts(Body([{"observed_at": value, "payload": DOUYIN}], single=True), native("douyin"), NOW)
    assert batch.posts == []
    assert batch.errors[0]["loc"] == ["body", "observed_at"]
    assert reason in batch.errors[0]["msg"]
    with pytest.raises(Exception, match=reason):
        observed_time(value, NOW, TimeBounds(), "observed_at")


def test_a_publish_time_after_the_crawl_time_is_refused():
    early = NOW - timedelta(days=2)  # before the sample's publish time
    batch = to_posts(Body([DOUYIN], single=True), native("douyin"), NOW, early)
    assert batch.errors[0]["loc"] == ["body", "create_time"]
    assert "in the future" in batch.errors[0]["msg"]


def test_an_error_inside_an_envelope_names_the_payload_path():
    bad = {**DOUYIN, "create_time": "soon"}
    batch = to_posts(Body([{"payload": bad}], single=True), native("douyin"), NOW)
    assert batch.errors[0]["loc"] == ["body", "payload", "create_time"]


@pytest.mark.parametrize("count", ["5", 5.0, True])
def test_a_normalised_count_that_is_not_an_integer_is_refused(count):
    item = {**POST, "engagement": {"reposts": 3, "comments": 4, "likes": count}}
    batch = to_posts(Body([item], single=True), normalised(20_000), NOW)
    assert batch.posts == []
    assert batch.errors[0]["loc"] == ["body", "engagement", "likes"]
    assert batch.errors[0]["msg"] == "Input should be a valid integer"


def test_a_normalised_count_may_be_null_for_unknown_and_a_native_string_count_is_still_parsed():
    item = {**POST, "engagement": {"reposts": None, "comments": 4, "likes": 5}}
    post = to_posts(Body([item], single=True), normalised(20_000), NOW).posts[0][1]
    assert post.engagement.unknown == {"reposts"}
    payload = {**DOUYIN, "statistics": {**DOUYIN["statistics"], "digg_count": "5.8万"}}
    assert to_posts(Body([payload], single=True), native("douyin"), NOW).posts[0][1].engagement.likes == 58000


def test_a_repeated_key_in_a_body_or_an_ndjson_line_is_refused_naming_it():
    with pytest.raises(json.JSONDecodeError, match="duplicate key 'likes'"):
        parse_body(b'{"engagement": {"likes": 5, "likes": 500000}}', "application/json")
    body = parse_body(json.dumps(POST) + b'\n{"a": 1, "a": 2}\n', "application/x-ndjson")
    batch = to_posts(body, normalised(20_000), NOW)
    assert [i for i, _ in batch.posts] == [0]
    assert batch.errors == [
        {
            "loc": ["body", 1],
            "msg": "invalid JSON: duplicate key 'a' in one object; send each key once",
            "type": "json_invalid",
            "line": 2,
        }
    ]
