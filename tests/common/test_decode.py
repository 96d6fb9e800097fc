"""decode() takes pydantic's JSON parser first and the long way when it refuses: the reasons a dead letter
carries must be those of the long way, and nothing the long way refuses may get through the short one."""

from __future__ import annotations

import json as stdlib_json

import orjson
import pytest

from schemas.events import Delivery, DeliveryOutcome, KeywordHit, Post
from services.common import json
from services.common.exceptions import DeadLetter
from services.common.stream import MAX_VALUE_BYTES, decode
from tests.factories import T0, hit

HIT = json.dumps(hit("p1", 10))


def _reason(model: type, raw: bytes | None) -> str:
    with pytest.raises(DeadLetter) as caught:
        decode(model, raw)
    return caught.value.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"{not json", "invalid_json"),
        (HIT.replace(b'"sentiment":-0.8', b'"sentiment":NaN'), "invalid_json"),
        (HIT.replace(b'"excerpt":"', b'"excerpt":"\\ud800'), "invalid_json"),  # a lone surrogate
        (HIT.replace("星河".encode(), b"\xff\xfe"), "invalid_json"),  # not UTF-8
        (b"\xef\xbb\xbf" + HIT, "invalid_json"),  # a byte order mark
        (b"[1, 2]", "invalid_schema"),
        (HIT.replace(b'"schema_version":1', b'"schema_version":2'), "unsupported_schema_version"),
        (HIT.replace(b'"group":"xinghe"', b'"group":7'), "invalid_schema"),
        (b" " * (MAX_VALUE_BYTES + 1), "too_large"),  # refused before parsing, valid JSON or not
        (HIT[:-1] + b" " * MAX_VALUE_BYTES + b"}", "too_large"),
    ],
)
def test_refusals_carry_the_precise_reason(raw: bytes | None, reason: str) -> None:
    assert _reason(KeywordHit, raw) == reason


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_an_unbounded_float_refuses_what_is_not_json(number: bytes) -> None:
    # Delivery.latency_seconds has no bounds: only allow_inf_nan=False keeps pydantic's parser from taking
    # what orjson refuses.
    ok = Delivery(
        event_time=T0,
        alert_id="a",
        dedup_key="d",
        channel="c",
        outcome=DeliveryOutcome.delivered,
        attempt=1,
        latency_seconds=1.5,
    )
    raw = json.dumps(ok).replace(b'"latency_seconds":1.5', b'"latency_seconds":' + number)
    assert raw != json.dumps(ok)
    assert _reason(Delivery, raw) == "invalid_json"


def test_a_valid_event_decodes_as_the_long_way_builds_it() -> None:
    assert decode(KeywordHit, HIT) == KeywordHit.model_validate(orjson.loads(HIT))


def test_events_are_written_as_model_dump_and_orjson_write_them() -> None:
    post = Post(event_time=T0, platform="weibo", post_id="p", text="星河 ＡＢ😀", published_at=T0)
    for event in [hit("p1", 10), post]:
        assert json.dumps(event) == orjson.dumps(
            event.model_dump(mode="json"), option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
        )


def test_the_largest_valid_post_is_not_too_large() -> None:
    """Every field at its longest, every character \\u-escaped (an emoji as a surrogate pair, 12 bytes)."""
    emoji = "\U0001f525"
    post = {
        "platform": "weibo",
        "post_id": emoji * 128,
        "root_post_id": emoji * 128,
        "text": emoji * 20_000,
        "author": emoji * 256,
        "url": "https://example.com/" + emoji * 2000,
        "published_at": "2026-11-24T08:00:00+08:00",
        "event_time": "2026-11-24T08:00:00+08:00",
        "engagement": {"reposts": 10**12, "comments": 10**12, "likes": 10**12},
    }
    raw = stdlib_json.dumps(post, ensure_ascii=True).encode()  # orjson never escapes: the stdlib can
    assert len(raw) > 270_000
    assert decode(Post, raw).text == emoji * 20_000
