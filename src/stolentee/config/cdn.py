"""Settings of the CDN in front of the assets: how to make it forget URLs (purge)."""

from __future__ import annotations

import re
from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import SECTION_CONFIG

CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"
_ZONE_ID = re.compile(r"[0-9a-f]{32}")


class PurgeBackend(StrEnum):
    NONE = "none"
    VARNISH = "varnish"
    CLOUDFLARE = "cloudflare"


class CdnSettings(BaseSettings):
    """The CDN purge: which backend, where it is, with what credentials."""

    model_config = SECTION_CONFIG

    purge_backend: PurgeBackend = Field(
        PurgeBackend.NONE,
        validation_alias="STOLENTEE_CDN_PURGE_BACKEND",
        description="How the CDN is told to forget a deleted design's or moved object's URLs: "
        "`varnish` (HTTP PURGE to `STOLENTEE_CDN_PURGE_URL`), `cloudflare` (its purge-by-URL "
        "API), or `none`. Purges go through the job queue (retried, never blocking a request).",
    )
    purge_url: str = Field(
        "",
        validation_alias="STOLENTEE_CDN_PURGE_URL",
        description="`varnish`: the base URL PURGE requests are sent to (e.g. "
        "`http://varnish:6081`; the object's path is appended). The VCL in `deploy/varnish/` "
        "accepts them from the addresses in its `purgers` ACL.",
    )
    cloudflare_zone_id: str = Field(
        "",
        validation_alias="STOLENTEE_CLOUDFLARE_ZONE_ID",
        description="`cloudflare`: the zone (32 hex digits) the asset domain belongs to.",
    )
    cloudflare_api_token: SecretStr = Field(
        SecretStr(""),
        validation_alias="STOLENTEE_CLOUDFLARE_API_TOKEN",
        description="`cloudflare`: an API token with the zone's Cache Purge permission (secret, "
        "masked in `config show`).",
    )
    cloudflare_api_url: str = Field(
        CLOUDFLARE_API_URL,
        validation_alias="STOLENTEE_CLOUDFLARE_API_URL",
        description="Cloudflare's API base URL (change it only for a stand-in in tests).",
    )
    purge_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        validation_alias="STOLENTEE_CDN_PURGE_TIMEOUT_S",
        description="Time allowed for one purge request.",
    )

    @field_validator("purge_url", "cloudflare_api_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
                raise ValueError("must be an http:// or https:// URL without a query")
        return value

    @field_validator("cloudflare_zone_id")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not _ZONE_ID.fullmatch(value):
            raise ValueError("a Cloudflare zone id is 32 hexadecimal digits")
        return value
