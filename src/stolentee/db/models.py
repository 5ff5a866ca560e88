"""ORM base shared by every table, and the tables themselves (one section per subsystem).

Each table here has a hand-written Alembic revision under ``migrations/versions`` that creates it
exactly as declared; ``tests/keys/test_schema.py`` compares the two on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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


# --- jobs (stolentee.jobs) ---------------------------------------------------------------------

JOB_STATES = ("queued", "processing", "done", "failed")
JOB_ID_LENGTH = 32  # uuid4 hex
JOB_KIND_LENGTH = 64
JOB_OWNER_LENGTH = 255
CALLBACK_URL_LENGTH = 2048


class Job(Base):
    """A unit of background work; the table is the source of truth, the queue only carries ids.

    ``queued`` jobs become eligible at ``available_at`` (retries are pushed back with
    exponential backoff). A worker leases one (``processing``, ``lease_owner``,
    ``lease_expires_at``) and heartbeats until it writes ``done`` with ``result`` or fails it;
    a lease that expires is reclaimed by the reaper. ``sent_at`` is when a queue message for the
    job was last sent (or becomes due): a queued job not leased long after that lost its message
    and is sent again. ``lost`` counts attempts whose worker vanished (lease expired).
    ``stalls`` counts runs failed by storage or the database rather than by the job (not
    attempts: see ``stolentee.jobs.queue``), since ``stalled_since``.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'processing', 'done', 'failed')", name="state"),
        # Workers' hot paths: lease by primary key; the reaper and figures by state and time.
        Index("ix_jobs_state_available_at", "state", "available_at"),
        Index("ix_jobs_state_lease_expires_at", "state", "lease_expires_at"),
        Index("ix_jobs_state_finished_at", "state", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(JOB_ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(JOB_KIND_LENGTH))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    lost: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    stalls: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    stalled_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    available_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(JOB_OWNER_LENGTH))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.state} attempt {self.attempts}>"


# --- designs (designs.py) ----------------------------------------------------------------------


class Design(Base):
    """A customer's upload and, once its job is done, the cutout (:mod:`stolentee.designs`)."""

    __tablename__ = "designs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    original_key: Mapped[str] = mapped_column(String(1024), index=True)
    original_content_type: Mapped[str] = mapped_column(String(100))
    original_width: Mapped[int] = mapped_column(Integer)
    original_height: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    output_format: Mapped[str] = mapped_column(String(10))
    job_id: Mapped[str | None] = mapped_column(String(64))
    cutout_key: Mapped[str | None] = mapped_column(String(1024), index=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # NULL: served by the configured storage. Set by a storage migration's URL rewrite to the
    # new store's public base URL (``https://assets.example.com``, no trailing '/').
    public_base_url: Mapped[str | None] = mapped_column(String(1024))
    # Where to POST the signed notice when the design is done or failed (NULL: nowhere), and the
    # ``callback`` job delivering it, set in the transaction that finishes the design's job.
    callback_url: Mapped[str | None] = mapped_column(String(CALLBACK_URL_LENGTH))
    callback_job_id: Mapped[str | None] = mapped_column(String(JOB_ID_LENGTH))


# --- backups (stolentee.backup) -----------------------------------------------------------------


class BackupRun(Base):
    """A finished ``stolentee backup create``: when, where to, how much (health, metrics)."""

    __tablename__ = "backup_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(1024))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    objects: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    copied_objects: Mapped[int] = mapped_column(Integer)
    copied_bytes: Mapped[int] = mapped_column(BigInteger)


# --- health notifications (stolentee.alerts) -----------------------------------------------------


class Lease(Base):
    """A named lease one process holds until ``expires_at`` (renewed while it lives): the
    replica that sends health notices is the one holding ``alerts``."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AlertComponent(Base):
    """What the watcher last saw of one component, and what it last announced."""

    __tablename__ = "alert_components"

    component: Mapped[str] = mapped_column(String(128), primary_key=True)
    observed_status: Mapped[str] = mapped_column(String(8))
    observed_since: Mapped[datetime] = mapped_column(UtcDateTime)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    announced_status: Mapped[str | None] = mapped_column(String(8), nullable=True)
    announced_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AlertNotice(Base):
    """One announced change of a component, delivered (retried) to the webhook."""

    __tablename__ = "alert_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    component: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(8))
    previous: Mapped[str | None] = mapped_column(String(8), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    given_up: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


# --- removal statistics (stolentee.removal.stats) ------------------------------------------------

# ``stolentee.removal.base.FailureKind``, in its order (a test keeps the two equal): one counter
# column per kind, so that every counter is incremented by the same atomic upsert.
REMOVAL_FAILURE_KINDS = (
    "timeout",
    "connect",
    "server_error",
    "rate_limited",
    "out_of_credits",
    "rejected",
    "bad_response",
    "internal",
)
# Latency histogram: bucket 0 is below 5 ms, bucket 45 is 120 s and more, the 44 in between are
# log-spaced (``stolentee.removal.stats.buckets.LATENCY_BOUNDS_MS``). The boundaries are part of the
# schema: changing them needs a new revision that converts or drops the old counts.
REMOVAL_LATENCY_BUCKETS = 46
REMOVAL_PROVIDER_LENGTH = 64


def failure_column(kind: str) -> str:
    """The ``removal_stats_daily`` column counting failures of ``kind``."""
    return f"failures_{kind}"


def latency_bucket_column(index: int) -> str:
    """The ``removal_stats_daily`` column counting attempts in latency bucket ``index``."""
    return f"latency_bucket_{index:02d}"


def _counter(name: str) -> Column[int]:
    return Column(name, BigInteger, nullable=False, server_default=text("0"))


def _sum(name: str) -> Column[float]:
    return Column(name, Float, nullable=False, server_default=text("0"))


# Attempts of each removal provider per UTC day and caller tier (``stolentee stats removal``).
# A Core table rather than a mapped class: its 50-odd counters are generated from the constants
# above and only ever written by one ``INSERT ... ON CONFLICT DO UPDATE`` per attempt.
removal_stats_daily = Table(
    "removal_stats_daily",
    Base.metadata,
    Column("day", Date, primary_key=True),  # UTC day of the attempt
    Column("provider", String(REMOVAL_PROVIDER_LENGTH), primary_key=True),
    Column("premium", Boolean, primary_key=True),  # the caller's tier
    _counter("requests"),
    _counter("successes"),
    *(_counter(failure_column(kind)) for kind in REMOVAL_FAILURE_KINDS),
    _sum("latency_ms_sum"),
    *(_counter(latency_bucket_column(index)) for index in range(REMOVAL_LATENCY_BUCKETS)),
    _sum("megapixels"),
    _sum("credits_charged"),
    _sum("credits_avoided"),
)

REMOVAL_MODEL_LENGTH = 64

# Successful removals per UTC day, provider, model and caller tier: which model served how many
# (``stolentee stats removal``'s models table, ``/v1/stats``' ``models``).
removal_model_daily = Table(
    "removal_model_daily",
    Base.metadata,
    Column("day", Date, primary_key=True),
    Column("provider", String(REMOVAL_PROVIDER_LENGTH), primary_key=True),
    Column("model", String(REMOVAL_MODEL_LENGTH), primary_key=True),  # "none": no model ran
    Column("premium", Boolean, primary_key=True),
    _counter("removals"),
    _sum("latency_ms_sum"),
    _sum("megapixels"),
    _sum("credits_avoided"),
)
