"""Settings of the service process: environment, bind address, data directory, logs, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import (
    SECTION_CONFIG,
    Environment,
)


class ServiceSettings(BaseSettings):
    """The HTTP service process."""

    model_config = SECTION_CONFIG

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
    min_free_disk_mb: int = Field(
        100,
        ge=0,
        validation_alias="STOLENTEE_MIN_FREE_DISK_MB",
        description="Free space floor of the data directory's filesystem (and local storage's): "
        "below it uploads get 507 `insufficient_storage`, `/readyz` 503 and "
        "`/health/detailed` unhealthy, so that deletes and the database keep room. 0: no floor.",
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
    shutdown_drain_s: float = Field(
        10.0,
        ge=0,
        le=300,
        validation_alias="STOLENTEE_SHUTDOWN_DRAIN_S",
        description="On SIGTERM, `/readyz` answers 503 at once and the server keeps accepting "
        "and serving this long (responses carry `Connection: close`), so that the load balancer "
        "notices and moves traffic away first: HAProxy's default check (2 s x 3) needs 6 s, "
        "Kubernetes endpoints a few seconds. Then it stops accepting and finishes what is in "
        "flight. 0: stop at once.",
    )
    shutdown_timeout_s: float = Field(
        20.0,
        gt=0,
        le=600,
        validation_alias="STOLENTEE_SHUTDOWN_TIMEOUT_S",
        description="After the drain, how long requests still in flight may take to finish "
        "before they are cancelled. Drain + this + ~10 s must fit the platform's stop timeout "
        "(Kubernetes `terminationGracePeriodSeconds`, Railway's draining seconds, `docker stop "
        "-t`).",
    )
    drain_marker: str = Field(
        "",
        validation_alias="STOLENTEE_DRAIN_MARKER",
        description="Set by `stolentee serve` for its HTTP workers when `STOLENTEE_HTTP_WORKERS` "
        "> 1: the file whose presence tells them the whole server is draining. Leave empty.",
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
