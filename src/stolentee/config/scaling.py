"""Settings of autoscaling: the policy, where samples come from, how replicas change."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import (
    SECTION_CONFIG,
)

SCALED_SERVICES = ("api", "worker")
RAILWAY_API_URL = "https://backboard.railway.com/graphql/v2"


class ScalingSettings(BaseSettings):
    """Autoscaling: the policy (seed 2.6 triggers), where samples come from, how replicas change."""

    model_config = SECTION_CONFIG

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
