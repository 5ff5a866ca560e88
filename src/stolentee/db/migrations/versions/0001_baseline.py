"""Baseline: an empty schema under Alembic's version control.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-28

Later revisions add the tables of each subsystem (designs, jobs, removal statistics).
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
