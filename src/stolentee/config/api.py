"""Settings of the HTTP API: keys, limits, admission, image URLs and callbacks."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import SECTION_CONFIG, exact_hosts, host_list


class ApiSettings(BaseSettings):
    """The public removal API: keys, rate limits, request limits, URL inputs."""

    model_config = SECTION_CONFIG

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
        description="Per-key rate limit in input megapixels per minute, as Remove.bg counts it; "
        "shared by every process through Redis when `REDIS_URL` is set.",
    )
    max_body_bytes: int = Field(
        22 * 1024 * 1024,
        ge=1024,
        validation_alias="STOLENTEE_MAX_BODY_BYTES",
        description="Largest request body accepted (Remove.bg: 22 MB); larger ones get 413.",
    )
    body_read_timeout_s: float = Field(
        60.0,
        gt=0,
        validation_alias="STOLENTEE_BODY_READ_TIMEOUT_S",
        description="A request body must arrive whole within this many seconds of the request's "
        "start (22 MB in 60 s needs about 3 Mbit/s); slower ones get 408 `request_timeout`.",
    )
    max_incomplete_uploads_per_client: int = Field(
        10,
        ge=0,
        validation_alias="STOLENTEE_MAX_INCOMPLETE_UPLOADS_PER_CLIENT",
        description="Requests one client address may have sending their bodies at once, per "
        "process; more get 429 `too_many_uploads`. 0: no cap. Behind a proxy, set uvicorn's "
        "`FORWARDED_ALLOW_IPS` to it so that clients are told apart.",
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

    _exact_hosts = field_validator("callback_internal_hosts")(exact_hosts)

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        return host_list(self.image_url_allowed_hosts)

    @property
    def callback_hosts(self) -> tuple[str, ...]:
        return host_list(self.callback_allowed_hosts)

    @property
    def callback_internal(self) -> tuple[str, ...]:
        return host_list(self.callback_internal_hosts)

    @property
    def static_keys(self) -> tuple[str, ...]:
        raw = self.api_keys.get_secret_value()
        return tuple(key.strip() for key in raw.split(",") if key.strip())
