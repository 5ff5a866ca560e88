"""Jobs: runs held up by the infrastructure (storage, database) are counted apart from attempts;
designs: an index on ``original_key`` (``stolentee storage gc`` looks originals up by key).

Revision ID: 0008_job_stalls
Revises: 0007_design_callbacks
Create Date: 2026-12-06

``jobs.stalls`` counts the runs that failed because storage or the database did (a full disk, a
restarting server); they are queued again with their own backoff and do not use up
``max_attempts``, for as long as ``STOLENTEE_JOB_STALL_RETRY_S`` after ``jobs.stalled_since`` (the
first such run since the job last made progress). Both columns are additive with defaults, so a
previous release keeps working against the upgraded table; the index is additive too.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_job_stalls"
down_revision: str | None = "0007_design_callbacks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.add_column(
            sa.Column("stalls", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("stalled_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_designs_original_key", "designs", ["original_key"])


def downgrade() -> None:
    op.drop_index("ix_designs_original_key", table_name="designs")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("stalled_since")
        batch_op.drop_column("stalls")
