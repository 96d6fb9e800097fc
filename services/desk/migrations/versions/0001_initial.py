"""The desk store: ledger, tier changes, incidents, shared replica state, sink offsets.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ack_links_used",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.Text(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_table(
        "follow_ups",
        sa.Column("incident_id", sa.Text(), nullable=False),
        sa.Column("item_id", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("incident_id", "item_id"),
    )
    op.create_table(
        "incident_events",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_incident_events_incident", "incident_events", ["incident_id", "sequence"], unique=False
    )
    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.Text(), nullable=False),
        sa.Column("rule_group", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_index("ix_incidents_opened", "incidents", ["opened_at"], unique=False)
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("entry_key", sa.Text(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("post_id", sa.Text(), nullable=False),
        sa.Column("rule_group", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.Column("excerpt_norm", sa.Text(), nullable=False),
        sa.Column("reposts", sa.BigInteger(), nullable=True),
        sa.Column("comments", sa.BigInteger(), nullable=True),
        sa.Column("likes", sa.BigInteger(), nullable=True),
        sa.Column("spread", sa.BigInteger(), nullable=False),
        sa.Column("sentiment", sa.Float(), nullable=False),
        sa.Column("demand", sa.Text(), nullable=False),
        sa.Column("matched_terms", sa.Text(), nullable=False),
        sa.Column("rule_version", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_key"),
    )
    op.create_index("ix_ledger_first_seen", "ledger_entries", ["first_seen", "id"], unique=False)
    op.create_index(
        "ix_ledger_group_first_seen", "ledger_entries", ["rule_group", "first_seen"], unique=False
    )
    op.create_index("ix_ledger_last_seen", "ledger_entries", ["last_seen"], unique=False)
    op.create_index(
        "ix_ledger_platform_first_seen", "ledger_entries", ["platform", "first_seen"], unique=False
    )
    op.create_index("ix_ledger_spread", "ledger_entries", ["spread", "id"], unique=False)
    op.create_table(
        "login_failures",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failures_key", "login_failures", ["key", "failed_at"], unique=False)
    op.create_table(
        "sink_offsets",
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition"),
    )
    op.create_table(
        "statements",
        sa.Column("incident_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("drafted_by", sa.Text(), nullable=False),
        sa.Column("drafted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.Text(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("incident_id", "version"),
    )
    op.create_table(
        "tier_changes",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("rule_group", sa.Text(), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("previous", sa.Integer(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_tier_changes_detected", "tier_changes", ["detected_at"], unique=False)
    op.create_index("ix_tier_changes_group_seq", "tier_changes", ["rule_group", "seq"], unique=False)
    op.create_table(
        "ledger_hits",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_ledger_hits_entry", "ledger_hits", ["entry_id"], unique=False)
    op.create_table(
        "ledger_terms",
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("term", "entry_id"),
    )
    op.create_index("ix_ledger_terms_entry", "ledger_terms", ["entry_id"], unique=False)


def downgrade() -> None:
    op.drop_table("ledger_terms")
    op.drop_table("ledger_hits")
    op.drop_table("tier_changes")
    op.drop_table("statements")
    op.drop_table("sink_offsets")
    op.drop_table("login_failures")
    op.drop_table("ledger_entries")
    op.drop_table("incidents")
    op.drop_table("incident_events")
    op.drop_table("follow_ups")
    op.drop_table("ack_links_used")
