"""Reach a user-supplied URL without opening a door into our own network (SSRF).

Used for Remove.bg's ``image_url`` / ``bg_image_url`` and rembg's ``GET /api/remove?url=``
(:func:`fetch_image_url`), and for design callbacks (:func:`vet_url` when a ``callback_url`` is
accepted, :func:`send_pinned` for each delivery; see :mod:`stolentee.designs.callbacks`). Each
use has its own :class:`UrlPolicy`. Image URLs are off unless ``STOLENTEE_IMAGE_URL_ENABLED`` is
set; :func:`fetch_image_url` then applies, on the first request *and on every redirect hop*:

1. **URL shape.** ``http``/``https`` only; a host is required; no user-info (``user:pw@``); the
   port, when given, is 1-65535; no whitespace, control characters or backslashes in the
   authority. The URL is taken apart once (``urllib.parse.urlsplit`` plus our own authority
   parser) and every later step uses the *validated components*, never re-parses the raw text, so
   two parsers cannot disagree about which host is meant.
2. **Host spelling.** Host names are lower-cased and IDNA-encoded; a trailing dot is dropped.
   Anything that a resolver would read as an IPv4 address (``2130706433``, ``0x7f.1``,
   ``017700000001``, ``127.1``) is normalised with :func:`socket.inet_aton` the way glibc would, so
   the address checks below see ``127.0.0.1``; a numeric-looking host that is not a valid address
   is refused. Bracketed IPv6 literals are parsed with :mod:`ipaddress`; zone ids are refused.
3. **Allow-list** (``STOLENTEE_IMAGE_URL_ALLOWED_HOSTS``): exact names, ``*.suffix`` entries (sub-
   domains only, list the apex separately) or ``*`` for any host. Empty allows nothing.
4. **Addresses.** The host is resolved once (``getaddrinfo``, within the time budget) and the fetch
   is refused if *any* answer is not a public unicast address: loopback, private (RFC 1918,
   ``fc00::/7``), link-local (``169.254/16`` including the ``169.254.169.254`` metadata service,
   ``fe80::/10``), unspecified, multicast, reserved, shared/CGNAT ``100.64/10``, documentation and
   benchmark ranges, and IPv6 forms that embed a refused IPv4 address (IPv4-mapped ``::ffff:...``,
   NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``). Literal addresses in the URL get the same checks.
   These refusals hold whatever the allow-list says. The one exception is a policy's
   ``internal_hosts`` (exact names or addresses, used for callbacks to a shop's backend on a
   private network): those may be loopback or private, never link-local (metadata), unspecified
   or multicast (:func:`internal_address_reason`). Image URLs have no internal hosts.

**Pinning the vetted address (DNS rebinding).** A check-then-connect design is only safe if the
socket goes to the address that was checked; letting the HTTP client resolve the name again would
let a short-TTL DNS record answer a public address to the check and ``127.0.0.1`` to the connect.
We therefore send each request *to the vetted IP itself*: the request URL's host is the IP
literal, the ``Host`` header carries the real name (and port), and for ``https`` the
``sni_hostname`` request extension makes httpcore use the real name for SNI *and* for certificate
verification (``ssl`` checks the certificate against ``server_hostname``), so TLS stays fully
verified. We chose this over a custom resolver hook in the connection layer because httpx exposes
no public way to plug a resolver into :class:`httpx.HTTPTransport`; rewriting the request uses only
public API and keeps the pinning visible in one function (:func:`_send_pinned`). Every request
carries ``Connection: close``, so a pooled connection opened for one host name is never reused for
another name that happens to share the IP (whose certificate was never checked).

**Other guards.** Redirects are followed here, by hand (never by httpx), up to ``max_redirects``,
each hop re-running steps 1-4. The whole operation, DNS included, must finish within
``timeout_s``: every connect/read/write gets the time that remains, the body loop checks the clock
after every chunk, a resolver that does not answer in time is abandoned (its thread finishes on
its own), and a watchdog timer shuts down the fetch's sockets when the time is up, which also
stops a server that dribbles its headers a byte at a time (see :class:`_Clock`).
The body is streamed and cut off at ``max_bytes`` (a larger ``Content-Length`` is refused before
reading). ``Accept-Encoding: identity`` is sent and compressed answers are refused, so no
decompression bomb is ever expanded. No proxy, ``.netrc`` or certificate setting comes from the
environment, and no cookie is stored or sent: requests go straight to an ``httpx`` transport, not
through an :class:`httpx.Client` (which would keep a cookie jar and read proxy variables).

**Test hooks.** ``resolver`` replaces ``getaddrinfo``; its answers are vetted exactly like real
ones, so it cannot smuggle a private address through. ``transport`` replaces the HTTP transport; it
only ever receives requests already addressed to a vetted IP. Production code passes neither
(or passes a plain ``httpx.HTTPTransport`` built once at start-up); nothing in the settings can
reach these parameters.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urljoin, urlsplit

import httpx

from stolentee.errors import (
    FileTooLargeError,
    ImageDownloadError,
    ImageDownloadTimeoutError,
    ImageUrlDisabledError,
    ImageUrlError,
    TooManyRedirectsError,
)

if TYPE_CHECKING:
    from stolentee.config import ApiSettings

__all__ = [
    "Answer",
    "FetchedImage",
    "ImageDownloadError",
    "ImageDownloadTimeoutError",
    "ImageUrlDisabledError",
    "ImageUrlError",
    "Resolver",
    "TooManyRedirectsError",
    "UrlPolicy",
    "fetch_image_url",
    "forbidden_address_reason",
    "internal_address_reason",
    "send_pinned",
    "system_resolver",
    "vet_url",
]

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> addresses`` as text; raise :class:`OSError` when the name does not resolve."""

