"""Fetching a user-supplied image URL: every hop checked and pinned to the address that was vetted,
bounded in time and size."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urljoin

import httpx

from stolentee.errors import (
    FileTooLargeError,
    ImageDownloadError,
    ImageDownloadTimeoutError,
    ImageUrlDisabledError,
    ImageUrlError,
    TooManyRedirectsError,
)
from stolentee.netsafe.addresses import IPAddress
from stolentee.netsafe.clock import Deadline

if TYPE_CHECKING:
    pass

from stolentee.netsafe.urls import (
    Resolver,
    Target,
    UrlPolicy,
    check_target,
    is_internal,
    parse_url,
    resolve_target,
    system_resolver,
)

log = logging.getLogger(__name__)


_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


USER_AGENT: Final = "stolentee-image-fetch/1"


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """The downloaded bytes (not yet decoded or type-checked) and where they came from."""

    content: bytes
    final_url: str
    content_type: str | None


def timed_out(target: Target) -> ImageDownloadTimeoutError:
    return ImageDownloadTimeoutError(f"Downloading {target.url} took longer than the time allowed.")


_IMAGE_HEADERS: Final = {
    "User-Agent": USER_AGENT,
    "Accept": "image/*, */*;q=0.5",
    "Accept-Encoding": "identity",
}


def request_for(
    target: Target,
    ip: IPAddress,
    clock: Deadline,
    *,
    method: str = "GET",
    headers: Mapping[str, str] = _IMAGE_HEADERS,
    content: bytes | None = None,
) -> httpx.Request:
    """A request addressed to the vetted ``ip``, naming the real host in ``Host`` and SNI."""
    remaining = clock.remaining()
    url = httpx.URL(
        scheme=target.scheme,
        host=ip.compressed,
        port=target.port,
        raw_path=target.path_query.encode("ascii"),
    )
    extensions: dict[str, object] = {
        "timeout": {"connect": remaining, "read": remaining, "write": remaining, "pool": remaining},
        "trace": clock.trace,
    }
    if target.scheme == "https" and target.ip is None:
        extensions["sni_hostname"] = target.host  # SNI and certificate check use the real name
    # Host and Connection are ours to set: the caller cannot redirect the request elsewhere or
    # keep a connection (checked for one name) open for another.
    sent = {**headers, "Host": target.authority, "Connection": "close"}
    return httpx.Request(method, url, headers=sent, content=content, extensions=extensions)


def send_pinned_request(
    target: Target,
    addresses: list[IPAddress],
    transport: httpx.BaseTransport,
    clock: Deadline,
    build: Callable[[IPAddress], httpx.Request] | None = None,
    action: str = "download",
) -> httpx.Response:
    """Send to the first vetted address that accepts a connection (no new DNS lookup).
    ``build`` makes the request for one address (default: the image GET); ``action`` says
    what failed in error messages."""
    last_error: httpx.TransportError | None = None
    for ip in addresses:
        request = build(ip) if build is not None else request_for(target, ip, clock)
        try:
            return transport.handle_request(request)
        except httpx.TimeoutException:
            raise timed_out(target) from None
        except httpx.ConnectError as exc:
            if clock.expired:
                raise timed_out(target) from None
            last_error = exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if clock.expired:
                raise timed_out(target) from None
            raise ImageDownloadError(f"Could not {action} {target.url}: {exc}") from None
    raise ImageDownloadError(f"Could not connect to {target.host!r}: {last_error}")


def _read_body(
    response: httpx.Response, target: Target, policy: UrlPolicy, clock: Deadline
) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ImageDownloadError(
            f"{target.url} answered with {encoding!r}-compressed content; only uncompressed "
            "images are accepted."
        )
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise FileTooLargeError(
            f"The image at {target.url} is {int(declared)} bytes; the limit is "
            f"{policy.max_bytes} bytes."
        )
    body = bytearray()
    # iter_bytes, not iter_raw: it also serves bodies a transport has already read; with only the
    # identity encoding accepted (checked above) both yield the bytes as sent.
    chunks: Iterator[bytes] = response.iter_bytes()
    try:
        for chunk in chunks:
            if len(body) + len(chunk) > policy.max_bytes:
                raise FileTooLargeError(
                    f"The image at {target.url} is larger than the limit of "
                    f"{policy.max_bytes} bytes."
                )
            body += chunk
            if clock.expired:
                raise timed_out(target)
    except httpx.TimeoutException:
        raise timed_out(target) from None
    except httpx.HTTPError as exc:
        if clock.expired:
            raise timed_out(target) from None
        raise ImageDownloadError(f"Could not download {target.url}: {exc}") from None
    if clock.expired:  # a body that ends with the connection looks complete when aborted
        raise timed_out(target)
    return bytes(body)


def _follow(target: Target, location: str) -> str:
    """The absolute URL a ``Location`` header points at (checked again by the next hop)."""
    try:
        return urljoin(target.url, location.strip())
    except ValueError:
        raise ImageUrlError("The image URL redirected to a malformed URL.") from None


def fetch_image_url(
    url: str,
    *,
    policy: UrlPolicy,
    resolver: Resolver | None = None,
    transport: httpx.BaseTransport | None = None,
) -> FetchedImage:
    """Download the image at ``url`` under ``policy``; blocking, meant for a worker thread.

    Raises :class:`ImageUrlDisabledError`, :class:`ImageUrlError` (policy refusals, including
    :class:`TooManyRedirectsError`), :class:`ImageDownloadError` (network errors, non-2xx
    answers; :class:`ImageDownloadTimeoutError` when out of time) or
    :class:`~stolentee.errors.FileTooLargeError`; nothing else for any input string.
    ``resolver`` and ``transport`` are test hooks (see the module docstring); the defaults are
    ``getaddrinfo`` and a fresh ``httpx.HTTPTransport`` that reads nothing from the environment.
    """
    if not policy.enabled:
        raise ImageUrlDisabledError(
            "This server does not fetch image URLs; upload the image instead "
            "(operators: STOLENTEE_IMAGE_URL_ENABLED)."
        )
    if not isinstance(url, str):
        raise ImageUrlError("The image URL must be text.")
    resolve = resolver or system_resolver
    owned = transport is None
    active = transport or httpx.HTTPTransport(trust_env=False, retries=0)
    clock = Deadline(policy.timeout_s)
    try:
        current = url
        for hop in range(policy.max_redirects + 1):
            target = parse_url(current, policy.label)
            check_target(target, policy)
            addresses = resolve_target(target, resolve, clock, internal=is_internal(target, policy))
            response = send_pinned_request(target, addresses, active, clock)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise ImageDownloadError(
                            f"{target.url} answered {response.status_code} without a Location."
                        )
                    current = _follow(target, location)
                    log.debug("image URL hop %d: %s -> %s", hop + 1, target.url, current)
                    continue
                if not 200 <= response.status_code < 300:
                    raise ImageDownloadError(
                        f"{target.url} answered HTTP {response.status_code}, not an image."
                    )
                content = _read_body(response, target, policy, clock)
                return FetchedImage(
                    content=content,
                    final_url=target.url,
                    content_type=response.headers.get("content-type"),
                )
            finally:
                with contextlib.suppress(httpx.HTTPError):
                    response.close()
        raise TooManyRedirectsError(
            f"The image URL redirected more than {policy.max_redirects} times."
        )
    finally:
        clock.stop()
        if owned:
            active.close()
