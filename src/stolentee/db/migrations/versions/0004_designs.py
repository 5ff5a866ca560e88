"""Designs: uploads, their job and their cutout.

Revision ID: 0004_designs
Revises: 0003_jobs
Create Date: 2026-11-28

``designs`` records each upload (original's key, type, size), the job that processes it, and the
content-addressed cutout it produced. An owner's ``Idempotency-Key`` is unique.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_designs"
down_revision: str | None = "0003_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "designs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("original_key", sa.String(length=1024), nullable=False),
        sa.Column("original_content_type", sa.String(length=100), nullable=False),
        sa.Column("original_width", sa.Integer(), nullable=False),
        sa.Column("original_height", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("output_format", sa.String(length=10), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("cutout_key", sa.String(length=1024), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_designs")),
        sa.UniqueConstraint("owner", "idempotency_key", name=op.f("uq_designs_owner")),
    )
    op.create_index(op.f("ix_designs_owner"), "designs", ["owner"], unique=False)
    op.create_index(op.f("ix_designs_cutout_key"), "designs", ["cutout_key"], unique=False)
    op.create_index(op.f("ix_designs_created_at"), "designs", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_designs_created_at"), table_name="designs")
    op.drop_index(op.f("ix_designs_cutout_key"), table_name="designs")
    op.drop_index(op.f("ix_designs_owner"), table_name="designs")
    op.drop_table("designs")