ALLOWED_HOSTS_VAR: Final = "STOLENTEE_IMAGE_URL_ALLOWED_HOSTS"
MAX_URL_LENGTH: Final = 8192
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_USER_AGENT: Final = "stolentee-image-fetch/1"

# Host names: LDH labels (underscores tolerated, they exist in the wild), at most 253 characters.
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME_RE: Final = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
# Labels a resolver may read as (part of) an IPv4 address: decimal, octal or 0x-hex numbers.
_NUMERIC_LABEL_RE: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
# Characters kept as they are when re-encoding a path or query (RFC 3986 reserved + unreserved +
# the percent sign of existing escapes); everything else is percent-encoded as UTF-8.
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE: Final = _PATH_SAFE + "?"

_SHARED_ADDRESS_SPACE: Final = ipaddress.IPv4Network("100.64.0.0/10")
_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")  # 0.x reaches this host on Linux
_NAT64_PREFIX: Final = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- policy and result ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which URLs may be reached, and within what limits. Build the image-URL policy from settings
    with :meth:`from_settings`; :mod:`stolentee.designs.callbacks` builds the callback policy.

    ``internal_hosts`` (empty for image URLs) are exact host names or IP literals the operator
    trusts on a private network: they are allowed without being in ``allowed_hosts``, may be
    reached over plain ``http`` when ``https_only`` is set, and may be (or resolve to) loopback
    and private addresses. Link-local (the ``169.254.169.254`` metadata service), unspecified
    and multicast addresses stay refused for them too. ``label`` names the URL in error
    messages and ``allowed_hosts_var`` the setting that fills ``allowed_hosts``.
    """

    enabled: bool
    allowed_hosts: tuple[str, ...]
    timeout_s: float
    max_redirects: int
    max_bytes: int
    https_only: bool = False
    internal_hosts: tuple[str, ...] = ()
    label: str = "image URL"
    allowed_hosts_var: str = ALLOWED_HOSTS_VAR

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        wildcards = [entry for entry in self.internal_hosts if "*" in entry]
        if wildcards:
            raise ValueError(f"internal hosts must be exact names or addresses, not {wildcards}")

    @classmethod
    def from_settings(cls, api: ApiSettings) -> UrlPolicy:
        """The policy the API settings describe (size cap: the request body limit)."""
        return cls(
            enabled=api.image_url_enabled,
            allowed_hosts=api.allowed_hosts,
            timeout_s=api.image_url_timeout_s,
            max_redirects=api.image_url_max_redirects,
            max_bytes=api.max_body_bytes,
        )


@dataclass(frozen=True, slots=True)
class FetchedImage:
    """The downloaded bytes (not yet decoded or type-checked) and where they came from."""

    content: bytes
    final_url: str
    content_type: str | None


# --- URL checks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """One validated URL: every field already checked and normalised."""

    scheme: str
    host: str  # lower-case ASCII name, or the canonical text of an IP literal
    ip: IPAddress | None  # set when the URL names an address instead of a host name
    port: int
    path_query: str  # percent-encoded ASCII, starts with "/"

    @property
    def authority(self) -> str:
        """``host[:port]`` as it appears in the URL and in the ``Host`` header."""
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path_query}"


def _parse_url(url: str, label: str = "image URL") -> _Target:
    """Validate the shape of ``url`` and normalise it, or raise :class:`ImageUrlError`."""
    url = url.strip()
    if not url:
        raise ImageUrlError(f"The {label} is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise ImageUrlError(f"The {label} is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise ImageUrlError(f"The {label} contains whitespace or control characters.")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ImageUrlError(f"The {label} is malformed: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = f"{scheme!r}" if scheme else "none"
        raise ImageUrlError(f"Only http and https {label}s are accepted (scheme: {shown}).")
    netloc = parts.netloc
    if not netloc:
        raise ImageUrlError(f"The {label} has no host.")
    if "@" in netloc:
        raise ImageUrlError(
            f"{label[:1].upper()}{label[1:]}s must not contain a user name or password."
        )
    if "\\" in netloc or "%" in netloc:
        raise ImageUrlError(f"The {label}'s host contains characters a host name cannot have.")
    raw_host, port = _split_authority(netloc, default_port=_DEFAULT_PORTS[scheme], label=label)
    host, ip = _normalise_host(raw_host, label)
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if not path.startswith("/"):
        path = "/" + path
    query = quote(parts.query, safe=_QUERY_SAFE)
    path_query = f"{path}?{query}" if query else path
    return _Target(scheme=scheme, host=host, ip=ip, port=port, path_query=path_query)


def _split_authority(
    netloc: str, *, default_port: int, label: str = "image URL"
) -> tuple[str, int]:
    """``host[:port]`` or ``[v6][:port]`` to (host text, port)."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise ImageUrlError(f"The {label} has an unterminated IPv6 address.")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ImageUrlError(f"The {label}'s host is malformed.")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_or_empty = netloc.partition(":")
        port_text = port_text_or_empty if sep else None
        if ":" in port_text_or_empty:
            raise ImageUrlError(f"The {label}'s host is malformed (IPv6 needs brackets).")
    if port_text is None or port_text == "":
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise ImageUrlError(f"The {label}'s port is not a number.")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ImageUrlError(f"The {label}'s port is out of range (1-65535).")
    return host, port


