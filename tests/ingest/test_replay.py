"""Replaying JSONL files onto a real Kafka topic: keys, exactly-once, bad lines, pacing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.events import Post
from services.common import json
from services.common.clock import FakeClock
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings
from services.ingest.replay import ReplayError, parse_line, replay

pytestmark = pytest.mark.kafka

PAYLOADS = Path(__file__).parent / "payloads"
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
async def topic(kafka: str, prefix: str, topics) -> str:
    await ensure_topics(CommonSettings(kafka_bootstrap=kafka, topic_prefix=prefix, partitions=1))
    return str(topics.posts_raw)


def post(post_id: str, *, at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "platform": "weibo",
        "post_id": post_id,
        "text": f"星河冰箱投诉 {post_id}",
        "published_at": "2026-11-21T10:00:00+08:00",
        "engagement": {"reposts": 1, "comments": 2, "likes": 3},
        **extra,
    }
    if at is not None:
        line["event_time"] = at.isoformat()
    return line


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x)) + b"\n" for x in lines))
    return path


async def records(bootstrap: str, topic: str, expected: int, within: float = 30.0) -> list[tuple[str, bytes]]:
    """(key, value) of every record on `topic`; after `expected` arrive, keep reading a little for extras."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=250)
            out.extend((r.key.decode(), r.value) for rs in batch.values() for r in rs)
            if len(out) >= expected:
                deadline = min(deadline, time.monotonic() + 1.5)
    finally:
        await consumer.stop()
    return out


async def test_good_lines_land_once_with_their_keys_and_bad_lines_are_reported(kafka, topic, tmp_path):
    native = json.loads((PAYLOADS / "douyin.json").read_bytes())
    source = write_lines(
        tmp_path / "posts.jsonl",
        [
            post("1001", at=T0),  # line 1
            b"{not json",  # line 2
            post("1002"),  # line 3: no event_time, gets the clock's now
            b"",  # line 4: blank, skipped and not counted
            post("1003", platform="weibo2"),  # line 5
            {"platform": "douyin", "payload": native, "event_time": "2026-11-22T09:00:00+08:00"},  # line 6
            {"platform": "douyin", "payload": {**native, "create_time": "soon"}},  # line 7
            [1, 2],  # line 8
            post("1004", text="   "),  # line 9
        ],
    )
    report = tmp_path / "bad.jsonl"

    result = await replay(
        source, kafka, topic, speed=None, platform=None, report=report, progress=False, clock=FakeClock(NOW)
    )

    assert (result.sent, result.bad) == (3, 5)
    assert result.seconds >= 0
    got = await records(kafka, topic, expected=3)
    assert sorted(k for k, _ in got) == ["douyin:7439012345678901234", "weibo:1001", "weibo:1002"]
    posts = {k: Post.model_validate_json(v) for k, v in got}
    assert posts["weibo:1001"].event_time == T0
    assert posts["weibo:1002"].event_time == NOW
    assert posts["douyin:7439012345678901234"].event_time == datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    assert posts["douyin:7439012345678901234"].engagement.likes == 58200

    bad = [json.loads(line) for line in report.read_bytes().splitlines()]
    assert [b["line"] for b in bad] == [2, 5, 7, 8, 9]
    reasons = {b["line"]: b["reason"] for b in bad}
    assert reasons[2].startswith("invalid JSON")
    assert reasons[5].startswith("platform: ")
    assert reasons[7].startswith("payload.create_time: unrecognised time 'soon'")
    assert reasons[8] == "expected a JSON object, got list"
    assert reasons[9].startswith("text: ")
    assert bad[0]["raw"] == "{not json"


async def test_native_payloads_of_a_given_platform(kafka, topic, tmp_path):
    lines = []
    for i in range(3):
        payload = json.loads((PAYLOADS / "bilibili.json").read_bytes())
        payload["bvid"] = f"BV1test{i}"
        lines.append(payload)
    lines.append({"title": "no id"})
    source = write_lines(tmp_path / "bili.ndjson", lines)

    result = await replay(source, kafka, topic, speed=None, platform="bilibili", report=None, progress=False)

    assert (result.sent, result.bad) == (3, 1)
    got = await records(kafka, topic, expected=3)
    assert sorted(k for k, _ in got) == ["bilibili:BV1test0", "bilibili:BV1test1", "bilibili:BV1test2"]


