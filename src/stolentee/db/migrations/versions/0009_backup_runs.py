"""Backups: one row per finished ``stolentee backup create`` (the last one's age in health).

Revision ID: 0009_backup_runs
Revises: 0008_job_stalls
Create Date: 2026-12-07

A new table only: the previous release never reads it, so it keeps working against the
upgraded schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_backup_runs"
down_revision: str | None = "0008_job_stalls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backup_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("copied_objects", sa.Integer(), nullable=False),
        sa.Column("copied_bytes", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_backup_runs_finished_at", "backup_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_backup_runs_finished_at", table_name="backup_runs")
    op.drop_table("backup_runs")