def _normalise_host(raw_host: str, label: str = "image URL") -> tuple[str, IPAddress | None]:
    """Canonical host text, and the address when the host is an IP literal in any spelling."""
    if raw_host.startswith("["):
        try:
            ip6 = ipaddress.IPv6Address(raw_host[1:-1])
        except ValueError:
            raise ImageUrlError(f"The {label}'s IPv6 address is malformed.") from None
        return ip6.compressed, ip6
    host = raw_host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise ImageUrlError(f"The {label} has no host.")
    if not host.isascii():
        try:
            # IDNA 2003 also folds look-alikes such as full-width digits to ASCII; the checks
            # below run on the folded result, which is what a resolver would be asked.
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ImageUrlError(f"The {label}'s host is not a valid domain name.") from None
        host = host.removesuffix(".")
    ip4 = _ipv4_literal(host, label)
    if ip4 is not None:
        return str(ip4), ip4
    if not _HOSTNAME_RE.fullmatch(host):
        raise ImageUrlError(f"The {label}'s host is not a valid domain name.")
    return host, None


def _ipv4_literal(host: str, label: str = "image URL") -> ipaddress.IPv4Address | None:
    """The address when ``host`` would be read as IPv4 (``127.1``, ``0x7f.1``, ``2130706433``)."""
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        pass
    last_label = host.rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL_RE.fullmatch(last_label):
        return None  # a host name (a name's last label is never all-numeric)
    try:
        packed = socket.inet_aton(host)
    except OSError:
        raise ImageUrlError(
            f"The {label}'s host looks like an IPv4 address but is not a valid one."
        ) from None
    return ipaddress.IPv4Address(packed)


def _allow_entry(entry: str) -> str:
    """An allow-list entry spelt the way :func:`_normalise_host` spells hosts."""
    entry = entry.strip().lower().removesuffix(".")
    if not entry.isascii():
        with contextlib.suppress(UnicodeError):
            entry = entry.encode("idna").decode("ascii").lower()
    return entry


def _host_allowed(host: str, ip: IPAddress | None, allowed: tuple[str, ...]) -> bool:
    for raw_entry in allowed:
        entry = _allow_entry(raw_entry)
        if entry == "*":
            return True
        if entry.startswith("*."):
            if ip is None and host.endswith(entry[1:]):
                return True
            continue
        if ip is not None:
            try:
                if ipaddress.ip_address(entry.strip("[]")) == ip:
                    return True
            except ValueError:
                continue
        elif host == entry:
            return True
    return False


