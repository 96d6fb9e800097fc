"""The desk store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

The migrations in `services/desk/migrations/` create exactly these; `tests/desk/test_store.py` checks that
the migrated schema and this module agree. Times are UTC: `UtcDateTime` writes aware datetimes as UTC (naive
ones are refused) and gives them back aware, on SQLite too, which keeps no time zone of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import DateTime, TypeDecorator

__all__ = [
    "METADATA",
    "ack_links_used",
    "follow_ups",
    "incident_events",
    "incidents",
    "ledger_entries",
    "ledger_hits",
    "ledger_terms",
    "login_failures",
    "sessions_ended",
    "sink_offsets",
    "statements",
    "tier_changes",
]


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC (timestamptz on PostgreSQL, ISO text on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store keeps UTC and needs an explicit time zone")
        value = value.astimezone(UTC)
        # SQLite compares the stored text: one form (naive UTC) keeps its order the order of time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# An autoincrementing 64-bit key: SQLite makes only INTEGER PRIMARY KEY an alias of its rowid.
_Id = BigInteger().with_variant(Integer(), "sqlite")

METADATA = MetaData()

# The 台账: one row per post and rule group, fed by every keyword hit of that post in that group.
ledger_entries = Table(
    "ledger_entries",
    METADATA,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("entry_key", Text, nullable=False, unique=True),  # platform:post_id|group
    Column("platform", String(16), nullable=False),
    Column("post_id", Text, nullable=False),
    Column("rule_group", Text, nullable=False),
    Column("url", Text, nullable=True),
    Column("excerpt", Text, nullable=False),
    Column("excerpt_norm", Text, nullable=False),  # search.normalise(excerpt): what keyword search reads
    Column("reposts", BigInteger, nullable=True),  # NULL: the platform never reported it (never 0)
    Column("comments", BigInteger, nullable=True),
    Column("likes", BigInteger, nullable=True),
    Column("spread", BigInteger, nullable=False),  # what is known: unknown counts add nothing
    Column("sentiment", Float, nullable=False),
    Column("demand", Text, nullable=False),
    Column("matched_terms", Text, nullable=False),  # JSON list of the terms the matcher found
    Column("rule_version", Text, nullable=False),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("hits", Integer, nullable=False),
    Index("ix_ledger_first_seen", "first_seen", "id"),
    Index("ix_ledger_last_seen", "last_seen"),
    Index("ix_ledger_group_first_seen", "rule_group", "first_seen"),
    Index("ix_ledger_platform_first_seen", "platform", "first_seen"),
    Index("ix_ledger_spread", "spread", "id"),
    Index("ix_ledger_group_spread", "rule_group", "spread", "id"),
    Index("ix_ledger_platform_spread", "platform", "spread", "id"),
    Index("ix_ledger_post", "platform", "post_id"),  # the `post` filter
)

# Every KeywordHit that fed an entry, by its event id: what makes the sink idempotent.
ledger_hits = Table(
    "ledger_hits",
    METADATA,
    Column("event_id", String(64), primary_key=True),
    Column("entry_id", _Id, ForeignKey("ledger_entries.id", ondelete="CASCADE"), nullable=False),
    Column("event_time", UtcDateTime, nullable=False),
    Index("ix_ledger_hits_entry", "entry_id"),
)

# Keyword search: the words of each entry's normalised excerpt and matched terms (services/desk/search.py).
ledger_terms = Table(
    "ledger_terms",
    METADATA,
    Column("term", String(64), primary_key=True),
    Column(
        "entry_id",
        _Id,
        ForeignKey("ledger_entries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Index("ix_ledger_terms_entry", "entry_id"),
)

tier_changes = Table(
    "tier_changes",
    METADATA,
    Column("seq", _Id, primary_key=True, autoincrement=True),  # write order: replicas read what is new
    Column("event_id", String(64), nullable=False, unique=True),
    Column("rule_group", Text, nullable=False),
    Column("tier", Integer, nullable=False),
    Column("previous", Integer, nullable=False),
    Column("event_time", UtcDateTime, nullable=False),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("payload", Text, nullable=False),  # the TierChange as JSON
    Index("ix_tier_changes_group_seq", "rule_group", "seq"),
    Index("ix_tier_changes_detected", "detected_at"),
)

incidents = Table(
    "incidents",
    METADATA,
    Column("incident_id", Text, primary_key=True),
    Column("rule_group", Text, nullable=False),
    Column("state", String(32), nullable=False),
    Column("tier", Integer, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_sequence", Integer, nullable=False),
    Index("ix_incidents_opened", "opened_at"),
)

# The timeline: every IncidentEvent, whole.
incident_events = Table(
    "incident_events",
    METADATA,
    Column("seq", _Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("incident_id", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("event_time", UtcDateTime, nullable=False),
    Column("state", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # the IncidentEvent as JSON
    Index("ix_incident_events_incident", "incident_id", "sequence"),
)

# The statement versions and 回访 items as the incident's latest event has them.
statements = Table(
    "statements",
    METADATA,
    Column("incident_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("status", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("drafted_by", Text, nullable=False),
    Column("drafted_at", UtcDateTime, nullable=False),
    Column("reviewed_by", Text, nullable=True),
    Column("reviewed_at", UtcDateTime, nullable=True),
    Column("published_at", UtcDateTime, nullable=True),
)

follow_ups = Table(
    "follow_ups",
    METADATA,
    Column("incident_id", Text, primary_key=True),
    Column("item_id", String(16), primary_key=True),
    Column("target", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("outcome", String(32), nullable=True),
    Column("outcome_at", UtcDateTime, nullable=True),
)

# Ack links acted on, by nonce: the primary key makes a link single use across every desk replica.
ack_links_used = Table(
    "ack_links_used",
    METADATA,
    Column("nonce", String(64), primary_key=True),
    Column("incident_id", Text, nullable=False),
    Column("used_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),  # purged after: an expired link is refused anyway
)

# Failed console logins, one row per failure and key (client address, name): the lockout of every replica.
login_failures = Table(
    "login_failures",
    METADATA,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("failed_at", UtcDateTime, nullable=False),
    Index("ix_login_failures_key", "key", "failed_at"),
)

# Console sessions ended by a logout, by nonce: every replica refuses a copied cookie of one (it follows the
# rows by id). Purged once the session would have expired anyway.
sessions_ended = Table(
    "sessions_ended",
    METADATA,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("nonce", String(64), nullable=False, unique=True),
    Column("ended_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# The sink's position: the next offset to read per topic partition, written with the rows it read.
sink_offsets = Table(
    "sink_offsets",
    METADATA,
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)
