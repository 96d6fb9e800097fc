"""The scoring handlers on the batch loop: where a post goes, which tables it writes, what a restart keeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.events import KeywordHit, Post
from services.common import json
from services.common.exceptions import ConfigError, DeadLetter
from services.common.kafka import ensure_topics
from services.common.partitioned import Batch
from services.common.settings import load_settings
from services.common.stream import ORIGIN_HEADER, decode
from services.scoring.core import ScoringState
from services.scoring.rows import TABLES, micros
from services.scoring.settings import ScoringSettings
from services.scoring.windows import minute_of
from services.scoring.worker import Scoring, _event_loop
from tests.conftest import produce
from tests.scoring.factories import T0, make_post


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory) -> Scoring:
    return Scoring(ScoringSettings(data_dir=tmp_path_factory.mktemp("scoring"), partitions=1))


def _batch() -> Batch:
    return Batch(0, {name: make() for name, make in TABLES.items()})


def _record(key: bytes, value: bytes, topic: str = "yuqing.posts.raw", offset: int = 7) -> Any:
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=key, value=value, headers=[])


def test_a_post_keyed_by_thread_is_matched_where_it_arrives(scoring: Scoring) -> None:
    batch = _batch()
    post = make_post(post_id="p1", text="星河电器空调起火了，要求退款", likes=10, event_time=T0)
    scoring.on_raw_post(_record(b"weibo:p1", json.dumps(post)), batch)
    assert [topic for topic, *_ in batch.out] == [scoring.topics.keyword_hits]
    assert "weibo:p1" in batch.tables["snapshots"]


def test_a_repost_keyed_by_its_own_id_goes_to_its_thread_first(scoring: Scoring) -> None:
    batch = _batch()
    repost = make_post(post_id="r9", root_post_id="p1", likes=10)
    raw = json.dumps(repost)
    scoring.on_raw_post(_record(b"weibo:r9", raw), batch)
    assert batch.out == [
        (scoring.topics.scoring_threads, b"weibo:p1", raw, [(ORIGIN_HEADER, b"yuqing.posts.raw|0|7")])
    ]
    assert not batch.tables["snapshots"]  # matched on scoring.threads, in its thread's partition


def test_a_post_without_its_identity_is_refused(scoring: Scoring) -> None:
    with pytest.raises(DeadLetter, match="platform"):
        scoring.on_raw_post(_record(b"x", b'{"text": "hi"}'), _batch())


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_over_tls_the_worker_runs_on_asyncios_loop_not_uvloop(tmp_path: Path, protocol: str) -> None:
    """aiokafka on uvloop over TLS now and then stalled a consumer start for 30 s (see _event_loop)."""
    import asyncio

    uvloop = pytest.importorskip("uvloop")
    sasl: dict[str, Any] = {
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": "u",
        "kafka_sasl_password": "p",
    }
    tls = ScoringSettings(
        data_dir=tmp_path, kafka_security_protocol=protocol, **(sasl if protocol.startswith("SASL") else {})
    )
    assert _event_loop(tls) is asyncio.run
    assert _event_loop(ScoringSettings(data_dir=tmp_path)) is uvloop.run
    sasl_plaintext = ScoringSettings(data_dir=tmp_path, kafka_security_protocol="SASL_PLAINTEXT", **sasl)
    assert _event_loop(sasl_plaintext) is uvloop.run


def test_settings_refuse_a_horizon_shorter_than_the_windows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="longer than the longest window"):
        Scoring(ScoringSettings(data_dir=tmp_path, partitions=1, track_hours=8))


# A hit's bytes must decode to the hit itself, whatever the post held: the windows stage, the notifier and
# downstream consumers all read what the match stage wrote.
ODD_POSTS = [
    make_post(text="  星河电器空调起火了，要求退款  "),
    make_post(text="星河電器的空調起火了，要求退款"),  # traditional
    make_post(text="星河电器空调起火了😡😡，要求退款\u200b！" + "真的" * 200),  # emoji, zero-width, > 280
    make_post(
        text="星河电器 ＡＣ－３ 空调起火了\n\t要求退款", event_time=datetime(2024, 5, 1, 8, 0, 0, 1, UTC)
    ),
    make_post(
        text="星河电器空调起火了，要求退款",
        event_time=datetime(2024, 5, 1, 16, 0, tzinfo=timezone(timedelta(hours=8))),
    ),
]


@pytest.mark.parametrize("post", ODD_POSTS, ids=range(len(ODD_POSTS)))
def test_a_hit_decodes_to_the_hit_it_was_written_from(scoring: Scoring, post: Post) -> None:
    hits = scoring.hits_stage.process(post, ScoringState.in_memory())
    assert hits
    for hit in hits:
        assert decode(KeywordHit, json.dumps(hit)) == hit


def _decoded_hit(scoring: Scoring, post: Post) -> KeywordHit:
    (hit,) = scoring.hits_stage.process(post, ScoringState.in_memory())
    return hit


def _hit_record(post: Post, scoring: Scoring, offset: int) -> Any:
    hit = _decoded_hit(scoring, post)
    return _record(b"xinghe", json.dumps(hit), topic=scoring.topics.keyword_hits, offset=offset)


def test_a_hit_older_than_every_window_is_dead_lettered_as_late_event(scoring: Scoring) -> None:
    batch = _batch()
    t = T0 + timedelta(days=30)  # a partition of its own: the module's other tests use T0
    scoring.on_hit(
        _hit_record(make_post(post_id="n", event_time=t, published_at=t, likes=5), scoring, 1), batch
    )
    seven = t - timedelta(hours=7)
    scoring.on_hit(
        _hit_record(make_post(post_id="s", event_time=seven, published_at=seven, likes=5), scoring, 2), batch
    )
    nine = t - timedelta(hours=9)
    late = _hit_record(make_post(post_id="o", event_time=nine, published_at=nine, likes=5), scoring, 3)
    with pytest.raises(DeadLetter) as info:
        scoring.on_hit(late, batch)
    assert info.value.reason == "late_event"
    assert "9 h 0 min behind" in info.value.detail
    state = scoring._state(batch)
    assert sum(b.total for _, b in state.buckets.items()) == 10  # 7 h late counted


@pytest.mark.parametrize("handler", ["on_raw_post", "on_hit"])
def test_an_observation_dated_ahead_of_the_clock_is_dead_lettered_and_counts_nothing(
    scoring: Scoring, handler: str
) -> None:
    """One post or hit dated in 2099 (any producer on posts.raw or keyword-hits can send one) is refused as
    future_event: counted, it became its group's newest time and every real post after it was late."""
    batch = _batch()
    now = datetime.now(UTC)
    future = now + timedelta(days=365 * 70)
    real = make_post(post_id="real", event_time=now, published_at=now, likes=5)
    poison = make_post(post_id="poison", event_time=future, published_at=now, likes=500)
    if handler == "on_raw_post":
        record = _record(b"weibo:poison", json.dumps(poison))
    else:
        hit = _decoded_hit(scoring, real).model_copy(update={"event_time": future})
        record = _record(b"xinghe", json.dumps(hit), topic=scoring.topics.keyword_hits)
    with pytest.raises(DeadLetter) as info:
        getattr(scoring, handler)(record, batch)
    assert info.value.reason == "future_event"
    assert "YUQING_MAX_CLOCK_SKEW_SECONDS" in info.value.detail
    state = scoring._state(batch)
    assert not len(state.buckets)
    assert not len(state.snapshots)
    scoring.on_hit(_hit_record(real, scoring, 9), batch)  # the real one after it still counts
    assert sum(b.total for _, b in state.buckets.items()) == 5


