"""What one removal attempt adds to the statistics tables: the upserts' parameters, checked,
and the ``INSERT ... ON CONFLICT DO UPDATE`` statements that add them up inside the database."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite

from stolentee.db.models import (
    REMOVAL_FAILURE_KINDS,
    REMOVAL_MODEL_LENGTH,
    REMOVAL_PROVIDER_LENGTH,
)
from stolentee.errors import ConfigurationError
from stolentee.removal.base import RemovalEvent
from stolentee.removal.stats.buckets import latency_bucket
from stolentee.removal.stats.columns import BUCKET_COLUMNS, FAILURE_COLUMNS


def row_values(event: RemovalEvent) -> dict[str, Any]:
    """The upsert's parameters for one event: its key, 1 in each counter it adds to, its sums."""
    provider = event.provider
    if not provider or len(provider) > REMOVAL_PROVIDER_LENGTH:
        raise ValueError(f"provider name must have 1 to {REMOVAL_PROVIDER_LENGTH} characters")
    if event.ok == (event.failure_kind is not None):
        raise ValueError("a failed attempt needs a failure kind, and a successful one none")
    if event.failure_kind is not None and event.failure_kind not in REMOVAL_FAILURE_KINDS:
        raise ValueError(f"unknown failure kind {event.failure_kind!r}")
    figures = {
        "latency_ms_sum": event.latency_ms,
        "megapixels": event.megapixels,
        "credits_charged": event.credits_charged,
        "credits_avoided": event.credits_avoided,
    }
    for name, value in figures.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0; got {value}")
    if event.at.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime (UTC)")
    bucket = latency_bucket(event.latency_ms)
    values: dict[str, Any] = {
        "day": event.at.astimezone(UTC).date(),
        "provider": provider,
        "premium": event.premium,
        "requests": 1,
        "successes": 1 if event.ok else 0,
    }
    for kind, column in zip(REMOVAL_FAILURE_KINDS, FAILURE_COLUMNS, strict=True):
        values[column] = 1 if kind == event.failure_kind else 0
    for index, column in enumerate(BUCKET_COLUMNS):
        values[column] = 1 if index == bucket else 0
    values.update(figures)
    return values


def model_values(event: RemovalEvent) -> dict[str, Any] | None:
    """The per-model upsert's parameters of a successful attempt (failures have no model)."""
    if not event.ok:
        return None
    model = event.model
    if not model or len(model) > REMOVAL_MODEL_LENGTH:
        raise ValueError(f"model name must have 1 to {REMOVAL_MODEL_LENGTH} characters")
    return {
        "day": event.at.astimezone(UTC).date(),
        "provider": event.provider,
        "model": model,
        "premium": event.premium,
        "removals": 1,
        "latency_ms_sum": event.latency_ms,
        "megapixels": event.megapixels,
        "credits_avoided": event.credits_avoided,
    }


def add_pending(
    pending: dict[tuple[Any, ...], dict[str, Any]],
    values: dict[str, Any],
    keys: tuple[str, ...],
    counters: tuple[str, ...],
) -> None:
    key = tuple(values[name] for name in keys)
    known = pending.get(key)
    if known is None:
        pending[key] = values
        return
    for name in counters:
        known[name] += values[name]


def upsert_statement(
    dialect: str, table: Table, keys: tuple[str, ...], counters: tuple[str, ...]
) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET n = n + excluded.n`` for each counter."""
    key = [table.c[name] for name in keys]
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(table)
        return pg_stmt.on_conflict_do_update(
            index_elements=key,
            set_={name: table.c[name] + pg_stmt.excluded[name] for name in counters},
        )
    if dialect == "sqlite":
        lite_stmt = sqlite.insert(table)
        return lite_stmt.on_conflict_do_update(
            index_elements=key,
            set_={name: table.c[name] + lite_stmt.excluded[name] for name in counters},
        )
    raise ConfigurationError(f"removal statistics need SQLite or PostgreSQL, not {dialect}")
