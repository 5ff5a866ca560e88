"""Designs: the callback URL a finished design is announced to, and the job delivering it.

Revision ID: 0007_design_callbacks
Revises: 0006_removal_stats
Create Date: 2026-12-08

``designs.callback_url`` is NULL unless the upload gave a ``callback_url`` (accepted only when
``STOLENTEE_CALLBACKS_ENABLED`` is on and the URL passes the callback URL policy).
``designs.callback_job_id`` is set, in the same transaction that makes the design's job ``done``
or ``failed``, to the ``callback`` job that delivers the signed notice; the job row records the
delivery's attempts, last error and outcome (``stolentee.designs.callbacks``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_design_callbacks"
down_revision: str | None = "0006_removal_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("designs") as batch_op:
        batch_op.add_column(sa.Column("callback_url", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("callback_job_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("designs") as batch_op:
        batch_op.drop_column("callback_job_id")
        batch_op.drop_column("callback_url")
