"""Design callbacks' outbound requests: a URL vetted when it is accepted, and one request pinned to
a vetted address, without redirects, for each delivery."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from stolentee.errors import (
    ImageUrlDisabledError,
    ImageUrlError,
)
from stolentee.netsafe.addresses import IPAddress

if TYPE_CHECKING:
    pass

from stolentee.netsafe.clock import Deadline
from stolentee.netsafe.fetch import USER_AGENT, request_for, send_pinned_request, timed_out
from stolentee.netsafe.urls import (
    Resolver,
    UrlPolicy,
    check_target,
    is_internal,
    parse_url,
    resolve_target,
    system_resolver,
)


@dataclass(frozen=True, slots=True)
class VettedUrl:
    """A URL that passed every check: its normalised text and the addresses it resolved to."""

    url: str
    host: str
    addresses: tuple[str, ...]


def _require_enabled(policy: UrlPolicy) -> None:
    if not policy.enabled:
        raise ImageUrlDisabledError(f"This server does not accept {policy.label}s.")


def vet_url(url: str, *, policy: UrlPolicy, resolver: Resolver | None = None) -> VettedUrl:
    """Run the checks of steps 1-4 on ``url`` without sending anything (the host is resolved,
    within ``policy.timeout_s``). For accepting a URL now that is contacted later: the later
    request (:func:`send_pinned`) checks it again, because DNS answers change.

    Raises :class:`ImageUrlDisabledError`, :class:`ImageUrlError` (refused by policy) or
    :class:`ImageDownloadError` (the name does not resolve; the timeout subclass when DNS is
    too slow).
    """
    _require_enabled(policy)
    if not isinstance(url, str):
        raise ImageUrlError(f"The {policy.label} must be text.")
    target = parse_url(url, policy.label)
    check_target(target, policy)
    clock = Deadline(policy.timeout_s)
    try:
        addresses = resolve_target(
            target, resolver or system_resolver, clock, internal=is_internal(target, policy)
        )
    finally:
        clock.stop()
    return VettedUrl(
        url=target.url, host=target.host, addresses=tuple(ip.compressed for ip in addresses)
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server said to :func:`send_pinned` (the body is not read)."""

    status_code: int
    url: str
    location: str | None  # the Location header of a redirect, which is never followed


def send_pinned(
    url: str,
    *,
    method: str,
    content: bytes,
    headers: Mapping[str, str],
    policy: UrlPolicy,
    resolver: Resolver | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Answer:
    """Send one request with ``content`` to ``url`` under ``policy``: the URL is checked, its
    host resolved and vetted, and the request goes to the vetted address (``Host``/SNI carry the
    name), all within ``policy.timeout_s``. Redirects are **not** followed: a 3xx answer is
    returned like any other, so the caller decides (a redirect to an internal address can never
    be reached this way). The answer's body is not read; the connection is closed.

    Raises :class:`ImageUrlDisabledError`, :class:`ImageUrlError` (refused by policy) or
    :class:`ImageDownloadError` (DNS or network failure; :class:`ImageDownloadTimeoutError` when
    out of time). ``resolver`` and ``transport`` are the test hooks of :func:`fetch_image_url`.
    """
    _require_enabled(policy)
    target = parse_url(url, policy.label)
    check_target(target, policy)
    owned = transport is None
    active = transport or httpx.HTTPTransport(trust_env=False, retries=0)
    clock = Deadline(policy.timeout_s)
    try:
        addresses = resolve_target(
            target, resolver or system_resolver, clock, internal=is_internal(target, policy)
        )
        headers = {"User-Agent": USER_AGENT, **headers}

        def build(ip: IPAddress) -> httpx.Request:
            return request_for(target, ip, clock, method=method, headers=headers, content=content)

        response = send_pinned_request(target, addresses, active, clock, build, action="reach")
        try:
            if clock.expired:  # an answer cut short by the watchdog is no answer
                raise timed_out(target)
            return Answer(
                status_code=response.status_code,
                url=target.url,
                location=response.headers.get("location"),
            )
        finally:
            with contextlib.suppress(httpx.HTTPError):
                response.close()
    finally:
        clock.stop()
        if owned:
            active.close()
