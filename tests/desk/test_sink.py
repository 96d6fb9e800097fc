"""The sink over a real broker and a real PostgreSQL: a desk killed mid-stream stores every row exactly once,
a PostgreSQL restart under load loses nothing, a post survives its topic, and replicas share ack links."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from schemas.events import IncidentAction, IncidentState, KeywordHit, Tier, TierOverride
from schemas.topics import Topics
from services.common import json
from services.common.broker import free_port
from services.common.config import load_config
from services.common.kafka import ensure_topics
from services.common.links import sign_link
from services.desk.app import create_app
from services.desk.settings import DeskSettings
from services.desk.store import LedgerQuery, open_store
from services.desk.tables import ledger_entries, ledger_hits
from tests.conftest import collect, produce
from tests.factories import hit, incident_event, tier_change
from tests.pg import PgCluster

pytestmark = pytest.mark.kafka
TOKEN = "op-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def snapshots(posts: int, per_post: int, start: datetime) -> list[KeywordHit]:
    """`per_post` snapshots of each post, each a distinct event (its own snapshot id)."""
    out = []
    for n in range(per_post):
        for p in range(posts):
            h = hit(f"p{p}", 10 * (n + 1), at=start + timedelta(minutes=n))
            out.append(
                KeywordHit.model_validate(h.model_dump() | {"snapshot_id": f"p{p}#{n}", "event_id": ""})
            )
    return out


def counts(url: str) -> tuple[int, int, dict[str, int]]:
    store = open_store(DeskSettings(database_url=url))
    try:
        with store.engine.connect() as conn:
            entries = conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one()
            hits = conn.execute(select(func.count()).select_from(ledger_hits)).scalar_one()
            per = dict(conn.execute(select(ledger_entries.c.post_id, ledger_entries.c.hits)).all())
    finally:
        store.close()
    return entries, hits, per


async def wait_for(check: Any, within: float, every: float = 0.3) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(check)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


@pytest.fixture
async def settings(kafka: str, prefix: str, pg_url: str) -> DeskSettings:
    s = DeskSettings(
        kafka_bootstrap=kafka,
        topic_prefix=prefix,
        partitions=2,
        operator_tokens=(TOKEN,),
        database_url=pg_url,
    )
    await ensure_topics(s)
    return s


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://desk", headers=HEADERS) as client:
            yield client


def _desk_process(settings: DeskSettings, port: int, log: Any) -> subprocess.Popen[bytes]:
    assert settings.database_url is not None
    env = {
        **os.environ,
        "YUQING_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "YUQING_TOPIC_PREFIX": settings.topic_prefix,
        "YUQING_PARTITIONS": str(settings.partitions),
        "YUQING_DATABASE_URL": settings.database_url.get_secret_value(),
        "YUQING_DESK_PORT": str(port),
        "YUQING_OPERATOR_TOKENS": TOKEN,
        "YUQING_LOG_LEVEL": "warn",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "worker", "desk"], env=env, stdout=log, stderr=log
    )


async def _trickle(bootstrap: str, topic: str, values: list[bytes], chunk: int = 100) -> None:
    for i in range(0, len(values), chunk):
        await produce(bootstrap, topic, [(b"xinghe", v) for v in values[i : i + chunk]])
        await asyncio.sleep(0.05)


async def test_a_desk_killed_mid_stream_stores_every_row_exactly_once(settings, tmp_path):
    url = settings.database_url.get_secret_value()
    topics = Topics.with_prefix(settings.topic_prefix)
    events = snapshots(posts=300, per_post=10, start=datetime.now(UTC) - timedelta(hours=1))
    port = free_port()
    with (tmp_path / "desk.log").open("wb") as log:
        desk = _desk_process(settings, port, log)
        try:
            # A chunk at a time, so that the desk stores them in many batches: fed at once, they could all
            # land in one transaction, and there would be no moment with some, not all, rows stored.
            feeding = asyncio.create_task(
                _trickle(settings.kafka_bootstrap, topics.keyword_hits, [json.dumps(e) for e in events])
            )
            # Killed once some, not all, rows are stored.
            assert await wait_for(lambda: 0 < counts(url)[1] < len(events), within=60, every=0.05)
            desk.send_signal(signal.SIGKILL)
            desk.wait(10)
            killed_at = counts(url)[1]
            await feeding
            desk = _desk_process(settings, port, log)
            done = await wait_for(lambda: counts(url)[1] == len(events), within=90)
        finally:
            desk.terminate()
            desk.wait(15)
    assert done, (tmp_path / "desk.log").read_text()[-3000:]
    entries, stored, per = counts(url)
    assert killed_at < len(events)
    assert (entries, stored) == (300, 3000)
    assert set(per.values()) == {10}  # each post's ten snapshots, each applied once


async def test_a_postgresql_restart_under_load_loses_nothing(settings, postgres: PgCluster):
    url = settings.database_url.get_secret_value()
    topics = Topics.with_prefix(settings.topic_prefix)
    events = snapshots(posts=200, per_post=10, start=datetime.now(UTC) - timedelta(hours=1))
    app = create_app(settings, publisher=_Collect())
    app.state.process.sink.retry_seconds = 0.5
    async with running(app) as client:
        half = len(events) // 2
        await produce(
            settings.kafka_bootstrap, topics.keyword_hits, [(b"xinghe", json.dumps(e)) for e in events[:half]]
        )
        assert await wait_for(lambda: counts(url)[1] > 0, within=30, every=0.05)
        await asyncio.to_thread(postgres.stop, "fast")
        try:
            await produce(
                settings.kafka_bootstrap,
                topics.keyword_hits,
                [(b"xinghe", json.dumps(e)) for e in events[half:]],
            )
            await asyncio.sleep(2)
            down = await client.get("/v1/ledger")
            assert down.status_code == 503  # said, not a 500
        finally:
            await asyncio.to_thread(postgres.start)
        assert await wait_for(lambda: counts(url)[1] == len(events), within=60)
        assert (await client.get("/v1/ledger", params={"limit": 1})).json()["total"] == 200
    entries, stored, per = counts(url)
    assert (entries, stored, set(per.values())) == (200, 2000, {10})


class _Collect:
    def __init__(self) -> None:
        self.actions: list[IncidentAction] = []

    async def action(self, group: str, action: IncidentAction) -> None:
        self.actions.append(action)

    async def override(self, group: str, command: TierOverride) -> None:
        raise AssertionError("not used here")


async def test_a_negative_post_outlives_its_topic_and_a_restart(settings, kafka):
    """Acceptance: a post seen 30 days ago is in the ledger and its CSV after keyword-hits lost it (here: the
    topic deleted and made anew) and the desk restarted."""
    topics = Topics.with_prefix(settings.topic_prefix)
    old = hit(
        "old-post", 4200, excerpt="星河空调漏水三十天前的投诉", at=datetime.now(UTC) - timedelta(days=30)
    )
    app = create_app(settings, publisher=_Collect())
    async with running(app) as client:
        await produce(kafka, topics.keyword_hits, [(b"xinghe", json.dumps(old))])
        got = await wait_for(lambda: counts(settings.database_url.get_secret_value())[0] == 1, within=30)
        assert got
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.delete_topics([topics.keyword_hits])
    finally:
        await admin.close()
    await asyncio.sleep(2)
    await ensure_topics(settings)
    app = create_app(settings, publisher=_Collect())  # the desk restarted
    async with running(app) as client:
        for _ in range(100):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert (await client.get("/readyz")).status_code == 200
        ledger = (await client.get("/v1/ledger")).json()
        assert [(i["post_id"], i["spread"]) for i in ledger["items"]] == [("old-post", 4200)]
        csv = await client.get("/v1/ledger", params={"format": "csv", "q": "漏水"})
        assert csv.status_code == 200
        lines = csv.text.lstrip("\ufeff").splitlines()
        assert len(lines) == 2
        assert "old-post" in lines[1]
        assert "三十天前" in lines[1]


@pytest.fixture
def replicas(pg_url: str) -> Iterator[tuple[TestClient, TestClient, _Collect]]:
    publisher = _Collect()
    common: dict[str, Any] = {
        "operator_tokens": (TOKEN,),
        "link_secret": "link-secret-0123456789",
        "database_url": pg_url,
        "read_model": False,
        "console_secret": "console-secret-0123456789",  # one signing key: a cookie is valid on both
    }
    a = create_app(DeskSettings(**common), config=load_config(), publisher=publisher)
    b = create_app(DeskSettings(**common), config=load_config(), publisher=publisher)
    a.state.desk.model.apply(incident_event(1, IncidentState.opened))  # stored once, seen by both
    with TestClient(a, follow_redirects=False) as one, TestClient(b, follow_redirects=False) as two:
        yield one, two, publisher


@pytest.mark.usefixtures("kafka")
def test_a_logout_on_one_replica_ends_the_session_on_the_other(replicas):
    """Behind a load balancer: a cookie copied before the logout stops working on every replica."""
    one, two, _ = replicas
    resp = one.post("/console/login", data={"actor": "张三", "token": TOKEN, "next": ""})
    assert resp.status_code == 303, resp.text
    cookie = one.cookies["yuqing-console"]
    two.cookies.set("yuqing-console", cookie)
    assert two.get("/console/board").status_code == 200
    page = one.get("/console/board").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    assert one.post("/console/logout", data={"csrf": csrf.group(1)}).status_code == 303
    for _ in range(50):
        if two.get("/console/board").status_code != 200:
            break
        time.sleep(0.1)
    refused = two.get("/console/board")
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/console/login")


@pytest.mark.usefixtures("kafka")
def test_an_ack_link_works_once_across_two_replicas(replicas):
    one, two, publisher = replicas
    for _ in range(50):
        if two.app.state.desk.model.incident("inc1"):
            break
        time.sleep(0.1)
    now = datetime.now(UTC)
    token = sign_link(b"link-secret-0123456789", "inc1", "xinghe", "ack", now, timedelta(hours=1))
    assert one.post(f"/v1/ack/{token}").status_code == 200
    again = two.post(f"/v1/ack/{token}")
    assert again.status_code == 409
    assert "已使用" in again.text
    assert one.post(f"/v1/ack/{token}").status_code == 409
    assert len(publisher.actions) == 1  # one ack published, whichever replica was asked


async def test_poison_records_go_to_the_dead_letter_topic_and_the_next_ones_are_stored(settings, kafka):
    """On each input topic a record that does not decode, and on keyword-hits one PostgreSQL refuses (a NUL in
    its URL) sent in the same batch as a valid one: each poison record is dead-lettered with its reason and
    counted, and the valid record after it is stored."""
    topics = Topics.with_prefix(settings.topic_prefix)
    url = settings.database_url.get_secret_value()
    refused = hit("nul-post", 10, url="https://x.example/\x00")
    good = hit("good-post", 300, excerpt="星河空调漏水")
    change = tier_change(Tier.level3, Tier.none, {"8h": 11_000})
    opened = incident_event(1, IncidentState.opened)
    await produce(
        kafka,
        topics.keyword_hits,
        [(b"xinghe", b"{not json"), (b"xinghe", json.dumps(refused)), (b"xinghe", json.dumps(good))],
    )
    await produce(
        kafka, topics.tier_changes, [(b"xinghe", b'{"group": "xinghe"}'), (b"xinghe", json.dumps(change))]
    )
    await produce(
        kafka, topics.incidents, [(b"xinghe", b"\xff\xfe not utf-8"), (b"xinghe", json.dumps(opened))]
    )

    def stored() -> bool:
        store = open_store(DeskSettings(database_url=url))
        try:
            posts = [r["post_id"] for r in store.ledger_page(LedgerQuery(), {}, 10, 0)[1]]
            return (
                posts == ["good-post"]
                and bool(store.tier_changes_after(0))
                and bool(store.incident_events_after(0))
            )
        finally:
            store.close()

    app = create_app(settings, publisher=_Collect())
    async with running(app) as client:
        assert await wait_for(stored, within=60)
        metrics = (await client.get("/metrics")).text
    letters = [
        json.loads(v)
        for v in await collect(kafka, topics.dead_letter, until=lambda values: len(values) >= 4, within=30)
    ]
    by_source = sorted((d["source_topic"], d["reason"], d["service"]) for d in letters)
    assert by_source == [
        (topics.incidents, "invalid_json", "desk"),
        (topics.keyword_hits, "invalid_json", "desk"),
        (topics.keyword_hits, "processing_error", "desk"),
        (topics.tier_changes, "invalid_schema", "desk"),
    ]
    refused_letter = next(d for d in letters if d["reason"] == "processing_error")
    assert refused_letter["offset"] == 1
    assert "NUL" in refused_letter["detail"]
    assert 'yuqing_dead_letters_total{reason="invalid_json",service="desk"} 2.0' in metrics
    assert 'yuqing_dead_letters_total{reason="invalid_schema",service="desk"} 1.0' in metrics
    assert 'yuqing_dead_letters_total{reason="processing_error",service="desk"} 1.0' in metrics
    # Every record read, the poison ones included: a restart does not read them again.
    assert store_offsets(url) == {topics.keyword_hits: 3, topics.tier_changes: 2, topics.incidents: 2}


def store_offsets(url: str) -> dict[str, int]:
    """The stored next offset per topic, of the partition its records went to (one key, one partition)."""
    store = open_store(DeskSettings(database_url=url))
    try:
        return {topic: o for (topic, _), o in store.stored_offsets().items() if o}
    finally:
        store.close()