def test_the_window_clock_setting(tmp_path: Path, monkeypatch) -> None:
    settings = ScoringSettings(data_dir=tmp_path, partitions=1, window_clock="event")
    assert Scoring(settings).tier_stage.event_clock is True
    assert scoring_default(tmp_path).tier_stage.event_clock is False
    monkeypatch.setenv("YUQING_WINDOW_CLOCK", "utc")
    with pytest.raises(ConfigError, match="YUQING_WINDOW_CLOCK"):
        load_settings(ScoringSettings)


def scoring_default(tmp_path: Path) -> Scoring:
    return Scoring(ScoringSettings(data_dir=tmp_path, partitions=1))


async def _compacted(bootstrap: str, topic: str) -> dict[str, bytes]:
    """What compaction leaves of a changelog's partition 0: the latest value per key, tombstones applied."""
    tp = TopicPartition(topic, 0)
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await reader.start()
    rows: dict[str, bytes] = {}
    try:
        reader.assign([tp])
        end = (await reader.end_offsets([tp]))[tp]
        while await reader.position(tp) < end:
            for records in (await reader.getmany(tp, timeout_ms=1000)).values():
                for r in records:
                    key = json.loads(r.key)
                    if r.value is None:
                        rows.pop(key, None)
                    else:
                        rows[key] = r.value
    finally:
        await reader.stop()
    return rows


async def _until(condition: Callable[[], bool], within: float = 60.0) -> None:
    for _ in range(int(within * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not so within {within} s")


@pytest.mark.kafka
async def test_a_bucket_expired_before_a_restart_is_not_restored(
    kafka: str, prefix: str, tmp_path: Path
) -> None:
    """An expired bucket leaves a tombstone on its changelog. A bucket a restore brought back would stay for
    good: it lies behind the group's oldest minute, where expiry never looks again."""
    settings = ScoringSettings(
        kafka_bootstrap=kafka,
        topic_prefix=prefix,
        partitions=1,
        data_dir=tmp_path,
        session_timeout_seconds=6,
        # The first tick sweeps buckets behind their group's oldest minute (drop_stale), which would hide
        # a restore that brought one back: none runs before the assertions.
        tick_seconds=60,
    )
    await ensure_topics(settings)
    first = Scoring(settings)
    later = T0 + timedelta(hours=20)  # past twice the 8 h window plus grace: the bucket at T0 expires
    hits = [
        _hit_record(make_post(post_id="a", event_time=T0, likes=5), first, 0),
        _hit_record(make_post(post_id="b", event_time=later, published_at=later, likes=7), first, 1),
    ]
    topic = first.topics.keyword_hits
    kept = f"xinghe|{minute_of(later)}"
    stop = asyncio.Event()
    task = asyncio.create_task(first.worker.run(stop))
    try:
        # One batch each: the bucket at T0 is on the changelog before it expires.
        await produce(kafka, topic, [(hits[0].key, hits[0].value)])
        await _until(lambda: "xinghe|weibo:a" in first.worker.merged("counted"))
        await produce(kafka, topic, [(hits[1].key, hits[1].value)])
        await _until(lambda: "xinghe|weibo:b" in first.worker.merged("counted"))
        assert list(first.worker.merged("buckets")) == [kept]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    changelog = first.worker.changelogs["buckets"]
    assert list(await _compacted(kafka, changelog)) == [kept]  # the expired bucket's tombstone is there
    second = Scoring(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(second.worker.run(stop))
    try:
        await _until(lambda: second.worker.owned_partitions() == {0})  # restored
        assert list(second.worker.merged("buckets")) == [kept]
        assert second.worker.merged("counted") == {
            "xinghe|weibo:a": micros(T0),
            "xinghe|weibo:b": micros(later),
        }
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
