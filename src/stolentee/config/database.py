"""Settings of the database engine and its connection pool."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import (
    SECTION_CONFIG,
)

# The seed's pool sizes (section 2.3): ``max: isProduction ? 15 : 5``.
POOL_MAX_PRODUCTION = 15
POOL_MAX_DEVELOPMENT = 5


class DatabaseSettings(BaseSettings):
    """SQLAlchemy engine and connection pool (seed section 2.3)."""

    model_config = SECTION_CONFIG

    url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL of the database. Empty: SQLite file "
        "`$STOLENTEE_DATA_DIR/stolentee.db`. `postgres://` and `postgresql://` URLs use psycopg 3.",
    )
    pool_max_connections: int | None = Field(
        None,
        ge=1,
        le=1000,
        validation_alias="STOLENTEE_DB_POOL_MAX",
        description="Most pooled connections per process. Empty: 15 in production, 5 in "
        "development (seed 2.3).",
    )
    pool_idle_timeout_s: float = Field(
        10.0,
        gt=0,
        validation_alias="STOLENTEE_DB_POOL_IDLE_TIMEOUT_S",
        description="A connection idle in the pool longer than this is closed (seed: 10 s).",
    )
    pool_timeout_s: float = Field(
        10.0,
        gt=0,
        validation_alias="STOLENTEE_DB_POOL_TIMEOUT_S",
        description="How long a request waits for a free pooled connection before failing with "
        "503 `database_busy`.",
    )
    statement_timeout_s: float = Field(
        30.0,
        gt=0,
        validation_alias="STOLENTEE_DB_STATEMENT_TIMEOUT_S",
        description="PostgreSQL `statement_timeout` set on every pooled connection (seed: 30 s).",
    )
    query_timeout_s: float = Field(
        10.0,
        gt=0,
        validation_alias="STOLENTEE_DB_QUERY_TIMEOUT_S",
        description="Application-level query timeout: a statement still running after this is "
        "cancelled by the client (seed: 10 s). Applies to SQLite and PostgreSQL.",
    )
    connect_timeout_s: float = Field(
        5.0,
        gt=0,
        validation_alias="STOLENTEE_DB_CONNECT_TIMEOUT_S",
        description="Timeout for opening a new database connection.",
    )
    worker_synchronous_commit: bool = Field(
        False,
        validation_alias="STOLENTEE_DB_WORKER_SYNCHRONOUS_COMMIT",
        description="PostgreSQL `synchronous_commit` of `stolentee worker` processes. Off: their "
        "commits (leases, results, heartbeats) do not wait for the WAL flush (~0.25 ms each); a "
        "database crash may forget the last fraction of a second of them, which the jobs table "
        "recovers from (each worker hands back the runs held in its name that it is not "
        "running, and they re-run into the same content-addressed files). "
        "The API's commits always wait.",
    )
    auto_migrate: bool | None = Field(
        None,
        validation_alias="STOLENTEE_DB_AUTO_MIGRATE",
        description="Apply pending migrations when the service starts. Empty: yes on SQLite, no "
        "on PostgreSQL (run `stolentee db upgrade` when deploying).",
    )

    @field_validator("url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_url(self) -> str:
        """The URL with the defaults of :meth:`Settings._resolve` applied."""
        if self.url is None:
            raise RuntimeError("DatabaseSettings used outside Settings: url is unresolved")
        return self.url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_url.startswith("sqlite")
