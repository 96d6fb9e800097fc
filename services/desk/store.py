"""The desk's store: the 台账, tier changes, incidents and the state replicas share, in SQL (docs/store.md).

SQLAlchemy Core over a synchronous engine: SQLite in the data directory by default, PostgreSQL (psycopg 3)
at YUQING_DATABASE_URL. The engine is synchronous on purpose: one driver per back end, the reference ones
(pysqlite, psycopg), the same code for both and for Alembic; the desk calls it from a worker thread
(`asyncio.to_thread`) per request or per sink batch, never per row, so the thread hop costs nothing that
matters (bench/desk.py), and the console's view models stay plain synchronous code.

Every write of the sink is one transaction holding the rows and the Kafka offsets they came from, so a crash
or a replay never duplicates nor loses a row. Rows are upserted by event id. The one place the back ends part
is the ledger's rows of a sink batch: on PostgreSQL they go by COPY through psycopg on the same transaction's
connection (`_PgLedgerRows`), which made the sink about twice as fast (bench/desk.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    false,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.pool import StaticPool

from schemas.events import IncidentEvent, KeywordHit, TierChange
from schemas.labels import NEUTRAL_BAND
from services.common import json
from services.common.clock import utc
from services.desk import search
from services.desk.exceptions import StoreError, StoreRejected, StoreUnavailable
from services.desk.settings import DeskSettings
from services.desk.tables import (
    ack_links_used,
    follow_ups,
    incident_events,
    incidents,
    ledger_entries,
    ledger_hits,
    ledger_terms,
    login_failures,
    sessions_ended,
    sink_offsets,
    statements,
    tier_changes,
)

__all__ = ["LedgerQuery", "Retention", "Store", "WriterLease", "open_store"]

log = logging.getLogger(__name__)

Event = KeywordHit | TierChange | IncidentEvent
Offsets = Mapping[tuple[str, int], int]
_SETTING = "YUQING_DATABASE_URL"
# pg_advisory_lock keys (any two 64-bit numbers of ours): the sink's single writer, and migrations.
_WRITER_LOCK = 0x79757169_6E670001
_MIGRATION_LOCK = 0x79757169_6E670002
_CLOSED = ("closed", "postmortem_filed")
_LOGIN_MEMORY = timedelta(days=1)
# A ledger query matching at most this many entries is sorted by the desk, not by an index walk (ledger_page).
_SORTED_HERE = 10_000


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    """The ledger's filters, as the API and the console take them."""

    since: datetime | None = None  # last seen at or after
    until: datetime | None = None  # first seen at or before
    platform: str | None = None
    group: str | None = None
    tier: int | None = None  # the group's current tier
    sentiment: str | None = None  # negative / neutral / positive
    demand: str | None = None
    text: str | None = None  # keyword search over the excerpt (services/desk/search.py)
    post: str | None = None  # one post, "platform:post_id" (the board's top posts link here)
    sort: Literal["time", "spread"] = "time"  # newest first seen first, or largest spread first

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _utc_bound(value))


def _utc_bound(value: datetime) -> datetime:
    """A filter bound in UTC. An aware time at the edge of the calendar (0001-01-01T00:00+08:00) lies
    outside what UTC datetimes can hold; as a bound it means "before (or after) everything", so it is
    clamped to the first or last UTC instant instead of overflowing."""
    try:
        return utc(value)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if value.year == 1 else datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Retention:
    """Days each table keeps its rows (0: kept for good); applied by `Store.purge`."""

    ledger_days: int = 400
    tier_change_days: int = 400
    incident_days: int = 0


@dataclass
class WriterLease:
    """The sink's right to write: on PostgreSQL a session advisory lock held by `conn` (released by the
    server when the connection dies, so a standby replica takes over); on SQLite, the one connection."""

    conn: Connection

    def close(self) -> None:
        """Let go: the connection is discarded, not pooled, as a pooled one would keep holding the lock."""
        try:
            self.conn.invalidate()
            self.conn.close()
        except SQLAlchemyError as exc:  # the connection is gone already: so is the lock
            log.debug("closing the writer connection: %s", exc)


def _database_url(settings: DeskSettings) -> URL:
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return URL.create("sqlite", database=str(Path(settings.data_dir) / "desk.sqlite3"))
    try:
        url = make_url(settings.database_url.get_secret_value())
    except ArgumentError:
        raise StoreError(
            f"{_SETTING}: not a database URL; expected postgresql://user:password@host:5432/db or "
            "sqlite:///path/desk.sqlite3"
        ) from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise StoreError(
            f"{_SETTING}: driver {url.drivername!r} is not supported; use postgresql:// (psycopg 3) or sqlite://"
        )
    return url


