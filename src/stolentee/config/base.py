"""What every settings section shares: the source of values, and helpers for their text."""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from pydantic_settings import SettingsConfigDict

SECTION_CONFIG = SettingsConfigDict(
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    populate_by_name=True,
    validate_default=True,
)

# The seed's pool sizes (section 2.3): ``max: isProduction ? 15 : 5``.
POOL_MAX_PRODUCTION = 15
POOL_MAX_DEVELOPMENT = 5


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def host_list(text: str) -> tuple[str, ...]:
    """A comma-separated host list, lower-cased, blanks dropped."""
    return tuple(host.strip().lower() for host in text.split(",") if host.strip())


def exact_hosts(value: str) -> str:
    """A validator's check of an internal-hosts setting: exact names or addresses only (a
    wildcard would let any name on a private network receive our requests)."""
    if "*" in value:
        raise ValueError("internal hosts must be exact names or addresses, not wildcards")
    return value


def normalise_database_url(url: str) -> str:
    """Accept the URL spellings PaaS dashboards hand out and pick the psycopg 3 driver."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(url: str) -> str:
    """Hide the password of a URL (``scheme://user:***@host/...``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))
