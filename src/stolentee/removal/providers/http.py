"""The HTTP side every remote provider shares: one pooled client with timeouts, Retry-After read in
both forms, and a health probe's result."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from stolentee import __version__
from stolentee.config import RemovalSettings

PROBE_READ_TIMEOUT_S = 5.0  # health probes answer fast or count as failed


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One health probe of a provider."""

    ok: bool
    detail: str
    latency_ms: float
    credits: float | None = None  # Remove.bg's credit balance, when the probe reports one


def build_http_client(settings: RemovalSettings) -> httpx.Client:
    """The one HTTP client every remote provider of a process shares (built once by the entry
    point, closed by it). Timeouts from ``STOLENTEE_PROVIDER_CONNECT_TIMEOUT_S`` and
    ``STOLENTEE_PROVIDER_READ_TIMEOUT_S``; redirects are not followed (an API does not move)."""
    return httpx.Client(
        timeout=httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.connect_timeout_s,
        ),
        follow_redirects=False,
        headers={"User-Agent": f"stolentee/{__version__}"},
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), ``None`` when absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
