"""The ledger at a million entries: sorted by spread within a rule group or a platform, and one post.

Without the first two, a page sorted by spread and filtered by group or platform walks ix_ledger_spread from
the largest spread down, and reads every entry when the filter matches few (seconds at a million entries;
bench/desk.py, docs/benchmarks.md). The third serves the ledger's `post` filter (a board card's top post
links to its row), which would otherwise read every entry of the post's platform.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_group_spread", "ledger_entries", ["rule_group", "spread", "id"], unique=False)
    op.create_index("ix_ledger_platform_spread", "ledger_entries", ["platform", "spread", "id"], unique=False)
    op.create_index("ix_ledger_post", "ledger_entries", ["platform", "post_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ledger_post", table_name="ledger_entries")
    op.drop_index("ix_ledger_platform_spread", table_name="ledger_entries")
    op.drop_index("ix_ledger_group_spread", table_name="ledger_entries")
