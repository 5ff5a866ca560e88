"""Designs: the public base URL their objects are served from after a storage migration.

Revision ID: 0005_design_urls
Revises: 0004_designs
Create Date: 2026-12-02

``designs.public_base_url`` is NULL for a design served by the configured storage (its URLs come
from ``storage.public_url``). ``stolentee migrate-storage --rewrite-urls`` sets it to the new
store's public base URL (``https://assets.example.com``) for designs whose objects were all
verified there, and ``--rollback-urls`` puts the previous value back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_design_urls"
down_revision: str | None = "0004_designs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("designs") as batch_op:
        batch_op.add_column(sa.Column("public_base_url", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("designs") as batch_op:
        batch_op.drop_column("public_base_url")
