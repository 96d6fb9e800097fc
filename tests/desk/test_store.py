"""The desk's store on SQLite and on a real PostgreSQL: migrations, idempotent writes with their offsets,
ledger queries and keyword search, shared replica state, retention, and the start-up errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text

from schemas.events import Engagement, IncidentState, Platform, Tier
from services.desk.exceptions import StoreError, StoreRejected
from services.desk.settings import DeskSettings
from services.desk.store import LedgerQuery, Retention, Store, open_store
from services.desk.tables import METADATA, ledger_hits, ledger_terms
from services.desk.throttle import LoginThrottle
from tests.factories import T0, hit, incident_event, tier_change
from tests.pg import PASSWORD, PgCluster


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'desk.sqlite3'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(DeskSettings(database_url=url))
    yield s
    s.close()


def test_the_migrated_schema_is_the_tables_module(store):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), METADATA)
    assert diff == []
    assert store.revision() == "0003"


def test_migrating_again_changes_nothing(url, store):
    again = open_store(DeskSettings(database_url=url))
    assert again.revision() == "0003"
    again.close()


def test_a_replayed_event_changes_nothing(store):
    events = [hit("a", 100), hit("b", 40, platform=Platform.douyin)]
    assert store.write(events, {("t.keyword-hits", 0): 2}) == 2
    assert store.write(events, {("t.keyword-hits", 0): 2}) == 0
    total, rows = store.ledger_page(LedgerQuery(), {}, 10, 0)
    assert total == 2
    assert {r["post_id"]: r["hits"] for r in rows} == {"a": 1, "b": 1}
    assert store.stored_offsets() == {("t.keyword-hits", 0): 2}
    assert store.ledger_event_ids("weibo:a|xinghe") == [events[0].event_id]


def test_a_later_snapshot_updates_the_entry_and_a_late_older_one_does_not_roll_it_back(store):
    first = hit("a", 100, at=T0)
    later = hit("a", 900, at=T0 + timedelta(hours=1)).model_copy(update={"snapshot_id": "a2", "event_id": ""})
    later = type(later).model_validate(later.model_dump())
    older = hit("a", 50, at=T0 - timedelta(hours=1)).model_copy(update={"snapshot_id": "a0", "event_id": ""})
    older = type(older).model_validate(older.model_dump())
    store.write([first])
    store.write([later])
    store.write([older])
    (row,) = store.ledger_page(LedgerQuery(), {}, 10, 0)[1]
    assert (row["spread"], row["hits"]) == (900, 3)
    assert row["first_seen"] == (T0 - timedelta(hours=1)).isoformat()
    assert row["last_seen"] == (T0 + timedelta(hours=1)).isoformat()
    assert len(store.ledger_event_ids("weibo:a|xinghe")) == 3


def test_rows_and_offsets_are_one_transaction(store, monkeypatch):
    store.write([hit("a", 1)], {("t.keyword-hits", 0): 1})

    def crash(*_: object) -> None:
        raise RuntimeError("the process died between the rows and the offsets")

    monkeypatch.setattr(store, "_write_offsets", crash)
    with pytest.raises(RuntimeError):
        store.write([hit("b", 2), incident_event(1, IncidentState.opened)], {("t.keyword-hits", 0): 5})
    monkeypatch.undo()
    assert store.stored_offsets() == {("t.keyword-hits", 0): 1}
    assert store.ledger_page(LedgerQuery(), {}, 10, 0)[0] == 1
    assert store.incident_events_after(0) == []


def test_a_value_postgresql_cannot_hold_is_rejected_not_retried(pg_url):
    store = open_store(DeskSettings(database_url=pg_url))
    too_big = incident_event(1, IncidentState.opened).model_copy(update={"sequence": 2**40})
    with pytest.raises(StoreRejected):
        store.write([hit("b", 2), too_big], {("t.keyword-hits", 0): 5})
    assert store.stored_offsets() == {}
    store.close()


def test_a_hit_postgresql_cannot_hold_is_rejected_and_the_writer_goes_on(pg_url):
    """The ledger's rows go to PostgreSQL by COPY: a refused value is StoreRejected (the sink dead-letters
    it), not StoreUnavailable (which would retry it for ever), and the writer's connection stays usable."""
    store = open_store(DeskSettings(database_url=pg_url))
    lease = store.acquire_writer()
    assert lease is not None
    with pytest.raises(StoreRejected, match="NUL"):
        store.write(
            [hit("a", 1), hit("b", 2, url="https://x.example/\x00")], {("t.keyword-hits", 0): 2}, lease
        )
    assert store.stored_offsets() == {}
    assert store.write([hit("a", 1)], {("t.keyword-hits", 0): 2}, lease) == 1
    assert store.stored_offsets() == {("t.keyword-hits", 0): 2}
    lease.close()
    store.close()


