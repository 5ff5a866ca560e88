"""Removal statistics: attempts per provider, UTC day and caller tier.

Revision ID: 0006_removal_stats
Revises: 0005_design_urls
Create Date: 2026-12-05

``removal_stats_daily`` holds one row per (day, provider, premium) with counters that
``stolentee.removal.stats.store.RemovalStatsStore`` increments with one ``INSERT ... ON CONFLICT DO
UPDATE`` per attempt: requests, successes, failures per kind, a latency histogram (46 fixed
buckets: below 5 ms, 44 log-spaced up to 120 s, 120 s and more), and sums of latency,
megapixels, credits charged by Remove.bg and credits avoided by self-hosting.

The failure kinds and the bucket count are frozen here as they were at this revision; a later
change to the model needs a revision of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_removal_stats"
down_revision: str | None = "0005_design_urls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FAILURE_KINDS = (
    "timeout",
    "connect",
    "server_error",
    "rate_limited",
    "out_of_credits",
    "rejected",
    "bad_response",
    "internal",
)
_LATENCY_BUCKETS = 46


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)


def _sum(name: str) -> sa.Column[float]:
    return sa.Column(name, sa.Float(), server_default=sa.text("0"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "removal_stats_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("premium", sa.Boolean(), nullable=False),
        _counter("requests"),
        _counter("successes"),
        *(_counter(f"failures_{kind}") for kind in _FAILURE_KINDS),
        _sum("latency_ms_sum"),
        *(_counter(f"latency_bucket_{index:02d}") for index in range(_LATENCY_BUCKETS)),
        _sum("megapixels"),
        _sum("credits_charged"),
        _sum("credits_avoided"),
        sa.PrimaryKeyConstraint("day", "provider", "premium", name=op.f("pk_removal_stats_daily")),
    )


def downgrade() -> None:
    op.drop_table("removal_stats_daily")
