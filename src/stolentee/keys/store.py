"""API keys: create, list, revoke and authenticate them; count what each caller used.

Two kinds of key are accepted in the ``X-Api-Key`` header:

* **static keys** from ``STOLENTEE_API_KEYS``, compared in constant time against their SHA-256
  (``hmac.compare_digest`` over equal-length digests, every key compared on every call);
* **database keys** created with ``stolentee keys create``: ``st_`` followed by 40 URL-safe random
  characters. Only the key's SHA-256 and its first 8 characters (the *prefix*, shown in
  listings) are stored; the key itself is printed once and never kept.

Caching: a successful database lookup is kept in memory for ``cache_ttl_s`` (5 s by default),
so a revoked key stops working in *other* processes within that time; in the process that
revokes it, at once. Unknown keys are not cached (each costs one indexed lookup).
``last_used_at`` is written at most once per ``last_used_interval_s`` (60 s) per key and process,
so authentication is not a write hot spot.

Usage is counted per caller *label* and UTC day with one ``INSERT ... ON CONFLICT DO UPDATE``
statement, atomic on SQLite and PostgreSQL alike. Labels: ``db:<id>`` for database keys,
``env:<first 12 hex digits of the key's SHA-256>`` for static keys (never part of the key
itself, which may be short), and ``loopback`` for the keyless loopback mode.
"""

from __future__ import annotations

import builtins
import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Insert, Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.base import ReadOnlyColumnCollection

from stolentee.db.engine import Database
from stolentee.db.models import API_KEY_PREFIX_LENGTH, ApiKey, ApiUsage
from stolentee.errors import ConfigurationError, ConflictError, InvalidOptionError, StolenteeError
from stolentee.keys.principals import (
    ApiKeyRecord,
    Principal,
    Usage,
    UsageTotals,
    env_label,
    generate_key,
    hash_key,
)

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100
MAX_PRESENTED_KEY_LENGTH = 256  # longer header values are refused without hashing them
DEFAULT_CACHE_TTL_S = 5.0
DEFAULT_LAST_USED_INTERVAL_S = 60.0
MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class _CachedKey:
    principal: Principal
    key_id: int
    expires_at: float


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        premium=row.premium,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _totals(images: Any, megapixels: Any, credits: Any) -> UsageTotals:
    """Totals from a SQL row (``SUM`` gives NULL on no rows and Decimal on PostgreSQL)."""
    return UsageTotals(
        images=int(images or 0), megapixels=float(megapixels or 0), credits=float(credits or 0)
    )