def test_a_nul_in_post_text_does_not_keep_the_post_out_of_the_ledger(store):
    """PostgreSQL's text holds no NUL, and the text is the public's: shown as U+FFFD, found by its words."""
    assert store.write([hit("a", 1, excerpt="星河空调\x00漏水，投诉")]) == 1
    total, rows = store.ledger_page(LedgerQuery(text="漏水"), {}, 10, 0)
    assert total == 1
    assert rows[0]["excerpt"] == "星河空调\ufffd漏水，投诉"


def test_unknown_counts_stay_unknown(store):
    counts = Engagement.model_validate({"reposts": None, "comments": 3, "likes": 4})
    store.write([hit("a", 100).model_copy(update={"cumulative": counts})])
    (row,) = store.ledger_page(LedgerQuery(), {}, 10, 0)[1]
    assert row["reposts"] is None
    assert row["spread"] == row["comments"] + row["likes"]


def _ledger(store: Store) -> None:
    store.write(
        [
            hit("a", 500, excerpt="星河空调漏水，投诉无门", at=T0),
            hit(
                "b",
                9000,
                platform=Platform.douyin,
                excerpt="星河手機電池鼓包，差评",
                at=T0 + timedelta(minutes=1),
            ),
            hit("c", 7, group="other", excerpt="别家空调也漏水", at=T0 + timedelta(minutes=2)),
            hit("d", 60, sentiment=0.5, excerpt="星河客服态度好", at=T0 + timedelta(minutes=3)),
        ]
    )


@pytest.mark.parametrize("sorted_here", [10_000, 0], ids=["sorted-by-the-desk", "sorted-by-the-database"])
def test_ledger_filters_sorts_and_pages(store, sorted_here, monkeypatch):
    """The same pages whether the few matching entries are sorted by the desk or by the database."""
    monkeypatch.setattr("services.desk.store._SORTED_HERE", sorted_here)
    _ledger(store)
    tiers = {"xinghe": 2, "other": 0}

    def ids(limit: int = 10, offset: int = 0, **q: object) -> list[str]:
        return [r["post_id"] for r in store.ledger_page(LedgerQuery(**q), tiers, limit, offset)[1]]  # type: ignore[arg-type]

    assert ids() == ["d", "c", "b", "a"]
    assert ids(sort="spread") == ["b", "a", "d", "c"]
    assert ids(limit=2, offset=1) == ["c", "b"]
    assert ids(platform="douyin") == ["b"]
    assert ids(group="other") == ["c"]
    assert ids(tier=2) == ["d", "b", "a"]
    assert ids(tier=0) == ["c"]
    assert ids(tier=1) == []
    assert ids(sentiment="positive") == ["d"]
    assert ids(sentiment="negative") == ["c", "b", "a"]
    assert ids(since=T0 + timedelta(minutes=2)) == ["d", "c"]
    assert ids(until=T0 + timedelta(minutes=1)) == ["b", "a"]
    assert ids(limit=2, offset=2, sort="spread") == ["d", "c"]
    assert ids(post="douyin:b") == ["b"]  # a board card's top post links to its row
    assert ids(post="weibo:b") == []
    assert ids(post="b") == []
    # Bounds at the calendar's edge, whose UTC would overflow, mean "before / after everything".
    east, west = timezone(timedelta(minutes=4)), timezone(timedelta(minutes=-4))
    assert ids(until=datetime(1, 1, 1, 0, 1, tzinfo=east)) == []
    assert ids(since=datetime(1, 1, 1, 0, 1, tzinfo=east)) == ["d", "c", "b", "a"]
    assert ids(until=datetime(9999, 12, 31, 23, 59, tzinfo=west)) == ["d", "c", "b", "a"]
    assert ids(since=datetime(9999, 12, 31, 23, 59, tzinfo=west)) == []
    assert store.ledger_page(LedgerQuery(group="other"), tiers, 10, 0)[0] == 1
    assert store.ledger_page(LedgerQuery(), tiers, 10, 4) == (4, [])  # past the end: the total, no rows