def _is_internal(target: _Target, policy: UrlPolicy) -> bool:
    """The host is one of the policy's exact ``internal_hosts`` entries."""
    return bool(policy.internal_hosts) and _host_allowed(
        target.host, target.ip, policy.internal_hosts
    )


def _address_reason(ip: IPAddress, *, internal: bool) -> str | None:
    """Why ``ip`` must not be contacted for this host (``None``: it may be)."""
    return internal_address_reason(ip) if internal else forbidden_address_reason(ip)


def _check_target(target: _Target, policy: UrlPolicy) -> None:
    label = policy.label
    internal = _is_internal(target, policy)
    if not internal:
        if not policy.allowed_hosts:
            raise ImageUrlError(
                f"No host is allowed for {label}s: set "
                f"{policy.allowed_hosts_var} (comma-separated names, *.suffix entries or *)."
            )
        if not _host_allowed(target.host, target.ip, policy.allowed_hosts):
            raise ImageUrlError(
                f"The host {target.host!r} is not in the {label} allow-list "
                f"({policy.allowed_hosts_var})."
            )
        if policy.https_only and target.scheme != "https":
            raise ImageUrlError(
                f"The {label} must use https (plain http is allowed only for internal hosts)."
            )
    if target.ip is not None:
        reason = _address_reason(target.ip, internal=internal)
        if reason is not None:
            log.info("%s refused: %s is %s", label, target.ip, reason)
            raise ImageUrlError(f"The {label} points at {target.ip}, {reason}.")


# --- addresses -----------------------------------------------------------------------------------


def forbidden_address_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from (``"a loopback address"``, …), or ``None`` if public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = forbidden_address_reason(embedded)
            if reason is not None:
                return f"an IPv6 form of {embedded}, {reason}"
        if ip.is_site_local:
            return "a site-local address"
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (
            isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE,
            "a shared (carrier-grade NAT) address",
        ),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "a non-public address"),
    )
    for failed, reason in checks:
        if failed:
            return reason
    return None


def internal_address_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be contacted even on a trusted internal host, or ``None``.

    Loopback, private (RFC 1918, ``fc00::/7``, site-local), shared (CGNAT) and public addresses
    pass; link-local (``169.254/16`` with the cloud metadata service, ``fe80::/10``), unspecified
    and multicast addresses, and IPv6 forms that embed one of those, are refused.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = internal_address_reason(embedded)
            return None if reason is None else f"an IPv6 form of {embedded}, {reason}"
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback or ip.is_private:
        return None
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return None
    return forbidden_address_reason(ip)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host`` (TCP), in its order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _resolve(
    target: _Target, resolver: Resolver, clock: _Clock, *, internal: bool = False
) -> list[IPAddress]:
    """The vetted addresses to connect to; refuses when *any* answer is not public (or, for an
    internal host, when any answer is link-local, unspecified or multicast)."""
    if target.ip is not None:
        return [target.ip]  # already vetted by _check_target
    remaining = clock.remaining()
    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="stolentee-resolve"
    )
    try:
        future = executor.submit(resolver, target.host, target.port)
        try:
            answers = future.result(timeout=remaining)
        except concurrent.futures.TimeoutError:
            raise ImageDownloadTimeoutError(
                f"Resolving {target.host!r} took longer than the time allowed."
            ) from None
        except (OSError, ValueError) as exc:
            raise ImageDownloadError(f"Could not resolve {target.host!r}: {exc}.") from None
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            ip = ipaddress.ip_address(str(answer).split("%", 1)[0])
        except ValueError:
            raise ImageUrlError(
                f"{target.host!r} resolved to something that is not an address."
            ) from None
        reason = _address_reason(ip, internal=internal)
        if reason is not None:
            log.info("URL refused: %s resolves to %s, %s", target.host, ip, reason)
            raise ImageUrlError(f"The host {target.host!r} resolves to {ip}, {reason}.")
        addresses.append(ip)
    if not addresses:
        raise ImageDownloadError(f"Could not resolve {target.host!r}: no address.")
    return addresses


# --- HTTP ----------------------------------------------------------------------------------------

_SOCKET_EVENTS: Final = frozenset(
    {"connection.connect_tcp.complete", "connection.start_tls.complete"}
)


