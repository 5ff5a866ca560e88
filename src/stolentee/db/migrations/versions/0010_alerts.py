"""Health notifications: the leases table (which replica watches), each component's observed
and announced status, and the notices' outbox.

Revision ID: 0010_alerts
Revises: 0009_backup_runs
Create Date: 2026-12-07

New tables only: the previous release never reads them, so it keeps working against the
upgraded schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_alerts"
down_revision: str | None = "0009_backup_runs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "alert_components",
        sa.Column("component", sa.String(128), primary_key=True),
        sa.Column("observed_status", sa.String(8), nullable=False),
        sa.Column("observed_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("announced_status", sa.String(8), nullable=True),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "alert_notices",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("component", sa.String(128), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("previous", sa.String(8), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("given_up", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_alert_notices_created_at", "alert_notices", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_notices_created_at", table_name="alert_notices")
    op.drop_table("alert_notices")
    op.drop_table("alert_components")
    op.drop_table("leases")
