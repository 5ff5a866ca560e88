"""Design callbacks: a signed POST to the shop when a design is done or failed.

Off unless ``STOLENTEE_CALLBACKS_ENABLED``. The life of one callback:

1. **Upload.** ``POST /v1/designs`` with ``callback_url`` runs :meth:`CallbackSender.check_url`:
   the URL must pass the callback :class:`~stolentee.netsafe.UrlPolicy` (the image-URL checks of
   :mod:`stolentee.netsafe`: shape, allow-list ``STOLENTEE_CALLBACK_ALLOWED_HOSTS``, https, no
   private/loopback/link-local/metadata address after DNS, except the exact
   ``STOLENTEE_CALLBACK_INTERNAL_HOSTS``, which may be private and use http). The normalised URL
   is stored on the design.
2. **The design finishes.** In the very transaction that makes the design's job ``done`` or
   ``failed`` for good (a run that will be retried is not final), :func:`design_follow_up` adds a
   ``callback`` job and records its id on the design
   (:func:`stolentee.designs.store.claim_callback`): the notice is queued exactly once, and
   survives any restart, like every job.
3. **Delivery.** A worker runs :func:`callback_handler`: it renders the design exactly as
   ``GET /v1/designs/{id}`` does and POSTs ``{"event", "design", "sent_at"}`` with
   :func:`stolentee.netsafe.send_pinned` (URL checked again, host resolved and vetted again, the
   connection made to the vetted address, redirects never followed). Headers:
   ``X-Stolentee-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``,
   ``X-Stolentee-Event``, ``X-Stolentee-Delivery`` and ``Idempotency-Key`` (the same delivery id
   on every attempt). A 2xx answer completes the job. Connection errors, timeouts, 408, 429 and
   5xx raise :class:`CallbackDeliveryError`: the queue retries after
   ``STOLENTEE_CALLBACK_RETRY_BACKOFF_S`` (doubling) up to ``STOLENTEE_CALLBACK_MAX_ATTEMPTS``.
   Any other answer (a redirect, a 4xx) or a URL the policy now refuses raises
   :class:`CallbackRejectedError`: failed at once, no retry can change it.
4. **Outcome.** The ``callback`` job's row is the record (attempts, last error, finished); the
   design body shows it as ``callback: {url, status, attempts, last_error, delivered_at}``.

The design's own job never waits for, or fails because of, its callback. Receivers check the
signature with :func:`verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from sqlalchemy.orm import Session

from stolentee.config import ApiSettings
from stolentee.db.models import CALLBACK_URL_LENGTH, Job
from stolentee.designs.store import DesignNotFoundError, DesignStore, claim_callback
from stolentee.designs.views import design_body
from stolentee.errors import (
    ClientError,
    ConfigurationError,
    ImageDownloadError,
    ImageDownloadTimeoutError,
    ImageUrlError,
)
from stolentee.jobs.heartbeat import Heartbeat
from stolentee.jobs.queue import FollowUp, JobQueue
from stolentee.jobs.runs import Handler
from stolentee.netsafe import Answer, Resolver, UrlPolicy, send_pinned, vet_url
from stolentee.storage.base import Storage

__all__ = [
    "CALLBACK_JOB",
    "EVENT_DONE",
    "EVENT_FAILED",
    "CallbackDeliveryError",
    "CallbackRejectedError",
    "CallbackSender",
    "CallbacksDisabledError",
    "InvalidCallbackUrlError",
    "callback_handler",
    "callback_policy",
    "design_follow_up",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

CALLBACK_JOB: Final = "callback"
EVENT_DONE: Final = "design.done"
EVENT_FAILED: Final = "design.failed"
SIGNATURE_HEADER: Final = "X-Stolentee-Signature"
EVENT_HEADER: Final = "X-Stolentee-Event"
DELIVERY_HEADER: Final = "X-Stolentee-Delivery"
USER_AGENT: Final = "stolentee-callback/1"
MIN_SECRET_LENGTH: Final = 16
DEFAULT_TOLERANCE_S: Final = 300.0
ALLOWED_HOSTS_VAR: Final = "STOLENTEE_CALLBACK_ALLOWED_HOSTS"
_RETRYABLE_STATUSES: Final = frozenset({408, 429})


class CallbacksDisabledError(ClientError):
    code = "callbacks_disabled"
    title = "Callbacks are disabled"


class InvalidCallbackUrlError(ClientError):
    """The callback URL is refused by the callback URL policy."""

    code = "invalid_callback_url"
    title = "Invalid callback URL"


class CallbackDeliveryError(Exception):
    """A delivery attempt failed in a way a later attempt may not: the queue retries it."""


class CallbackRejectedError(Exception):
    """The receiver (or the URL policy) refused the callback for good: no retry."""


# --- signatures -----------------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Stolentee-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes | str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (the ``X-Stolentee-Signature`` value) signs ``body`` (the raw request
    body, exactly as received) with ``secret``, at a time within ``tolerance_s`` of ``now``
    (default: the current time), which stops a captured request from being replayed later.
    Several ``v1=`` entries are accepted (any one may match); comparisons are constant-time.
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t" and timestamp is None:
            if not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    raw = body.encode("utf-8") if isinstance(body, str) else body
    expected = _digest(secret, timestamp, raw)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# --- policy and sending ---------------------------------------------------------------------------


def callback_policy(api: ApiSettings) -> UrlPolicy:
    """The URL policy of callbacks: https to ``STOLENTEE_CALLBACK_ALLOWED_HOSTS`` (public
    addresses only), or http(s) to the exact ``STOLENTEE_CALLBACK_INTERNAL_HOSTS``."""
    return UrlPolicy(
        enabled=api.callbacks_enabled,
        allowed_hosts=api.callback_hosts,
        timeout_s=api.callback_timeout_s,
        max_redirects=0,
        max_bytes=1,  # the answer's body is never read
        https_only=True,
        internal_hosts=api.callback_internal,
        label="callback URL",
        allowed_hosts_var=ALLOWED_HOSTS_VAR,
    )


class CallbackSender:
    """Checks callback URLs and delivers signed callbacks; built once per process.

    ``resolver`` and ``transport`` are the test hooks of :mod:`stolentee.netsafe`; ``clock``
    gives the signature's timestamp (Unix seconds).
    """

    def __init__(
        self,
        *,
        enabled: bool,
        secret: str,
        policy: UrlPolicy,
        max_attempts: int,
        retry_backoff_s: float,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.enabled = enabled
        self._secret = secret
        self.policy = policy
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.resolver = resolver
        self.transport = transport
        self.clock = clock

    @classmethod
    def from_settings(
        cls,
        api: ApiSettings,
        *,
        resolver: Resolver | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> CallbackSender:
        """The sender the settings describe; :class:`ConfigurationError` when callbacks are on
        without a usable secret or without any host they may go to."""
        secret = api.callback_secret.get_secret_value()
        if api.callbacks_enabled:
            if not secret:
                raise ConfigurationError(
                    "STOLENTEE_CALLBACKS_ENABLED is on but STOLENTEE_CALLBACK_SECRET is empty: "
                    f"set a random secret of at least {MIN_SECRET_LENGTH} characters (receivers "
                    "check the X-Stolentee-Signature header with it)"
                )
            if len(secret) < MIN_SECRET_LENGTH:
                raise ConfigurationError(
                    f"STOLENTEE_CALLBACK_SECRET must be at least {MIN_SECRET_LENGTH} characters"
                )
            if not api.callback_hosts and not api.callback_internal:
                raise ConfigurationError(
                    "STOLENTEE_CALLBACKS_ENABLED is on but no host may receive callbacks: set "
                    "STOLENTEE_CALLBACK_ALLOWED_HOSTS (public https receivers) or "
                    "STOLENTEE_CALLBACK_INTERNAL_HOSTS (receivers on a private network)"
                )
        return cls(
            enabled=api.callbacks_enabled,
            secret=secret,
            policy=callback_policy(api),
            max_attempts=api.callback_max_attempts,
            retry_backoff_s=api.callback_retry_backoff_s,
            resolver=resolver,
            transport=transport,
        )

    def check_url(self, url: str) -> str:
        """The normalised callback URL to store, or :class:`CallbacksDisabledError` /
        :class:`InvalidCallbackUrlError`. Resolves the host (blocking; run it in a thread)."""
        if not self.enabled:
            raise CallbacksDisabledError("this server does not send callbacks; poll the design")
        if len(url) > CALLBACK_URL_LENGTH:
            raise InvalidCallbackUrlError(
                f"The callback URL is longer than {CALLBACK_URL_LENGTH} characters."
            )
        try:
            vetted = vet_url(url, policy=self.policy, resolver=self.resolver)
        except ImageUrlError as exc:
            raise InvalidCallbackUrlError(exc.detail) from None
        except ImageDownloadError as exc:  # DNS: no answer, or too slow
            raise InvalidCallbackUrlError(
                f"{exc.detail} A callback URL's host must resolve when the design is uploaded."
            ) from None
        if len(vetted.url) > CALLBACK_URL_LENGTH:
            raise InvalidCallbackUrlError(
                f"The callback URL is longer than {CALLBACK_URL_LENGTH} characters once encoded."
            )
        return vetted.url

    def headers(self, body: bytes, *, event: str, delivery_id: str) -> dict[str, str]:
        """The headers of one delivery attempt, signed now."""
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id,
            "Idempotency-Key": delivery_id,
            SIGNATURE_HEADER: sign(self._secret, body, int(self.clock())),
        }

    def deliver(self, url: str, body: bytes, *, event: str, delivery_id: str) -> Answer:
        """POST ``body`` to ``url`` once. Returns the 2xx answer; raises
        :class:`CallbackDeliveryError` (worth retrying) or :class:`CallbackRejectedError`."""
        if not self.enabled:
            raise CallbackRejectedError(
                "callbacks are disabled on this worker (STOLENTEE_CALLBACKS_ENABLED)"
            )
        headers = self.headers(body, event=event, delivery_id=delivery_id)
        try:
            answer = send_pinned(
                url,
                method="POST",
                content=body,
                headers=headers,
                policy=self.policy,
                resolver=self.resolver,
                transport=self.transport,
            )
        except ImageUrlError as exc:  # e.g. the name resolves to a private address now
            raise CallbackRejectedError(f"the callback URL is refused: {exc.detail}") from None
        except ImageDownloadTimeoutError:
            raise CallbackDeliveryError(
                f"no answer from {url} within {self.policy.timeout_s:g} s"
            ) from None
        except ImageDownloadError as exc:
            raise CallbackDeliveryError(exc.detail) from None
        status = answer.status_code
        if 200 <= status < 300:
            return answer
        if status >= 500 or status in _RETRYABLE_STATUSES:
            raise CallbackDeliveryError(f"{answer.url} answered HTTP {status}")
        if 300 <= status < 400:
            raise CallbackRejectedError(
                f"{answer.url} answered HTTP {status} (to {answer.location or 'nowhere'}); "
                "redirects are not followed: give the final URL"
            )
        raise CallbackRejectedError(f"{answer.url} answered HTTP {status}")


# --- the queue's side: enqueue when a design finishes, deliver in a worker -----------------------


def design_follow_up(sender: CallbackSender) -> FollowUp:
    """The ``design`` jobs' follow-up hook (see :class:`~stolentee.jobs.queue.JobQueue`): when
    one becomes final, queue the ``callback`` job of its design, if it has a callback URL and no
    callback job yet, in the same transaction."""

    def follow_up(queue: JobQueue, session: Session, job: Job) -> Sequence[Job]:
        design_id = str(job.payload.get("design_id", ""))
        callback = queue.new_job(
            CALLBACK_JOB, {"design_id": design_id}, max_attempts=sender.max_attempts
        )
        if claim_callback(session, design_id, callback.id) is None:
            return []
        session.add(callback)
        log.info("design %s %s: callback %s queued", design_id, job.state, callback.id)
        return [callback]

    return follow_up


def callback_body(design: dict[str, Any], *, sent_at: datetime) -> tuple[str, bytes]:
    """The event name and the JSON body of a callback for the rendered ``design``."""
    event = EVENT_DONE if design["status"] == "done" else EVENT_FAILED
    payload = {"event": event, "design": design, "sent_at": sent_at.isoformat()}
    return event, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def callback_handler(
    *, designs: DesignStore, storage: Storage, queue: JobQueue, sender: CallbackSender
) -> Handler:
    """Deliver one design's callback: render the design as ``GET /v1/designs/{id}`` does (its
    ``callback`` section shows this attempt as ``pending``), sign, POST."""

    def handle(job: Job, heartbeat: Heartbeat) -> dict[str, Any]:
        design_id = str(job.payload.get("design_id", ""))
        try:
            record = designs.get(design_id)
        except DesignNotFoundError:
            raise CallbackRejectedError(
                f"design {design_id!r} was deleted before its callback was delivered"
            ) from None
        if record.callback_url is None:
            raise CallbackRejectedError(f"design {design_id!r} has no callback URL")
        design_job = queue.get(record.job_id) if record.job_id is not None else None
        design = design_body(storage, record, design_job, job)
        event, body = callback_body(design, sent_at=datetime.now(UTC))
        answer = sender.deliver(record.callback_url, body, event=event, delivery_id=job.id)
        log.info(
            "callback %s for design %s (%s) delivered: HTTP %d on attempt %d",
            job.id,
            design_id,
            event,
            answer.status_code,
            job.attempts,
        )
        return {"event": event, "status_code": answer.status_code, "url": answer.url}

    return handle
