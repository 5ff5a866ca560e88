"""Which IP addresses a user-supplied URL may reach: never loopback, private, link-local, shared,
multicast or reserved space, including IPv4 hidden in IPv6 forms."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    pass


_SHARED_ADDRESS_SPACE: Final = ipaddress.IPv4Network("100.64.0.0/10")


_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")  # 0.x reaches this host on Linux


_NAT64_PREFIX: Final = ipaddress.IPv6Network("64:ff9b::/96")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Python's ipaddress counts 255.255.255.255 among the private networks; it is the broadcast address.
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


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
        (ip == _LIMITED_BROADCAST, "the broadcast address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (
            isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE,
            "a shared (carrier-grade NAT) address",
        ),
        # Before "private": Python's table also lists 240.0.0.0/4 (reserved) among the private.
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
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
