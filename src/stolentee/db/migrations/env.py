"""Alembic environment: always driven by stolentee.db.migrate with a live connection."""

from __future__ import annotations

from alembic import context

from stolentee.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `stolentee db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs batch ALTER TABLE
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