@pytest.mark.parametrize(("speed", "gap", "expected"), [(1.0, 0.4, 0.8), (10.0, 4.0, 0.8)])
async def test_speed_keeps_event_time_gaps_divided_by_speed(kafka, topic, tmp_path, speed, gap, expected):
    step = timedelta(seconds=gap)
    source = write_lines(
        tmp_path / "paced.jsonl",
        [
            post("2001", at=T0),
            post("2002", at=T0 + step),
            post("2003"),  # without an event time: sent at once, does not move the pace
            post("2004", at=T0 + 2 * step),
        ],
    )

    result = await replay(source, kafka, topic, speed=speed, platform=None, report=None, progress=False)

    assert result.sent == 4
    assert result.seconds >= expected * 0.9  # sleep may wake a little early on some clocks; never much


async def test_without_speed_the_gaps_are_ignored(kafka, topic, tmp_path):
    source = write_lines(
        tmp_path / "fast.jsonl", [post("3001", at=T0), post("3002", at=T0 + timedelta(days=1))]
    )
    result = await replay(source, kafka, topic, speed=None, platform=None, report=None, progress=False)
    assert result.sent == 2  # a day's gap at speed 1 would time the test out


async def test_progress_is_one_carriage_return_line_on_stderr(kafka, topic, tmp_path, capsys):
    source = write_lines(tmp_path / "p.jsonl", [post("4001", at=T0), b"oops"])
    await replay(source, kafka, topic, speed=None, platform=None, report=None, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rreplay [")
    assert err.endswith("\n")
    assert "100.0%" in err
    assert "1 sent  1 bad" in err
    assert "/s" in err


async def test_bad_arguments_fail_before_anything_is_sent(kafka, topic, tmp_path):
    source = write_lines(tmp_path / "x.jsonl", [post("5001")])
    with pytest.raises(ValueError, match="speed must be a positive number"):
        await replay(source, kafka, topic, speed=0, platform=None, report=None, progress=False)
    with pytest.raises(ValueError, match="platform 'tiktok' is not one of: weibo"):
        await replay(source, kafka, topic, speed=None, platform="tiktok", report=None, progress=False)
    with pytest.raises(FileNotFoundError):
        await replay(
            tmp_path / "missing.jsonl", kafka, topic, speed=None, platform=None, report=None, progress=False
        )


def test_replaying_by_publish_time_refuses_a_line_with_neither_time():
    line = json.dumps(post("6003", published_at=None))
    assert parse_line(line, None, NOW)[0].event_time == NOW  # live replay: observed now
    with pytest.raises(ReplayError, match="neither an observation time nor a publication time"):
        parse_line(line, None, NOW, publish_time=True)


async def test_event_time_keeps_history_times_and_gives_undated_lines_their_publish_time(
    kafka, topic, tmp_path
):
    native = json.loads((PAYLOADS / "douyin.json").read_bytes())
    source = write_lines(
        tmp_path / "history.jsonl",
        [
            post("6001", at=T0),
            post("6002"),  # no observation time: its publish time, not the clock's now
            native,  # a bare native line: the same
        ],
    )
    result = await replay(
        source,
        kafka,
        topic,
        speed=None,
        platform=None,
        report=None,
        progress=False,
        clock=FakeClock(NOW),
        event_time=True,
    )
    assert (result.sent, result.bad, result.published) == (2, 1, 1)  # the bare douyin line needs --platform
    posts = {k: Post.model_validate_json(v) for k, v in await records(kafka, topic, expected=2)}
    assert posts["weibo:6001"].event_time == T0
    assert (
        posts["weibo:6002"].event_time
        == posts["weibo:6002"].published_at
        == datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    )
