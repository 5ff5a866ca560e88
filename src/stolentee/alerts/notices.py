"""The webhook: its URL policy (checked at start-up), the notice's JSON, and one delivery.

The URL is vetted like a callback URL (:mod:`stolentee.netsafe`): https to a public host, or
http(s) to an exact host the operator names in ``STOLENTEE_ALERT_INTERNAL_HOSTS`` (which may be
loopback or private); link-local and metadata addresses are always refused, the host is resolved
and checked again on every delivery, and redirects are never followed.

The body (``json``) carries the structured fields; ``slack`` adds the ``text`` Slack shows, so a
Slack incoming webhook and any JSON receiver take the same notice. ``id`` is the notice's
number: a receiver that sees it twice (a retry after a lost answer) may drop the second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from stolentee import __version__
from stolentee.alerts.changes import Notice
from stolentee.config import AlertSettings, WebhookFormat
from stolentee.errors import ConfigurationError, ImageDownloadError, ImageUrlError
from stolentee.netsafe import Resolver, UrlPolicy, send_pinned
from stolentee.netsafe.urls import check_target, parse_url

URL_VAR = "STOLENTEE_ALERT_WEBHOOK_URL"
INTERNAL_VAR = "STOLENTEE_ALERT_INTERNAL_HOSTS"
_RETRYABLE = frozenset({408, 425, 429})
_MARKS = {"pass": ":large_green_circle:", "warn": ":large_yellow_circle:", "fail": ":red_circle:"}
_WORDS = {"pass": "recovered", "warn": "is degraded", "fail": "is failing"}


class DeliveryError(Exception):
    """An attempt that may succeed later (network, timeout, 429, 5xx)."""


class RejectedError(Exception):
    """An answer that will not change by retrying (4xx, a redirect, a refused address)."""


def webhook_policy(settings: AlertSettings) -> UrlPolicy:
    return UrlPolicy(
        enabled=True,
        allowed_hosts=("*",),  # any public host: the operator wrote this URL, not a customer
        timeout_s=settings.timeout_s,
        max_redirects=0,
        max_bytes=1,  # the answer's body is never read
        https_only=True,
        internal_hosts=settings.internal,
        label="alert webhook URL",
        allowed_hosts_var=INTERNAL_VAR,
    )


@dataclass(frozen=True, slots=True)
class Webhook:
    """Where and how notices are sent; :meth:`from_settings` refuses a bad URL at start-up."""

    url: str
    format: WebhookFormat
    policy: UrlPolicy
    environment: str
    resolver: Resolver | None = None
    transport: httpx.BaseTransport | None = None

    @classmethod
    def from_settings(
        cls,
        settings: AlertSettings,
        *,
        environment: str,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> Webhook:
        url = settings.webhook_url.get_secret_value().strip()
        policy = webhook_policy(settings)
        try:
            check_target(parse_url(url, policy.label), policy)
        except ImageUrlError as exc:
            raise ConfigurationError(
                f"{URL_VAR} is refused: {exc.detail} Use https to a public host, or name a "
                f"receiver on a private network in {INTERNAL_VAR}."
            ) from None
        return cls(url, settings.webhook_format, policy, environment, resolver, transport)

    def body(self, notice: Notice, *, holder: str) -> bytes:
        fields: dict[str, Any] = {
            "id": notice.id or None,  # None: sent outside the outbox (the database was down)
            "service": "stolentee",
            "environment": self.environment,
            "component": notice.component,
            "status": notice.status,
            "previous": notice.previous,
            "recovered": notice.status == "pass" and notice.previous is not None,
            "detail": notice.detail,
            "at": _iso(notice.created_at),
            "sentBy": holder,
            "version": __version__,
        }
        if self.format is WebhookFormat.SLACK:
            fields = {"text": text(notice, environment=self.environment), **fields}
        return json.dumps(fields).encode()

    def send(self, notice: Notice, *, holder: str) -> None:
        """POST one notice; raises :class:`DeliveryError` or :class:`RejectedError`."""
        try:
            answer = send_pinned(
                self.url,
                method="POST",
                content=self.body(notice, holder=holder),
                headers={"Content-Type": "application/json", "Idempotency-Key": key(notice)},
                policy=self.policy,
                resolver=self.resolver,
                transport=self.transport,
            )
        except ImageUrlError as exc:  # the name resolves to a refused address now
            raise RejectedError(f"the webhook URL is refused: {exc.detail}") from None
        except ImageDownloadError as exc:  # DNS, connect, timeout
            raise DeliveryError(exc.detail) from None
        status = answer.status_code
        if 200 <= status < 300:
            return
        if status >= 500 or status in _RETRYABLE:
            raise DeliveryError(f"the webhook answered HTTP {status}")
        raise RejectedError(f"the webhook answered HTTP {status}")


def key(notice: Notice) -> str:
    """The notice's idempotency key (the same on every retry)."""
    if notice.id:
        return f"stolentee-alert-{notice.id}"
    return f"stolentee-alert-{notice.component}-{int(notice.created_at.timestamp())}"


def text(notice: Notice, *, environment: str) -> str:
    """The one line a person reads: mark, component, what happened, why."""
    word = _WORDS[notice.status] if notice.previous is not None else f"is {notice.status}"
    if notice.status == "pass" and notice.previous is None:
        word = "is healthy"
    line = f"{_MARKS.get(notice.status, '')} stolentee ({environment}): {notice.component} {word}"
    if notice.previous is not None:
        line += f" (was {notice.previous})"
    return f"{line}: {notice.detail}" if notice.detail else line


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
