"""Removals per model: successful removals per (UTC day, provider, model, caller tier).

Revision ID: 0011_removal_model_stats
Revises: 0010_alerts
Create Date: 2026-12-07

A new table only: the previous release never reads or writes it, so it keeps working against
the upgraded schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_removal_model_stats"
down_revision: str | None = "0010_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    zero = sa.text("0")
    op.create_table(
        "removal_model_daily",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("provider", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("premium", sa.Boolean(), primary_key=True),
        sa.Column("removals", sa.BigInteger(), nullable=False, server_default=zero),
        sa.Column("latency_ms_sum", sa.Float(), nullable=False, server_default=zero),
        sa.Column("megapixels", sa.Float(), nullable=False, server_default=zero),
        sa.Column("credits_avoided", sa.Float(), nullable=False, server_default=zero),
    )


def downgrade() -> None:
    op.drop_table("removal_model_daily")
