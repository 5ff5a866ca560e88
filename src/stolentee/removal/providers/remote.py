"""Remote removal providers: our own removal service and Remove.bg, over HTTP.

Both speak Remove.bg's API v1.0 (ours copies it, see ``api/routes/removebg.py``): a multipart
``POST .../removebg`` with ``image_file`` and the options as form fields, answered with the image
bytes and the ``X-Width``/``X-Height``/``X-Type``/``X-Credits-Charged``/``X-Foreground-*``
headers, or with ``{"errors": [{"title", "code", "detail"}]}``.

* :class:`RembgServiceRemover` (``rembg-service``): ``{REMBG_ENDPOINT}/v1.0/removebg``, key
  ``REMBG_API_KEY`` when set; the request's ``model`` (name or tier) is forwarded as the
  service's ``model`` field, and its ``X-Model`` answer says which model served. Self-hosted: it
  never costs credits, whatever its ``X-Credits-Charged`` says (that header is what Remove.bg
  *would* have charged).
* :class:`RemoveBgRemover` (``removebg``): ``{REMOVEBG_API_URL}/removebg`` with
  ``REMOVEBG_API_KEY``; the credits charged come from ``X-Credits-Charged``.

Failures are raised as :class:`ProviderError` (or a subclass) whose ``kind`` is a
:data:`~stolentee.removal.base.FailureKind`:

========================  ==================  =========  ===========================================
answer                    exception           retried    kind
========================  ==================  =========  ===========================================
connect error / dropped   ProviderError       yes        ``connect``
timeout (read, 408)       ProviderError       yes        ``timeout``
5xx                       ProviderError       yes        ``server_error``
429                       ProviderError       yes [1]_   ``rate_limited``
402                       ProviderOutOf…      no         ``out_of_credits``
401, 403                  ProviderAuthError   no         ``server_error`` (our key, not the input)
404, 405                  ProviderError       no         ``server_error`` (wrong URL configured)
400 ``invalid_model``     ProviderError       no         ``server_error`` (the model is not there)
other 4xx                 ProviderRejected…   no         ``rejected`` (the input: client's fault)
2xx but unusable          ProviderError       no         ``bad_response``
========================  ==================  =========  ===========================================

.. [1] after ``Retry-After`` seconds when it says so, at most :data:`RETRY_AFTER_CAP_S`; a longer
   wait gives up on the provider at once (the chain moves on to the next one).

Retries are bounded by ``STOLENTEE_PROVIDER_MAX_ATTEMPTS`` (first attempt included), with
exponential backoff from ``STOLENTEE_PROVIDER_RETRY_BACKOFF_S`` and jitter. Messages name the
provider and the URL, never the API key. The one :class:`httpx.Client` is built once by the
caller (:func:`build_http_client`) and shared by every provider.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import ClassVar

import httpx

from stolentee.config import RemovalSettings
from stolentee.errors import StolenteeError
from stolentee.removal.base import (
    NO_MODEL,
    FailureKind,
    RemovalOptions,
    RemovalResult,
)
from stolentee.removal.imaging.decode import ImageHeader, read_header
from stolentee.removal.models import MODELS
from stolentee.removal.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderOutOfCreditsError,
    ProviderRejectedError,
)
from stolentee.removal.providers.http import PROBE_READ_TIMEOUT_S, ProbeResult, parse_retry_after
from stolentee.removal.removebg_wire import (
    foreground_from_headers,
    form_fields,
    int_header,
    kind_from_header,
)

log = logging.getLogger(__name__)

RETRY_AFTER_CAP_S = 30.0  # a 429 asking for a longer wait gives up on that provider
# Only to measure the input and read a result's size: the API has already enforced its limits.
HEADER_MAX_MEGAPIXELS = 1000.0
API_KEY_HEADER = "X-Api-Key"


_CONTENT_TYPES = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "application/zip": "zip",
}


# --- errors ----------------------------------------------------------------------------------


# --- probes ----------------------------------------------------------------------------------


# --- the shared client -----------------------------------------------------------------------


# --- the wire format -------------------------------------------------------------------------


def error_entry(response: httpx.Response) -> dict[str, str]:
    """The first ``{"title", "code", "detail"}`` of an error body, as far as it parses."""
    try:
        body = response.json()
    except ValueError:
        return {}
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return {}
    return {
        key: str(errors[0][key])
        for key in ("title", "code", "detail")
        if isinstance(errors[0].get(key), str | int | float)
    }


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def model_from_header(value: str | None) -> str:
    """``X-Model`` of a provider's answer: a model this project knows, else ``none`` (the header
    is untrusted: it reaches statistics and our own response headers)."""
    name = (value or "").strip()
    return name if name in MODELS else NO_MODEL


# --- providers -------------------------------------------------------------------------------


class RemoteRemover:
    """What both remote providers share: the request, retries, classification, the result."""

    name: str
    photo_type: ClassVar[str] = "photo"
    sends_model: ClassVar[bool] = False  # our service takes a ``model`` field; Remove.bg none

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        settings: RemovalSettings,
        http_client: httpx.Client,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.max_attempts = settings.max_attempts
        self.retry_backoff_s = settings.retry_backoff_s
        self.probe_timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=min(settings.read_timeout_s, PROBE_READ_TIMEOUT_S),
            write=min(settings.read_timeout_s, PROBE_READ_TIMEOUT_S),
            pool=settings.connect_timeout_s,
        )
        self._client = http_client
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(url={self.remove_url!r})"

    @property
    def remove_url(self) -> str:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        return {API_KEY_HEADER: self._api_key} if self._api_key else {}

    # --- removal ------------------------------------------------------------------------------

    def remove(
        self, data: bytes, options: RemovalOptions, *, header: ImageHeader | None = None
    ) -> RemovalResult:
        """Send ``data`` to the provider; ``header`` (already read by the chain) saves reading
        the input's header again."""
        if header is None:
            header = read_header(data, max_megapixels=HEADER_MAX_MEGAPIXELS)
        fields = form_fields(options, photo_type=self.photo_type)
        if self.sends_model and options.model is not None:
            fields["model"] = options.model
        files: dict[str, tuple[str, bytes, str]] = {
            "image_file": ("image", data, "application/octet-stream")
        }
        if options.bg_image is not None:
            files["bg_image_file"] = ("background", options.bg_image, "application/octet-stream")
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            attempt_started = time.perf_counter()
            outcome = self._attempt(fields, files)
            if isinstance(outcome, httpx.Response):
                timings = {"remote": _ms_since(attempt_started), "total": _ms_since(started)}
                return self._result(outcome, options, header, timings)
            failure = outcome
            if not failure.retryable or attempt >= self.max_attempts:
                raise failure
            delay = self.retry_delay_s(attempt, failure)
            if delay is None:
                raise failure
            log.info(
                "%s attempt %d/%d failed (%s); retrying in %.2f s",
                self.name,
                attempt,
                self.max_attempts,
                failure.kind,
                delay,
            )
            self._sleep(delay)

    def retry_delay_s(self, attempt: int, failure: ProviderError) -> float | None:
        """How long to wait before attempt ``attempt + 1``; ``None``: do not retry.

        A ``Retry-After`` (429) is honoured exactly up to :data:`RETRY_AFTER_CAP_S`; beyond it
        the provider is given up. Otherwise the wait is ``retry_backoff_s * 2**(attempt-1)``
        with "equal jitter": uniformly between half of it and all of it."""
        if failure.kind == "rate_limited" and failure.retry_after_s is not None:
            if failure.retry_after_s > RETRY_AFTER_CAP_S:
                return None
            return failure.retry_after_s
        base = min(self.retry_backoff_s * 2.0 ** (attempt - 1), RETRY_AFTER_CAP_S)
        return base / 2 + self._rng.random() * base / 2

    def _attempt(
        self, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]]
    ) -> httpx.Response | ProviderError:
        """One POST: the 2xx response, or the classified failure (4xx raised at once)."""
        url = self.remove_url
        try:
            response = self._client.post(
                url, data=dict(fields), files=dict(files), headers=self._headers()
            )
        except httpx.TransportError as exc:
            return self._transport_error(exc, url)
        if 200 <= response.status_code < 300:
            return response
        error = self._http_error(response, url)
        if isinstance(error, ProviderRejectedError):
            raise error
        return error

    def _transport_error(self, exc: httpx.TransportError, url: str) -> ProviderError:
        kind: FailureKind
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            kind, what = "connect", "could not connect"
        elif isinstance(exc, httpx.TimeoutException):
            kind, what = "timeout", "did not answer in time"
        else:  # dropped connections, protocol errors
            kind, what = "connect", "dropped the connection"
        reason = str(exc) or type(exc).__name__
        return ProviderError(
            f"{self.name} at {url} {what}: {reason}", provider=self.name, kind=kind, url=url
        )

    def _http_error(self, response: httpx.Response, url: str) -> ProviderError:
        status = response.status_code
        entry = error_entry(response)
        said = ": ".join(part for part in (entry.get("code"), entry.get("detail")) if part)
        where = f"{self.name} at {url} answered HTTP {status}" + (f" ({said})" if said else "")
        if status == 402:
            return ProviderOutOfCreditsError(where, provider=self.name, url=url)
        if status in (401, 403):
            return ProviderAuthError(
                f"{where}; check the API key", provider=self.name, http_status=status, url=url
            )
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return ProviderError(
                where,
                provider=self.name,
                kind="rate_limited",
                retry_after_s=retry_after,
                http_status=status,
                url=url,
            )
        if status == 408:
            return ProviderError(
                where, provider=self.name, kind="timeout", http_status=status, url=url
            )
        if status in (404, 405):
            return ProviderError(
                f"{where}; is the provider's URL right?",
                provider=self.name,
                kind="server_error",
                retryable=False,
                http_status=status,
                url=url,
            )
        if status == 400 and entry.get("code") == "invalid_model":
            # The request named a model this provider does not have: its installation, not
            # the input, so the chain moves on (the caller's input was checked here).
            return ProviderError(
                f"{where}; install the model there or choose another",
                provider=self.name,
                kind="server_error",
                retryable=False,
                http_status=status,
                url=url,
            )
        if 400 <= status < 500:
            log.info("%s", where)
            return ProviderRejectedError(
                entry.get("detail")
                or entry.get("title")
                or f"the removal provider refused the request (HTTP {status})",
                provider=self.name,
                http_status=status,
                remote_code=entry.get("code"),
                remote_title=entry.get("title"),
                url=url,
            )
        return ProviderError(
            where,
            provider=self.name,
            kind="server_error",
            retryable=status >= 500,
            retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            http_status=status,
            url=url,
        )

    def _result(
        self,
        response: httpx.Response,
        options: RemovalOptions,
        header: ImageHeader,
        timings: dict[str, float],
    ) -> RemovalResult:
        url = self.remove_url
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        body = response.content

        def bad(why: str) -> ProviderError:
            return ProviderError(
                f"{self.name} at {url} answered HTTP {response.status_code} but {why}",
                provider=self.name,
                kind="bad_response",
                retryable=False,
                http_status=response.status_code,
                url=url,
            )

        if not body:
            raise bad("with an empty body")
        if content_type not in _CONTENT_TYPES:
            raise bad(f"with {content_type or 'no content type'!r}, not an image")
        width = int_header(response.headers, "X-Width")
        height = int_header(response.headers, "X-Height")
        if width is None or height is None:
            if content_type == "application/zip":
                raise bad("without X-Width/X-Height for a zip")
            try:
                result_header = read_header(body, max_megapixels=HEADER_MAX_MEGAPIXELS)
            except StolenteeError as exc:
                raise bad(f"with an unreadable image ({exc.detail})") from None
            width, height = result_header.width, result_header.height
        return RemovalResult(
            data=body,
            content_type=content_type,
            width=width,
            height=height,
            kind=kind_from_header(response.headers.get("X-Type"), options.kind),
            method=f"remote:{self.name}",
            model=model_from_header(response.headers.get("X-Model")),
            foreground=foreground_from_headers(response.headers),
            input_width=header.width,
            input_height=header.height,
            timings_ms=timings,
            provider=self.name,
            credits_charged=self.credits_charged(response, options, width, height),
        )

    def credits_charged(
        self, response: httpx.Response, options: RemovalOptions, width: int, height: int
    ) -> float:
        return 0.0

    # --- health ---------------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        raise NotImplementedError

    def _get(self, url: str) -> tuple[httpx.Response | None, str, float]:
        started = time.perf_counter()
        try:
            response = self._client.get(url, headers=self._headers(), timeout=self.probe_timeout)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            return None, f"{url} unreachable: {reason}", _ms_since(started)
        return response, "", _ms_since(started)