def test_keyword_search_finds_words_in_excerpts(store):
    _ledger(store)

    def found(q: str) -> list[str]:
        return [r["post_id"] for r in store.ledger_page(LedgerQuery(text=q), {}, 10, 0)[1]]

    assert found("漏水") == ["c", "a"]
    assert found("空调漏水") == ["a"]  # a keyword is found as typed, not as any of its words
    assert found("空调 漏水") == ["c", "a"]  # keywords separated by spaces: every one of them
    assert found("电池鼓包") == ["b"]  # traditional text (電池) found by a simplified query
    assert found("電池") == ["b"]
    assert found("星河") == ["d", "b", "a"]
    assert found("鼓") == ["b"]  # one character: no word, only the substring
    assert found("冰箱") == []
    assert found("100%_") == []  # LIKE wildcards are text here


def test_a_csv_export_reads_every_row_in_chunks(store):
    store.write([hit(f"p{i:02}", i, at=T0 + timedelta(minutes=i)) for i in range(7)])
    chunks = list(store.ledger_chunks(LedgerQuery(), {}, chunk=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [r["post_id"] for c in chunks for r in c] == [f"p{i:02}" for i in reversed(range(7))]
    by_spread = [r["spread"] for c in store.ledger_chunks(LedgerQuery(sort="spread"), {}, chunk=2) for r in c]
    assert by_spread == sorted(by_spread, reverse=True)


def test_tier_changes_and_incidents_come_back_in_write_order(store):
    tc = tier_change(Tier.level2, Tier.none, {"4h": 60_000})
    events = [incident_event(1, IncidentState.opened), incident_event(2, IncidentState.acknowledged)]
    store.write([tc, *events])
    store.write([tc, *events])
    assert [e for _, e in store.tier_changes_after(0)] == [tc]
    assert [e.sequence for _, e in store.incident_events_after(0)] == [1, 2]
    seq = store.incident_events_after(0)[0][0]
    assert [e.sequence for _, e in store.incident_events_after(seq)] == [2]


def test_an_ack_link_is_claimed_once_across_replicas(url, store):
    other = open_store(DeskSettings(database_url=url))
    expires = T0 + timedelta(hours=1)
    assert store.claim_link("n1", "inc1", expires, T0)
    assert not other.claim_link("n1", "inc1", expires, T0)
    other.release_link("n1")  # its action was not published
    assert other.claim_link("n1", "inc1", expires, T0)
    other.close()


def test_the_login_lockout_is_shared_by_replicas(url, store):
    one, two = (
        LoginThrottle(store, max_failures=3),
        LoginThrottle(open_store(DeskSettings(database_url=url)), 3),
    )
    keys = ("client:1.2.3.4", "name:张三")
    one.failed(keys, T0)
    two.failed(keys, T0 + timedelta(minutes=1))
    assert one.retry_after(keys, T0 + timedelta(minutes=1)) is None
    one.failed(keys, T0 + timedelta(minutes=2))
    assert two.retry_after(keys, T0 + timedelta(minutes=2)) == timedelta(minutes=13)
    assert two.retry_after(("client:other", "name:张三"), T0 + timedelta(minutes=2)) == timedelta(minutes=13)
    assert two.retry_after(keys, T0 + timedelta(minutes=15)) is None
    two.succeeded(keys)
    one.failed(keys, T0 + timedelta(minutes=16))
    assert one.retry_after(keys, T0 + timedelta(minutes=16)) is None
    two.store.close()


def test_ended_sessions_are_listed_to_every_replica_until_they_expire(url, store):
    other = open_store(DeskSettings(database_url=url))
    store.end_session("n1", T0, T0 + timedelta(hours=12))
    other.end_session("n1", T0 + timedelta(minutes=1), T0 + timedelta(hours=12))  # a copy's logout: no error
    other.end_session("n2", T0, T0 + timedelta(hours=1))
    rows = other.sessions_ended_after(0, T0)
    assert [(nonce, expires) for _, nonce, expires in rows] == [
        ("n1", T0 + timedelta(hours=12)),
        ("n2", T0 + timedelta(hours=1)),
    ]
    assert store.sessions_ended_after(rows[0][0], T0) == rows[1:]  # only what came after the last one taken
    assert [n for _, n, _ in store.sessions_ended_after(0, T0 + timedelta(hours=2))] == ["n1"]  # n2 expired
    assert store.purge(T0 + timedelta(hours=2), Retention())["sessions_ended"] == 1
    other.close()


def test_the_purge_keeps_what_retention_keeps(store):
    now = T0 + timedelta(days=500)
    old = hit("old", 10, at=T0)
    recent = hit("new", 10, at=now - timedelta(days=30))
    changes = [
        tier_change(Tier.level3, Tier.none, {"8h": 11_000}, at=T0),
        tier_change(Tier.level2, Tier.level3, {"4h": 60_000}, at=T0 + timedelta(hours=1)),
    ]
    store.write([old, recent, *changes, incident_event(1, IncidentState.opened)])
    purged = store.purge(now, Retention(ledger_days=400, tier_change_days=400, incident_days=0))
    assert purged["ledger_entries"] == 1
    assert [r["post_id"] for r in store.ledger_page(LedgerQuery(), {}, 10, 0)[1]] == ["new"]
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger_hits)).scalar_one() == 1
        entry_ids = set(conn.execute(select(ledger_terms.c.entry_id)).scalars())
    assert len(entry_ids) == 1
    # The group's latest change is its current tier: kept however old; the one before it goes.
    assert [tc.tier for _, tc in store.tier_changes_after(0)] == [Tier.level2]
    assert len(store.incident_events_after(0)) == 1  # incidents are kept


