"""ORM base shared by every table, and the tables themselves (one section per subsystem).

Each table here has a hand-written Alembic revision under ``migrations/versions`` that creates it
exactly as declared; ``tests/keys/test_schema.py`` compares the two on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    Integer,
    MetaData,
    String,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are converted to UTC
    before they are stored and read back as aware UTC datetimes. Naive datetimes are refused on
    the way in: they are a bug waiting to happen.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware datetime (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# --- API keys (stolentee.keys) -----------------------------------------------------------------

API_KEY_PREFIX_LENGTH = 8


class ApiKey(Base):
    """An API key created with ``stolentee keys create``. Only the key's SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(API_KEY_PREFIX_LENGTH), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    premium: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ApiUsage(Base):
    """Requests served per caller per UTC day.

    ``key_label`` names the caller whatever its kind (``db:<id>``, ``env:<hash>``,
    ``loopback``), so keys from the environment and loopback clients are counted too; the
    primary key (``key_label``, ``day``) is what the usage upsert conflicts on.
    """

    __tablename__ = "api_usage"

    key_label: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    images: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    megapixels: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    credits: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
