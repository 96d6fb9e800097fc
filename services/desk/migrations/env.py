"""Alembic's environment for the desk store: run in process by `Store.migrate` on its connection."""

from __future__ import annotations

from alembic import context

from services.desk.tables import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