class _Clock:
    """The time budget of one fetch, and the watchdog that enforces it on blocked sockets.

    Per-operation timeouts alone do not bound a fetch: a server may dribble its status line and
    headers one byte at a time, each read well within the read timeout, while httpcore keeps
    reading until the headers are complete. So when the budget runs out a timer thread shuts down
    every socket this fetch opened, which wakes any read blocked on it. Sockets are learnt through
    httpcore's documented ``trace`` request extension (the ``connect_tcp`` / ``start_tls`` events
    return the network stream, whose ``get_extra_info("socket")`` is the socket).
    """

    def __init__(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True
        self._timer.name = "stolentee-fetch-watchdog"
        self._timer.start()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self.deadline

    def remaining(self) -> float:
        """Seconds left; raises :class:`ImageDownloadTimeoutError` when there are none."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0 or self._fired:
            raise ImageDownloadTimeoutError(
                "Downloading the image took longer than the time allowed."
            )
        return remaining

    def trace(self, event: str, info: dict[str, object]) -> None:
        """httpcore ``trace`` hook: remember each socket as soon as it exists."""
        if event not in _SOCKET_EVENTS:
            return
        get_extra_info = getattr(info.get("return_value"), "get_extra_info", None)
        sock = get_extra_info("socket") if callable(get_extra_info) else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if not self._fired:
                self._sockets.append(sock)
                return
        _abort(sock)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _abort(sock)

    def stop(self) -> None:
        self._timer.cancel()


def _abort(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter also drops the TLS object that
    # the reading thread may be using. Shutting down the descriptor wakes that thread with EOF.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _timed_out(target: _Target) -> ImageDownloadTimeoutError:
    return ImageDownloadTimeoutError(f"Downloading {target.url} took longer than the time allowed.")


_IMAGE_HEADERS: Final = {
    "User-Agent": _USER_AGENT,
    "Accept": "image/*, */*;q=0.5",
    "Accept-Encoding": "identity",
}


def _request_for(
    target: _Target,
    ip: IPAddress,
    clock: _Clock,
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


def _send_pinned(
    target: _Target,
    addresses: list[IPAddress],
    transport: httpx.BaseTransport,
    clock: _Clock,
    build: Callable[[IPAddress], httpx.Request] | None = None,
    action: str = "download",
) -> httpx.Response:
    """Send to the first vetted address that accepts a connection (no new DNS lookup).
    ``build`` makes the request for one address (default: the image GET); ``action`` says
    what failed in error messages."""
    last_error: httpx.TransportError | None = None
    for ip in addresses:
        request = build(ip) if build is not None else _request_for(target, ip, clock)
        try:
            return transport.handle_request(request)
        except httpx.TimeoutException:
            raise _timed_out(target) from None
        except httpx.ConnectError as exc:
            if clock.expired:
                raise _timed_out(target) from None
            last_error = exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if clock.expired:
                raise _timed_out(target) from None
            raise ImageDownloadError(f"Could not {action} {target.url}: {exc}") from None
    raise ImageDownloadError(f"Could not connect to {target.host!r}: {last_error}")


def _read_body(
    response: httpx.Response, target: _Target, policy: UrlPolicy, clock: _Clock
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
                raise _timed_out(target)
    except httpx.TimeoutException:
        raise _timed_out(target) from None
    except httpx.HTTPError as exc:
        if clock.expired:
            raise _timed_out(target) from None
        raise ImageDownloadError(f"Could not download {target.url}: {exc}") from None
    if clock.expired:  # a body that ends with the connection looks complete when aborted
        raise _timed_out(target)
    return bytes(body)


def _follow(target: _Target, location: str) -> str:
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
    clock = _Clock(policy.timeout_s)
    try:
        current = url
        for hop in range(policy.max_redirects + 1):
            target = _parse_url(current, policy.label)
            _check_target(target, policy)
            addresses = _resolve(target, resolve, clock, internal=_is_internal(target, policy))
            response = _send_pinned(target, addresses, active, clock)
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


# --- checking a URL ahead of time, and one pinned request without redirects ---------------------


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
    target = _parse_url(url, policy.label)
    _check_target(target, policy)
    clock = _Clock(policy.timeout_s)
    try:
        addresses = _resolve(
            target, resolver or system_resolver, clock, internal=_is_internal(target, policy)
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
    target = _parse_url(url, policy.label)
    _check_target(target, policy)
    owned = transport is None
    active = transport or httpx.HTTPTransport(trust_env=False, retries=0)
    clock = _Clock(policy.timeout_s)
    try:
        addresses = _resolve(
            target, resolver or system_resolver, clock, internal=_is_internal(target, policy)
        )
        headers = {"User-Agent": _USER_AGENT, **headers}

        def build(ip: IPAddress) -> httpx.Request:
            return _request_for(target, ip, clock, method=method, headers=headers, content=content)

        response = _send_pinned(target, addresses, active, clock, build, action="reach")
        try:
            if clock.expired:  # an answer cut short by the watchdog is no answer
                raise _timed_out(target)
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
