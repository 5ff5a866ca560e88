"""What a user-supplied URL may look like and which hosts it may reach (SSRF), and its resolution.

:class:`UrlPolicy` is each use's rules (image URLs, design callbacks). A URL is taken apart once
and every later step uses the validated components; hosts are normalised the way a resolver
would read them; every address a name resolves to must be public (or one of a policy's internal
hosts). The full policy, what is refused and why, is in ``docs/api.md`` ("User-supplied URLs").
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, urlsplit

from stolentee.errors import (
    ImageDownloadError,
    ImageDownloadTimeoutError,
    ImageUrlError,
)
from stolentee.netsafe.addresses import IPAddress, forbidden_address_reason, internal_address_reason
from stolentee.netsafe.clock import Deadline

if TYPE_CHECKING:
    from stolentee.config import ApiSettings

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]
"""``(host, port) -> addresses`` as text; raise :class:`OSError` when the name does not resolve."""

ALLOWED_HOSTS_VAR: Final = "STOLENTEE_IMAGE_URL_ALLOWED_HOSTS"
MAX_URL_LENGTH: Final = 8192
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

# Host names: LDH labels (underscores tolerated, they exist in the wild), at most 253 characters.
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME_RE: Final = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
# Labels a resolver may read as (part of) an IPv4 address: decimal, octal or 0x-hex numbers.
_NUMERIC_LABEL_RE: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
# Characters kept as they are when re-encoding a path or query (RFC 3986 reserved + unreserved +
# the percent sign of existing escapes); everything else is percent-encoded as UTF-8.
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE: Final = _PATH_SAFE + "?"


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


# --- URL checks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
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


def parse_url(url: str, label: str = "image URL") -> Target:
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
    return Target(scheme=scheme, host=host, ip=ip, port=port, path_query=path_query)


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


def is_internal(target: Target, policy: UrlPolicy) -> bool:
    """The host is one of the policy's exact ``internal_hosts`` entries."""
    return bool(policy.internal_hosts) and _host_allowed(
        target.host, target.ip, policy.internal_hosts
    )


def _address_reason(ip: IPAddress, *, internal: bool) -> str | None:
    """Why ``ip`` must not be contacted for this host (``None``: it may be)."""
    return internal_address_reason(ip) if internal else forbidden_address_reason(ip)


def check_target(target: Target, policy: UrlPolicy) -> None:
    label = policy.label
    internal = is_internal(target, policy)
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


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host`` (TCP), in its order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_target(
    target: Target, resolver: Resolver, clock: Deadline, *, internal: bool = False
) -> list[IPAddress]:
    """The vetted addresses to connect to; refuses when *any* answer is not public (or, for an
    internal host, when any answer is link-local, unspecified or multicast)."""
    if target.ip is not None:
        return [target.ip]  # already vetted by check_target
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