class KeyStore:
    """API keys and usage counters, backed by the database; thread-safe, one per process."""

    def __init__(
        self,
        *,
        database: Database,
        static_keys: Sequence[str] = (),
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        last_used_interval_s: float = DEFAULT_LAST_USED_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._database = database
        self._static = tuple(
            (hash_key(key), Principal(env_label(key), f"STOLENTEE_API_KEYS #{n}", False, "env"))
            for n, key in enumerate(static_keys, start=1)
        )
        self._cache_ttl_s = cache_ttl_s
        self._last_used_interval_s = last_used_interval_s
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._cache: dict[str, _CachedKey] = {}
        self._last_touched: dict[int, float] = {}
        self._any_keys: tuple[bool, float] | None = None

    @property
    def static_key_count(self) -> int:
        """How many keys ``STOLENTEE_API_KEYS`` holds."""
        return len(self._static)

    # --- managing keys ------------------------------------------------------------------------

    def create(self, name: str, *, premium: bool = False) -> tuple[ApiKeyRecord, str]:
        """Store a new key; returns its record and the key itself, which is not kept."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidOptionError(f"a key name has 1 to {MAX_NAME_LENGTH} characters")
        key = generate_key()
        row = ApiKey(
            name=name,
            prefix=key[:API_KEY_PREFIX_LENGTH],
            key_hash=hash_key(key),
            premium=premium,
            created_at=self._now(),
        )
        with self._database.session() as session:
            session.add(row)
            session.flush()
            record = _record(row)
        with self._lock:
            self._any_keys = None
        return record, key

    def revoke(self, id_or_prefix: str) -> bool:
        """Revoke the active key with this id, prefix or full key; False when none matches.

        Raises :class:`ConflictError` when a prefix matches several active keys.
        """
        with self._database.session() as session:
            stmt = select(ApiKey.id).where(_identifies(id_or_prefix.strip()))
            ids = session.scalars(stmt.where(ApiKey.revoked_at.is_(None))).all()
        if len(ids) > 1:
            raise ConflictError(
                f"{id_or_prefix!r} matches {len(ids)} active keys; revoke one of them by id"
            )
        if not ids or not self._mark_revoked(ids[0]):
            return False
        self._forget(ids[0])
        return True

    def _mark_revoked(self, key_id: int) -> bool:
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=self._now())
        )
        with self._database.session() as session:
            result = cast("CursorResult[Any]", session.execute(stmt))
            return result.rowcount == 1

    def _forget(self, key_id: int) -> None:
        with self._lock:
            for digest in [d for d, c in self._cache.items() if c.key_id == key_id]:
                del self._cache[digest]
            self._last_touched.pop(key_id, None)
            self._any_keys = None

    def keys_configured(self) -> bool:
        """Whether any key is accepted at all (static, or an active database key).

        With none, the API serves loopback clients only. Cached for ``cache_ttl_s``.
        """
        if self._static:
            return True
        now = self._clock()
        with self._lock:
            if self._any_keys is not None and self._any_keys[1] > now:
                return self._any_keys[0]
        stmt = select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)
        with self._database.session() as session:
            found = session.scalars(stmt).first() is not None
        with self._lock:
            self._any_keys = (found, now + self._cache_ttl_s)
        return found

    # --- authentication -----------------------------------------------------------------------

    def authenticate(self, presented: str | None) -> Principal | None:
        """The caller a presented key belongs to, or None for a missing, unknown or revoked key."""
        if not presented or len(presented) > MAX_PRESENTED_KEY_LENGTH:
            return None
        digest = hash_key(presented)
        static = self._match_static(digest)
        if static is not None:
            return static
        entry = self._cached(digest) or self._lookup(digest)
        if entry is None:
            return None
        self._touch(entry.key_id)
        return entry.principal

    def _match_static(self, digest: str) -> Principal | None:
        """Compare against every static key, in constant time, without stopping at a match."""
        match: Principal | None = None
        for stored, principal in self._static:
            if hmac.compare_digest(digest, stored) and match is None:
                match = principal
        return match

    def _cached(self, digest: str) -> _CachedKey | None:
        with self._lock:
            entry = self._cache.get(digest)
            if entry is not None and entry.expires_at <= self._clock():
                del self._cache[digest]
                return None
            return entry

    def _lookup(self, digest: str) -> _CachedKey | None:
        stmt = select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
        with self._database.session() as session:
            row = session.scalars(stmt).one_or_none()
            record = None if row is None else _record(row)
        if record is None:
            return None
        entry = _CachedKey(record.principal(), record.id, self._clock() + self._cache_ttl_s)
        with self._lock:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()  # crude but bounded; the next lookups refill it
            self._cache[digest] = entry
        return entry

    def _touch(self, key_id: int) -> None:
        """Record ``last_used_at``, at most once per interval per key (best effort)."""
        now = self._clock()
        with self._lock:
            last = self._last_touched.get(key_id)
            if last is not None and now - last < self._last_used_interval_s:
                return
            self._last_touched[key_id] = now
        stmt = update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=self._now())
        try:
            with self._database.session() as session:
                session.execute(stmt)
        except (SQLAlchemyError, StolenteeError):
            log.warning("could not record last use of API key %d", key_id, exc_info=True)

    # --- usage --------------------------------------------------------------------------------

    def record_usage(
        self,
        principal: Principal,
        *,
        images: int = 1,
        megapixels: float = 0.0,
        credits: float = 0.0,
    ) -> None:
        """Add to the caller's counters for today (UTC), atomically."""
        if images < 0 or megapixels < 0 or credits < 0:
            raise ValueError("usage increments must not be negative")
        values = {
            "key_label": principal.label,
            "day": self._today(),
            "images": images,
            "megapixels": megapixels,
            "credits": credits,
        }
        with self._database.session() as session:
            session.execute(self._increment_statement(values))

    def _increment_statement(self, values: dict[str, Any]) -> Insert:
        """``INSERT ... ON CONFLICT (key_label, day) DO UPDATE SET n = n + excluded.n``."""
        dialect = self._database.engine.dialect.name
        if dialect == "postgresql":
            pg_stmt = postgresql.insert(ApiUsage).values(values)
            return pg_stmt.on_conflict_do_update(
                index_elements=_USAGE_KEY, set_=_increments(pg_stmt.excluded)
            )
        if dialect == "sqlite":
            lite_stmt = sqlite.insert(ApiUsage).values(values)
            return lite_stmt.on_conflict_do_update(
                index_elements=_USAGE_KEY, set_=_increments(lite_stmt.excluded)
            )
        raise ConfigurationError(f"usage counting needs SQLite or PostgreSQL, not {dialect}")

    def usage(self, principal: Principal) -> Usage:
        """The caller's totals for today (UTC) and all time."""
        with self._database.session() as session:
            total = session.execute(_sums().where(ApiUsage.key_label == principal.label)).one()
            today = session.get(ApiUsage, (principal.label, self._today()))
            today_totals = (
                UsageTotals()
                if today is None
                else _totals(today.images, today.megapixels, today.credits)
            )
        return Usage(today=today_totals, all_time=_totals(*total))

    def usage_by_label(self) -> dict[str, UsageTotals]:
        """All-time totals of every caller that has used the API, keyed by label."""
        stmt = _sums().add_columns(ApiUsage.key_label).group_by(ApiUsage.key_label)
        with self._database.session() as session:
            rows = session.execute(stmt).all()
        return {row[3]: _totals(row[0], row[1], row[2]) for row in rows}

    def _today(self) -> date:
        return self._now().astimezone(UTC).date()

    # --- listing (last: the method name shadows ``list`` in the class body) --------------------

    def list(self) -> builtins.list[ApiKeyRecord]:
        """Every database key, revoked ones included, oldest first."""
        with self._database.session() as session:
            rows = session.scalars(select(ApiKey).order_by(ApiKey.id)).all()
            return [_record(row) for row in rows]


_USAGE_KEY = [ApiUsage.key_label, ApiUsage.day]


def _increments(excluded: ReadOnlyColumnCollection[str, Any]) -> dict[Any, Any]:
    """``SET counter = counter + excluded.counter`` for each counter."""
    return {
        ApiUsage.images: ApiUsage.images + excluded.images,
        ApiUsage.megapixels: ApiUsage.megapixels + excluded.megapixels,
        ApiUsage.credits: ApiUsage.credits + excluded.credits,
    }


def _identifies(ident: str) -> ColumnElement[bool]:
    """Match a key by id (digits), full key (``st_…``) or its 8-character prefix."""
    if ident.isascii() and ident.isdigit() and len(ident) <= 9:
        return ApiKey.id == int(ident)
    if len(ident) > API_KEY_PREFIX_LENGTH:
        return ApiKey.key_hash == hash_key(ident)
    return ApiKey.prefix == ident


def _sums() -> Select[int, float, float]:
    """``SUM`` of each counter (NULL, read as 0, when there are no rows)."""
    return select(
        func.sum(ApiUsage.images), func.sum(ApiUsage.megapixels), func.sum(ApiUsage.credits)
    )
