"""Settings of the built-in health notifications (a webhook, for shops without Prometheus)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import SECTION_CONFIG, exact_hosts, host_list


class WebhookFormat(StrEnum):
    SLACK = "slack"  # Slack's incoming-webhook JSON: `text`, plus the structured fields
    JSON = "json"  # the structured fields only


class AlertSettings(BaseSettings):
    """Notices of health changes to a webhook: which components are watched, how often, and
    when a change counts (debounced, flap-limited)."""

    model_config = SECTION_CONFIG

    webhook_url: SecretStr = Field(
        SecretStr(""),
        validation_alias="STOLENTEE_ALERT_WEBHOOK_URL",
        description="Where notices of health changes are POSTed (a Slack incoming webhook, or "
        "any receiver of JSON): https to a public host, or http(s) to a host named in "
        "`STOLENTEE_ALERT_INTERNAL_HOSTS`. Empty: no notices (secret, masked in `config show`).",
    )
    webhook_format: WebhookFormat = Field(
        WebhookFormat.SLACK,
        validation_alias="STOLENTEE_ALERT_WEBHOOK_FORMAT",
        description="`slack` (a `text` field Slack shows, plus the structured fields) or `json` "
        "(the structured fields only).",
    )
    internal_hosts: str = Field(
        "",
        validation_alias="STOLENTEE_ALERT_INTERNAL_HOSTS",
        description="Comma-separated exact host names or IP addresses of a receiver on a "
        "private network (allowed over http, may be loopback or private); link-local and "
        "metadata addresses stay refused.",
    )
    check_interval_s: float = Field(
        5.0,
        gt=0,
        le=600,
        validation_alias="STOLENTEE_ALERT_CHECK_INTERVAL_S",
        description="How often the watching replica checks every component.",
    )
    debounce_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        validation_alias="STOLENTEE_ALERT_DEBOUNCE_S",
        description="A component's new status must hold this long before it is announced, so "
        "that a blip sends nothing.",
    )
    flap_limit: int = Field(
        4,
        ge=1,
        le=100,
        validation_alias="STOLENTEE_ALERT_FLAP_LIMIT",
        description="Most notices per component within `STOLENTEE_ALERT_FLAP_WINDOW_S`; a "
        "component that changes more often is held back, and its status then is announced "
        "when the window allows.",
    )
    flap_window_s: float = Field(
        900.0,
        gt=0,
        validation_alias="STOLENTEE_ALERT_FLAP_WINDOW_S",
        description="The window of `STOLENTEE_ALERT_FLAP_LIMIT`.",
    )
    timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        validation_alias="STOLENTEE_ALERT_TIMEOUT_S",
        description="Time allowed for one delivery attempt (DNS, connect, send, answer).",
    )
    max_attempts: int = Field(
        8,
        ge=1,
        le=50,
        validation_alias="STOLENTEE_ALERT_MAX_ATTEMPTS",
        description="Delivery attempts per notice; connection errors, timeouts, 429 and 5xx are "
        "retried, other answers are final.",
    )
    retry_backoff_s: float = Field(
        2.0,
        ge=0,
        validation_alias="STOLENTEE_ALERT_RETRY_BACKOFF_S",
        description="Delay before the second attempt, doubled for each further one (at most "
        "five minutes).",
    )
    queue_backlog: int = Field(
        20,
        ge=1,
        validation_alias="STOLENTEE_ALERT_QUEUE_BACKLOG",
        description="The queue component warns when more jobs than this are queued (the "
        "`StolenteeQueueBacklog` alert's threshold).",
    )
    queue_max_wait_s: float = Field(
        300.0,
        gt=0,
        validation_alias="STOLENTEE_ALERT_QUEUE_MAX_WAIT_S",
        description="The queue component fails when a ready job has waited longer than this "
        "(the seed's 5 minutes).",
    )

    _exact_hosts = field_validator("internal_hosts")(exact_hosts)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url.get_secret_value())

    @property
    def internal(self) -> tuple[str, ...]:
        return host_list(self.internal_hosts)