def _engine(settings: DeskSettings, url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        args: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if url.database in (None, "", ":memory:"):
            args["poolclass"] = StaticPool  # one in-memory database, seen by every thread
        engine = create_engine(url, **args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": settings.database_connect_timeout_seconds}
    if settings.database_sslmode is not None:
        connect_args["sslmode"] = settings.database_sslmode
    if settings.database_sslrootcert is not None:
        connect_args["sslrootcert"] = str(settings.database_sslrootcert)
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True, pool_size=5, max_overflow=5)
    # A batch's inserts as multi-row INSERT … VALUES statements rather than one statement per row (the
    # dialect's own batching, as it does for INSERT … RETURNING): fewer round trips per sink batch.
    engine.dialect.use_insertmanyvalues_wo_returning = True
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL: readers (the console) do not wait for the sink's transaction, nor it for them.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _reason(exc: BaseException) -> str:
    """The driver's own message, first line: it names the host, the user or the database, never a password."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def open_store(settings: DeskSettings) -> Store:
    """Connect, migrate to this release's schema, and return the store; StoreError names the setting when the
    database cannot be reached, refuses the login, or holds a schema from a newer release."""
    url = _database_url(settings)
    shown = url.render_as_string(hide_password=True)
    try:
        engine = _engine(settings, url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StoreError(f"{_SETTING}: {shown}: {_reason(exc)}") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        engine.dispose()
        raise StoreError(f"{_SETTING}: cannot connect to the store at {shown}: {_reason(exc)}") from None
    store = Store(engine)
    try:
        store.migrate()
    except StoreError:
        engine.dispose()
        raise
    except DBAPIError as exc:
        engine.dispose()
        raise StoreError(f"{_SETTING}: migrating the store at {shown} failed: {_reason(exc)}") from None
    return store


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("services.desk") / "migrations"))
    config.attributes["connection"] = conn
    return config


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    # -- schema -----------------------------------------------------------------------------
    def migrate(self) -> None:
        """Upgrade the schema to this release's head (Alembic), or StoreError when the database is ahead."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Replicas starting together: one migrates, the others wait and then find nothing to do.
                conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            config = _alembic_config(conn)
            script = ScriptDirectory.from_config(config)
            current = MigrationContext.configure(conn).get_current_revision()
            known = {s.revision for s in script.walk_revisions()}
            if current is not None and current not in known:
                raise StoreError(
                    f"{_SETTING}: the store's schema is at revision {current!r}, which this release does not "
                    f"know (it knows up to {script.get_current_head()!r}): a newer release migrated it. Run "
                    "that release, or point YUQING_DATABASE_URL at another database."
                )
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- the sink ---------------------------------------------------------------------------
    def acquire_writer(self) -> WriterLease | None:
        """The single-writer lease, or None while another replica holds it."""
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            raise StoreUnavailable(_reason(exc)) from exc
        try:
            if self.dialect == "postgresql":
                held = conn.execute(select(func.pg_try_advisory_lock(_WRITER_LOCK))).scalar_one()
                conn.commit()
                if not held:
                    conn.close()
                    return None
            return WriterLease(conn)
        except DBAPIError as exc:
            conn.close()
            raise StoreUnavailable(_reason(exc)) from exc

    def stored_offsets(self, conn: Connection | None = None) -> dict[tuple[str, int], int]:
        query = select(sink_offsets.c.topic, sink_offsets.c.partition, sink_offsets.c.next_offset)
        try:
            if conn is not None:  # the writer's connection: a transaction of its own, ended here
                with conn.begin():
                    return {(t, p): o for t, p, o in conn.execute(query)}
            with self.engine.connect() as c:
                return {(t, p): o for t, p, o in c.execute(query)}
        except DBAPIError as exc:
            raise StoreUnavailable(_reason(exc)) from exc

    def write(
        self, events: Sequence[Event], offsets: Offsets | None = None, lease: WriterLease | None = None
    ) -> int:
        """Store `events` and the sink's `offsets` (next offset per topic partition) in one transaction; an
        event stored before (same event id) changes nothing. Returns how many events were new."""
        offsets = offsets or {}
        try:
            if lease is not None:
                with lease.conn.begin():
                    return self._write(lease.conn, events, offsets)
            with self.engine.begin() as conn:
                return self._write(conn, events, offsets)
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(_reason(exc)) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailable(_reason(exc)) from exc
            raise StoreRejected(_reason(exc)) from exc
        # The ledger's rows on PostgreSQL go through psycopg itself (_PgLedgerRows): its errors, unwrapped.
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(_reason(exc)) from exc
        except psycopg.Error as exc:  # a value the server, or psycopg itself (a NUL in text), refuses
            raise StoreRejected(_reason(exc)) from exc

    def _write(self, conn: Connection, events: Sequence[Event], offsets: Offsets) -> int:
        hits: dict[str, KeywordHit] = {}
        changes: dict[str, TierChange] = {}
        timeline: dict[str, IncidentEvent] = {}
        for e in events:
            bucket: dict[str, Any] = (
                hits if isinstance(e, KeywordHit) else changes if isinstance(e, TierChange) else timeline
            )
            bucket.setdefault(e.event_id, e)
        new = 0
        if hits:
            new += self._write_hits(conn, hits)
        if changes:
            new += self._write_tier_changes(conn, changes)
        if timeline:
            new += self._write_incident_events(conn, timeline)
        if offsets:
            self._write_offsets(conn, offsets)
        return new

    @staticmethod
    def _existing(conn: Connection, column: Any, ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        chunk: list[str] = []
        for i in ids:
            chunk.append(i)
            if len(chunk) == 1000:
                found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
                chunk = []
        if chunk:
            found.update(conn.execute(select(column).where(column.in_(chunk))).scalars())
        return found

    def _write_hits(self, conn: Connection, hits: dict[str, KeywordHit]) -> int:
        rows: _LedgerRows = _PgLedgerRows(conn) if self.dialect == "postgresql" else _CoreLedgerRows(conn)
        seen = rows.stored_hits(list(hits))
        fresh = sorted((h for i, h in hits.items() if i not in seen), key=lambda h: h.event_time)
        if not fresh:
            return 0
        by_key: dict[str, list[KeywordHit]] = {}
        for h in fresh:
            by_key.setdefault(_entry_key(h), []).append(h)
        existing = rows.entries(list(by_key))
        new_rows: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for key, group_hits in by_key.items():
            row = existing.get(key)
            if row is None:
                new_rows.append(_new_entry(key, group_hits))
            else:
                updates.append(_updated_entry(row, group_hits))
        ids = {key: row.id for key, row in existing.items()}
        if new_rows:
            ids.update(rows.insert_entries(new_rows))
            rows.insert_terms(
                [
                    (term, ids[values["entry_key"]])
                    for values in new_rows
                    for term in search.terms(values["excerpt_norm"], json.loads(values["matched_terms"]))
                ]
            )
        if updates:
            rows.update_entries(updates)
        rows.insert_hits([(h.event_id, ids[_entry_key(h)], h.event_time) for h in fresh])
        return len(fresh)

    def _write_tier_changes(self, conn: Connection, changes: dict[str, TierChange]) -> int:
        seen = self._existing(conn, tier_changes.c.event_id, changes)
        rows = [
            {
                "event_id": tc.event_id,
                "rule_group": tc.group,
                "tier": int(tc.tier),
                "previous": int(tc.previous),
                "event_time": tc.event_time,
                "detected_at": tc.detected_at,
                "payload": tc.model_dump_json(),
            }
            for i, tc in changes.items()
            if i not in seen
        ]
        if rows:
            conn.execute(insert(tier_changes), rows)
        return len(rows)

    def _write_incident_events(self, conn: Connection, timeline: dict[str, IncidentEvent]) -> int:
        seen = self._existing(conn, incident_events.c.event_id, timeline)
        fresh = [e for i, e in timeline.items() if i not in seen]
        if not fresh:
            return 0
        conn.execute(
            insert(incident_events),
            [
                {
                    "event_id": e.event_id,
                    "incident_id": e.incident_id,
                    "sequence": e.sequence,
                    "event_time": e.event_time,
                    "state": e.state.value,
                    "payload": e.model_dump_json(),
                }
                for e in fresh
            ],
        )
        latest: dict[str, IncidentEvent] = {}
        for e in fresh:
            if e.incident_id not in latest or e.sequence > latest[e.incident_id].sequence:
                latest[e.incident_id] = e
        for incident_id, e in latest.items():
            self._write_incident(conn, incident_id, e)
        return len(fresh)

    @staticmethod
    def _write_incident(conn: Connection, incident_id: str, e: IncidentEvent) -> None:
        c = incidents.c
        row = conn.execute(
            select(c.last_sequence, c.opened_at).where(c.incident_id == incident_id)
        ).one_or_none()
        if row is not None and row.last_sequence > e.sequence:
            return  # an older event arrived late: the incident's current state is already newer
        values = {
            "rule_group": e.group,
            "state": e.state.value,
            "tier": int(e.tier),
            "updated_at": e.event_time,
            "last_sequence": e.sequence,
        }
        if row is None:
            first = conn.execute(
                select(func.min(incident_events.c.event_time)).where(
                    incident_events.c.incident_id == incident_id
                )
            ).scalar_one()
            conn.execute(insert(incidents).values(incident_id=incident_id, opened_at=first, **values))
        else:
            conn.execute(update(incidents).where(c.incident_id == incident_id).values(**values))
        conn.execute(delete(statements).where(statements.c.incident_id == incident_id))
        conn.execute(delete(follow_ups).where(follow_ups.c.incident_id == incident_id))
        if e.statement:
            conn.execute(
                insert(statements),
                [
                    {
                        "incident_id": incident_id,
                        "version": v.version,
                        "status": v.status.value,
                        "text": v.text,
                        "drafted_by": v.drafted_by,
                        "drafted_at": v.drafted_at,
                        "reviewed_by": v.reviewed_by,
                        "reviewed_at": v.reviewed_at,
                        "published_at": v.published_at,
                    }
                    for v in e.statement
                ],
            )
        if e.follow_ups:
            conn.execute(
                insert(follow_ups),
                [
                    {
                        "incident_id": incident_id,
                        "item_id": i.item_id,
                        "target": i.target,
                        "owner": i.owner,
                        "due_at": i.due_at,
                        "outcome": i.outcome.value if i.outcome else None,
                        "outcome_at": i.outcome_at,
                    }
                    for i in e.follow_ups
                ],
            )

    @staticmethod
    def _write_offsets(conn: Connection, offsets: Offsets) -> None:
        c = sink_offsets.c
        keys = list(offsets)
        have = {
            (t, p)
            for t, p in conn.execute(
                select(c.topic, c.partition).where(tuple_(c.topic, c.partition).in_(keys))
            )
        }
        changed = [{"b_t": t, "b_p": p, "b_o": o} for (t, p), o in offsets.items() if (t, p) in have]
        added = [
            {"topic": t, "partition": p, "next_offset": o}
            for (t, p), o in offsets.items()
            if (t, p) not in have
        ]
        if changed:
            conn.execute(
                update(sink_offsets)
                .where(and_(c.topic == bindparam("b_t"), c.partition == bindparam("b_p")))
                .values(next_offset=bindparam("b_o")),
                changed,
            )
        if added:
            conn.execute(insert(sink_offsets), added)

    # -- what the desk's cache reads ----------------------------------------------------------
    def tier_changes_after(self, seq: int, limit: int = 5000) -> list[tuple[int, TierChange]]:
        c = tier_changes.c
        query = select(c.seq, c.payload).where(c.seq > seq).order_by(c.seq).limit(limit)
        with self._read() as conn:
            return [(s, TierChange.model_validate_json(p)) for s, p in conn.execute(query)]

    def recent_tier_changes(self, per_group: int) -> list[tuple[int, TierChange]]:
        """The latest `per_group` tier changes of every group, in write order (what the board shows)."""
        c = tier_changes.c
        ranked = select(
            c.seq,
            c.payload,
            func.row_number().over(partition_by=c.rule_group, order_by=c.seq.desc()).label("rn"),
        ).subquery()
        query = select(ranked.c.seq, ranked.c.payload).where(ranked.c.rn <= per_group).order_by(ranked.c.seq)
        with self._read() as conn:
            return [(s, TierChange.model_validate_json(p)) for s, p in conn.execute(query)]

    def incident_events_after(self, seq: int, limit: int = 5000) -> list[tuple[int, IncidentEvent]]:
        c = incident_events.c
        query = select(c.seq, c.payload).where(c.seq > seq).order_by(c.seq).limit(limit)
        with self._read() as conn:
            return [(s, IncidentEvent.model_validate_json(p)) for s, p in conn.execute(query)]

    # -- the ledger -------------------------------------------------------------------------
    def ledger_page(
        self, q: LedgerQuery, tiers: Mapping[str, int], limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """(how many entries match, the page of them), newest first seen first or largest spread first."""
        where = _ledger_where(q, tiers)
        c = ledger_entries.c
        key_col = c.spread if q.sort == "spread" else c.first_seen
        with self._read() as conn:
            total = conn.execute(select(func.count()).select_from(ledger_entries).where(*where)).scalar_one()
            if offset >= total:
                return total, []
            if total > _SORTED_HERE:
                query = (
                    select(ledger_entries)
                    .where(*where)
                    .order_by(key_col.desc(), c.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
                return total, [_ledger_row(r, tiers) for r in conn.execute(query)]
            # Few matches: sorted here rather than by walking the sort's index, which the planner would
            # choose and which reads every row when the matches are rare or sit at the far end (a group on a
            # platform it is seldom on: seconds at a million rows, bench/desk.py).
            keys = conn.execute(select(c.id, key_col).where(*where)).all()
            keys.sort(key=lambda r: (r[1], r[0]), reverse=True)
            ids = [r[0] for r in keys[offset : offset + limit]]
            by_id = {r.id: r for r in conn.execute(select(ledger_entries).where(c.id.in_(ids)))}
            return total, [_ledger_row(by_id[i], tiers) for i in ids if i in by_id]  # not purged meanwhile

    def ledger_chunks(
        self, q: LedgerQuery, tiers: Mapping[str, int], chunk: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        """Every matching entry in the query's order, `chunk` at a time, each chunk its own short read (keyset
        paging: a CSV over months neither holds a transaction open nor slows down with depth)."""
        where = _ledger_where(q, tiers)
        c = ledger_entries.c
        key_col = c.spread if q.sort == "spread" else c.first_seen
        after: tuple[Any, int] | None = None
        while True:
            cond = list(where)
            if after is not None:
                cond.append(or_(key_col < after[0], and_(key_col == after[0], c.id < after[1])))
            query = select(ledger_entries).where(*cond).order_by(key_col.desc(), c.id.desc()).limit(chunk)
            with self._read() as conn:
                rows = list(conn.execute(query))
            if not rows:
                return
            last = rows[-1]
            after = (last.spread if q.sort == "spread" else last.first_seen, last.id)
            yield [_ledger_row(r, tiers) for r in rows]
            if len(rows) < chunk:
                return

    def ledger_count(self) -> int:
        with self._read() as conn:
            return conn.execute(select(func.count()).select_from(ledger_entries)).scalar_one()

    def ledger_event_ids(self, entry_key: str) -> list[str]:
        """The ids of the KeywordHits that fed an entry (for audits)."""
        query = (
            select(ledger_hits.c.event_id)
            .join(ledger_entries, ledger_entries.c.id == ledger_hits.c.entry_id)
            .where(ledger_entries.c.entry_key == entry_key)
            .order_by(ledger_hits.c.event_time)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    # -- state every replica shares ------------------------------------------------------------
    def claim_link(self, nonce: str, incident_id: str, expires_at: datetime, now: datetime) -> bool:
        """True for the first caller of a link's nonce, on any replica; False once it was claimed."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(ack_links_used).values(
                        nonce=nonce, incident_id=incident_id, used_at=now, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        return True

    def release_link(self, nonce: str) -> None:
        """Give a claim back: the action it was for was not published, so the link may be used again."""
        with self.engine.begin() as conn:
            conn.execute(delete(ack_links_used).where(ack_links_used.c.nonce == nonce))

    def login_failures(self, keys: Sequence[str], since: datetime, most: int) -> dict[str, list[datetime]]:
        """Per key, its latest `most` failed logins at or after `since`, newest first."""
        c = login_failures.c
        out: dict[str, list[datetime]] = {}
        with self._read() as conn:
            for key in keys:
                query = (
                    select(c.failed_at)
                    .where(c.key == key, c.failed_at >= since)
                    .order_by(c.failed_at.desc())
                    .limit(most)
                )
                out[key] = list(conn.execute(query).scalars())
        return out

    def login_failed(self, keys: Sequence[str], now: datetime, forget_before: datetime) -> None:
        c = login_failures.c
        with self.engine.begin() as conn:
            conn.execute(delete(login_failures).where(c.key.in_(list(keys)), c.failed_at < forget_before))
            conn.execute(insert(login_failures), [{"key": k, "failed_at": now} for k in keys])

    def login_succeeded(self, keys: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(login_failures).where(login_failures.c.key.in_(list(keys))))

    def end_session(self, nonce: str, now: datetime, expires_at: datetime) -> None:
        """A console session ended by a logout: every replica refuses its cookie from now on."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(sessions_ended).values(nonce=nonce, ended_at=now, expires_at=expires_at))
        except IntegrityError:
            pass  # ended already (a second logout with a copied cookie, on another replica)

    def sessions_ended_after(self, after: int, now: datetime) -> list[tuple[int, str, datetime]]:
        """(id, nonce, expires_at) of the sessions ended after row `after` that have not yet expired."""
        c = sessions_ended.c
        query = select(c.id, c.nonce, c.expires_at).where(c.id > after, c.expires_at > now).order_by(c.id)
        with self._read() as conn:
            return [(r.id, r.nonce, r.expires_at) for r in conn.execute(query)]

    # -- retention --------------------------------------------------------------------------
    def purge(self, now: datetime, retention: Retention, batch: int = 5000) -> dict[str, int]:
        """Delete what outlived its table's retention; in batches, each its own short transaction."""
        purged = {
            "ledger_entries": 0,
            "tier_changes": 0,
            "incidents": 0,
            "ack_links_used": 0,
            "login_failures": 0,
            "sessions_ended": 0,
        }
        c = ledger_entries.c
        if retention.ledger_days:
            cutoff = now - timedelta(days=retention.ledger_days)
            while True:
                with self.engine.begin() as conn:
                    ids = list(conn.execute(select(c.id).where(c.last_seen < cutoff).limit(batch)).scalars())
                    if not ids:
                        break
                    conn.execute(delete(ledger_terms).where(ledger_terms.c.entry_id.in_(ids)))
                    conn.execute(delete(ledger_hits).where(ledger_hits.c.entry_id.in_(ids)))
                    conn.execute(delete(ledger_entries).where(c.id.in_(ids)))
                purged["ledger_entries"] += len(ids)
        if retention.tier_change_days:
            t = tier_changes.c
            cutoff = now - timedelta(days=retention.tier_change_days)
            # A group's latest change is its current tier: it stays, however old.
            latest = select(func.max(t.seq)).group_by(t.rule_group)
            with self.engine.begin() as conn:
                result = conn.execute(
                    delete(tier_changes).where(t.detected_at < cutoff, t.seq.not_in(latest))
                )
                purged["tier_changes"] = result.rowcount
        if retention.incident_days:
            i = incidents.c
            cutoff = now - timedelta(days=retention.incident_days)
            with self.engine.begin() as conn:
                old = list(
                    conn.execute(
                        select(i.incident_id).where(i.state.in_(_CLOSED), i.updated_at < cutoff)
                    ).scalars()
                )
                for chunk in _chunks(old, 1000):
                    for table in (incident_events, statements, follow_ups, incidents):
                        conn.execute(delete(table).where(table.c.incident_id.in_(chunk)))
                purged["incidents"] = len(old)
        with self.engine.begin() as conn:
            purged["ack_links_used"] = conn.execute(
                delete(ack_links_used).where(ack_links_used.c.expires_at < now)
            ).rowcount
            purged["login_failures"] = conn.execute(
                delete(login_failures).where(login_failures.c.failed_at < now - _LOGIN_MEMORY)
            ).rowcount
            purged["sessions_ended"] = conn.execute(
                delete(sessions_ended).where(sessions_ended.c.expires_at < now)
            ).rowcount
        return purged

    def _read(self, conn: Connection | None = None) -> Any:
        return nullcontext(conn) if conn is not None else self.engine.connect()


def _entry_key(h: KeywordHit) -> str:
    return f"{h.platform.value}:{h.post_id}|{h.group}"


# What `_updated_entry` reads of a stored entry, and what it may change.
_ENTRY_READ = (
    "id",
    "entry_key",
    "first_seen",
    "last_seen",
    "matched_terms",
    "hits",
    "reposts",
    "comments",
    "likes",
    "spread",
    "rule_version",
)
_ENTRY_UPDATED = (
    "reposts",
    "comments",
    "likes",
    "spread",
    "first_seen",
    "last_seen",
    "matched_terms",
    "rule_version",
    "hits",
)
_ENTRY_WRITTEN = (
    "entry_key",
    "platform",
    "post_id",
    "rule_group",
    "url",
    "excerpt",
    "excerpt_norm",
    "reposts",
    "comments",
    "likes",
    "spread",
    "sentiment",
    "demand",
    "matched_terms",
    "rule_version",
    "first_seen",
    "last_seen",
    "hits",
)


class _LedgerRows(Protocol):
    """How one sink transaction reads and writes the ledger's rows (`Store._write_hits` decides which)."""

    def stored_hits(self, event_ids: list[str]) -> set[str]: ...
    def entries(self, keys: list[str]) -> dict[str, Any]: ...
    def insert_entries(self, rows: list[dict[str, Any]]) -> dict[str, int]: ...
    def insert_terms(self, rows: list[tuple[str, int]]) -> None: ...
    def update_entries(self, rows: list[dict[str, Any]]) -> None: ...
    def insert_hits(self, rows: list[tuple[str, int, datetime]]) -> None: ...


class _CoreLedgerRows:
    """SQLAlchemy Core statements (SQLite): parameter lists in chunks under SQLite's limit."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def stored_hits(self, event_ids: list[str]) -> set[str]:
        column = ledger_hits.c.event_id
        return {
            i
            for chunk in _chunks(event_ids, 1000)
            for i in self.conn.execute(select(column).where(column.in_(chunk))).scalars()
        }

    def entries(self, keys: list[str]) -> dict[str, Any]:
        c = ledger_entries.c
        columns = [c[name] for name in _ENTRY_READ]
        return {
            row.entry_key: row
            for chunk in _chunks(keys, 1000)
            for row in self.conn.execute(select(*columns).where(c.entry_key.in_(chunk)))
        }

    def insert_entries(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        c = ledger_entries.c
        returned = self.conn.execute(
            insert(ledger_entries).returning(c.id, c.entry_key, sort_by_parameter_order=True), rows
        )
        return {key: entry_id for entry_id, key in returned}

    def insert_terms(self, rows: list[tuple[str, int]]) -> None:
        if rows:
            self.conn.execute(insert(ledger_terms), [{"term": t, "entry_id": i} for t, i in rows])

    def update_entries(self, rows: list[dict[str, Any]]) -> None:
        self.conn.execute(
            update(ledger_entries)
            .where(ledger_entries.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in _ENTRY_UPDATED}),
            [{f"b_{k}": v for k, v in u.items()} for u in rows],
        )

    def insert_hits(self, rows: list[tuple[str, int, datetime]]) -> None:
        self.conn.execute(
            insert(ledger_hits), [{"event_id": e, "entry_id": i, "event_time": t} for e, i, t in rows]
        )


class _PgLedgerRows:
    """psycopg on the transaction's own connection (PostgreSQL): one array parameter per lookup, the new
    entries' ids drawn from their sequence in one statement, and COPY for the new rows. Multi-row INSERTs of
    thousands of parameters cost more in building and parsing the statement than in storing the rows
    (bench/desk.py: about half of a batch's time). COPY into the tables themselves, not through a staging
    table and ON CONFLICT: the rows were looked up in this same transaction, and the writer lease (one
    writer at a time) keeps anyone else from adding them meanwhile."""

    def __init__(self, conn: Connection) -> None:
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        self.cursor = driver.cursor(row_factory=namedtuple_row)

    def stored_hits(self, event_ids: list[str]) -> set[str]:
        self.cursor.execute("SELECT event_id FROM ledger_hits WHERE event_id = ANY(%s)", (event_ids,))
        return {row[0] for row in self.cursor}

    def entries(self, keys: list[str]) -> dict[str, Any]:
        self.cursor.execute(
            f"SELECT {', '.join(_ENTRY_READ)} FROM ledger_entries WHERE entry_key = ANY(%s)",  # noqa: S608
            (keys,),
        )
        return {row[1]: row for row in self.cursor}  # entry_key

    def insert_entries(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        self.cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('ledger_entries', 'id')) AS id "
            "FROM generate_series(1, %s)",
            (len(rows),),
        )
        ids = [row[0] for row in self.cursor]
        with self.cursor.copy(f"COPY ledger_entries (id, {', '.join(_ENTRY_WRITTEN)}) FROM STDIN") as copy:
            for entry_id, values in zip(ids, rows, strict=True):
                copy.write_row((entry_id, *(values[name] for name in _ENTRY_WRITTEN)))
        return {values["entry_key"]: entry_id for entry_id, values in zip(ids, rows, strict=True)}

    def insert_terms(self, rows: list[tuple[str, int]]) -> None:
        with self.cursor.copy("COPY ledger_terms (term, entry_id) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def update_entries(self, rows: list[dict[str, Any]]) -> None:
        # executemany: psycopg pipelines the statements, one round trip for the lot.
        assignments = ", ".join(f"{name} = %({name})s" for name in _ENTRY_UPDATED)
        self.cursor.executemany(f"UPDATE ledger_entries SET {assignments} WHERE id = %(id)s", rows)  # noqa: S608

    def insert_hits(self, rows: list[tuple[str, int, datetime]]) -> None:
        with self.cursor.copy("COPY ledger_hits (event_id, entry_id, event_time) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _counts(h: KeywordHit) -> dict[str, int | None]:
    c = h.cumulative
    return {n: None if n in c.unknown else getattr(c, n) for n in ("reposts", "comments", "likes")}


def _spread(counts: Mapping[str, int | None]) -> int:
    return sum(v or 0 for v in counts.values())


def _terms_of(hits: Iterable[KeywordHit], known: Iterable[str] = ()) -> list[str]:
    found = dict.fromkeys(known)
    for h in hits:
        found.update(dict.fromkeys(m.term for m in h.matches))
    return list(found)


def _new_entry(key: str, hits: list[KeywordHit]) -> dict[str, Any]:
    first, last = hits[0], hits[-1]  # in event-time order
    counts = _counts(last)
    # Post text is the public's: a NUL in it (valid JSON as \u0000) is no reason to keep the post out of the
    # ledger, and PostgreSQL's text cannot hold one, so it is shown as the replacement character.
    excerpt = first.excerpt.replace("\x00", "\ufffd")
    return {
        "entry_key": key,
        "platform": first.platform.value,
        "post_id": first.post_id,
        "rule_group": first.group,
        "url": first.url,
        "excerpt": excerpt,
        "excerpt_norm": search.normalise(excerpt),
        **counts,
        "spread": _spread(counts),
        "sentiment": first.sentiment,
        "demand": first.demand,
        "matched_terms": json.dumps(_terms_of(hits)).decode(),
        "rule_version": last.rule_version,
        "first_seen": first.event_time,
        "last_seen": last.event_time,
        "hits": len(hits),
    }


def _updated_entry(row: Any, hits: list[KeywordHit]) -> dict[str, Any]:
    """The entry after more hits: the counts of the latest snapshot (a late, older one does not roll them
    back), the earliest first sighting, every matched term."""
    newest = hits[-1]
    values: dict[str, Any] = {
        "id": row.id,
        "first_seen": min(row.first_seen, hits[0].event_time),
        "matched_terms": json.dumps(_terms_of(hits, json.loads(row.matched_terms))).decode(),
        "hits": row.hits + len(hits),
        "last_seen": row.last_seen,
        "rule_version": row.rule_version,
        "reposts": row.reposts,
        "comments": row.comments,
        "likes": row.likes,
        "spread": row.spread,
    }
    if newest.event_time >= row.last_seen:
        counts = _counts(newest)
        values.update(
            counts, spread=_spread(counts), last_seen=newest.event_time, rule_version=newest.rule_version
        )
    return values


def _ledger_where(q: LedgerQuery, tiers: Mapping[str, int]) -> list[ColumnElement[bool]]:
    c = ledger_entries.c
    where: list[ColumnElement[bool]] = []
    if q.since is not None:
        where.append(c.last_seen >= q.since)
    if q.until is not None:
        where.append(c.first_seen <= q.until)
    for column, value in ((c.platform, q.platform), (c.rule_group, q.group), (c.demand, q.demand)):
        if value:
            where.append(column == value)
    if q.post:
        platform, _, post_id = q.post.partition(":")
        where.extend((c.platform == platform, c.post_id == post_id))
    if q.sentiment == "negative":
        where.append(c.sentiment < -NEUTRAL_BAND)
    elif q.sentiment == "positive":
        where.append(c.sentiment > NEUTRAL_BAND)
    elif q.sentiment == "neutral":
        where.append(c.sentiment.between(-NEUTRAL_BAND, NEUTRAL_BAND))
    if q.tier is not None:
        # The tier of an entry is its group's tier now, which the desk holds in memory (a handful of groups).
        if q.tier == 0:
            raised = [g for g, t in tiers.items() if t != 0]
            if raised:
                where.append(c.rule_group.not_in(raised))
        else:
            at = [g for g, t in tiers.items() if t == q.tier]
            where.append(c.rule_group.in_(at) if at else false())
    for norm, words in search.query_terms(q.text or ""):
        for word in words:
            where.append(c.id.in_(select(ledger_terms.c.entry_id).where(ledger_terms.c.term == word)))
        where.append(c.excerpt_norm.contains(norm, autoescape=True))
    return where


def _ledger_row(r: Any, tiers: Mapping[str, int]) -> dict[str, Any]:
    return {
        "platform": r.platform,
        "post_id": r.post_id,
        "url": r.url,
        "excerpt": r.excerpt,
        "group": r.rule_group,
        "tier": tiers.get(r.rule_group, 0),
        "reposts": r.reposts,
        "comments": r.comments,
        "likes": r.likes,
        "spread": r.spread,
        "sentiment": r.sentiment,
        "demand": r.demand,
        "first_seen": r.first_seen.isoformat(),
        "last_seen": r.last_seen.isoformat(),
        "matched_terms": json.loads(r.matched_terms),
        "rule_version": r.rule_version,
        "hits": r.hits,
    }