def test_a_schema_from_a_newer_release_is_refused_naming_the_setting(url, store):
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(StoreError, match=r"YUQING_DATABASE_URL.*9999_future.*newer release"):
        open_store(DeskSettings(database_url=url))


def test_a_wrong_password_is_refused_naming_the_setting(postgres: PgCluster):
    url = postgres.url(password="not-the-password")
    with pytest.raises(StoreError, match=r"YUQING_DATABASE_URL.*password authentication failed") as err:
        open_store(DeskSettings(database_url=url))
    assert "not-the-password" not in str(err.value)
    assert PASSWORD not in str(err.value)


def test_an_unreachable_database_is_refused_naming_the_setting():
    from services.common.broker import free_port

    url = f"postgresql://yuqing:secret-password@127.0.0.1:{free_port()}/yuqing"
    with pytest.raises(StoreError, match="YUQING_DATABASE_URL: cannot connect") as err:
        open_store(DeskSettings(database_url=url, database_connect_timeout_seconds=2))
    assert "secret-password" not in str(err.value)


def test_a_url_that_is_not_one_is_refused_naming_the_setting():
    with pytest.raises(StoreError, match="YUQING_DATABASE_URL: not a database URL"):
        open_store(DeskSettings(database_url="localhost:5432"))
    with pytest.raises(StoreError, match="YUQING_DATABASE_URL: driver 'mysql'"):
        open_store(DeskSettings(database_url="mysql://u:p@h/db"))


def test_the_writer_lease_is_held_by_one_replica(pg_url):
    one, two = open_store(DeskSettings(database_url=pg_url)), open_store(DeskSettings(database_url=pg_url))
    lease = one.acquire_writer()
    assert lease is not None
    assert two.acquire_writer() is None
    lease.close()
    taken = two.acquire_writer()
    assert taken is not None
    taken.close()
    one.close()
    two.close()


def test_the_sqlite_default_sits_in_the_data_dir(tmp_path):
    store = open_store(DeskSettings(data_dir=tmp_path / "d"))
    assert (tmp_path / "d" / "desk.sqlite3").exists()
    store.close()
