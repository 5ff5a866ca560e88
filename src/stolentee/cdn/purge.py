"""Purge backends: tell the CDN to forget URLs.

``varnish``: one HTTP ``PURGE <path>`` per URL to ``STOLENTEE_CDN_PURGE_URL`` (the VCL in
``deploy/varnish/stolentee.vcl`` accepts it from its ``purgers`` ACL and evicts the object and its
variants); 200 and 404 (nothing cached) are both done. ``cloudflare``: its purge-by-URL API
(``POST /zones/{zone}/purge_cache`` with ``{"files": [...]}``), at most 30 URLs per call as
Cloudflare allows, the absolute URLs the CDN caches; a 429 is waited out in place when its
``Retry-After`` is short, else left to the queue's retry.
An error a retry may fix raises :class:`PurgeRetryableError` (the queue tries again with backoff);
a refusal that will not change (403, a bad zone) raises :class:`PurgeRejectedError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from stolentee.config import PurgeBackend, Settings
from stolentee.errors import ConfigurationError

log = logging.getLogger(__name__)
CLOUDFLARE_BATCH = 30  # Cloudflare's limit of URLs per purge-by-URL call
# A 429 asking for at most this long is waited out in place; longer, the queue retries later.
MAX_INLINE_WAIT_S = 10.0


class PurgeRetryableError(Exception):
    """The CDN did not purge now (network, 5xx, 429); the queue tries again."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PurgeRejectedError(Exception):
    """The CDN refused the purge for good (credentials, ACL, zone)."""


class Purger(Protocol):
    name: str

    def purge(self, urls: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class NoPurger:
    """``none``: nothing to purge (a CDN that revalidates, or none at all)."""

    name = "none"

    def purge(self, urls: Sequence[str]) -> None:
        return None

    def close(self) -> None:
        return None


class _HttpPurger:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def close(self) -> None:
        self.client.close()


class VarnishPurger(_HttpPurger):
    name = "varnish"

    def __init__(self, *, purge_url: str, client: httpx.Client) -> None:
        super().__init__(client)
        self.purge_url = purge_url.rstrip("/")

    def purge(self, urls: Sequence[str]) -> None:
        for url in urls:
            parts = urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = {"Host": parts.netloc} if parts.netloc else {}
            try:
                response = self.client.request("PURGE", self.purge_url + path, headers=headers)
            except httpx.HTTPError as exc:
                raise PurgeRetryableError(f"Varnish at {self.purge_url}: {exc}") from None
            if response.status_code in (200, 204, 404):
                continue
            if response.status_code in (401, 403, 405):
                raise PurgeRejectedError(
                    f"Varnish refused PURGE {path} (HTTP {response.status_code}): is this host in "
                    "the VCL's purgers ACL?"
                )
            raise PurgeRetryableError(f"Varnish answered HTTP {response.status_code} to PURGE")


class CloudflarePurger(_HttpPurger):
    name = "cloudflare"

    def __init__(self, *, api_url: str, zone_id: str, token: str, client: httpx.Client) -> None:
        super().__init__(client)
        self.endpoint = f"{api_url.rstrip('/')}/zones/{zone_id}/purge_cache"
        self.token = token

    def purge(self, urls: Sequence[str]) -> None:
        for start in range(0, len(urls), CLOUDFLARE_BATCH):
            self._purge_batch(list(urls[start : start + CLOUDFLARE_BATCH]))

    def _purge_batch(self, files: list[str], *, waited: bool = False) -> None:
        try:
            response = self.client.post(
                self.endpoint,
                json={"files": files},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError as exc:
            raise PurgeRetryableError(f"Cloudflare's API: {exc}") from None
        if response.status_code == 429:
            retry_after = _seconds(response.headers.get("Retry-After"))
            if not waited and retry_after is not None and retry_after <= MAX_INLINE_WAIT_S:
                time.sleep(retry_after)
                self._purge_batch(files, waited=True)
                return
            raise PurgeRetryableError("Cloudflare's rate limit", retry_after_s=retry_after)
        if response.status_code >= 500:
            raise PurgeRetryableError(f"Cloudflare's API answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or not body.get("success", False):
            errors = body.get("errors") if isinstance(body, dict) else None
            raise PurgeRejectedError(
                f"Cloudflare refused the purge (HTTP {response.status_code}): {errors or body}"
            )


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def build_purger(settings: Settings, client: httpx.Client | None = None) -> Purger:
    """The configured backend, with an HTTP client of its own unless one is handed in (tests);
    a configuration it cannot work with stops the start-up."""
    cdn = settings.cdn
    if cdn.purge_backend is PurgeBackend.NONE:
        return NoPurger()
    if cdn.purge_backend is PurgeBackend.VARNISH:
        if not cdn.purge_url:
            raise ConfigurationError(
                "STOLENTEE_CDN_PURGE_BACKEND=varnish needs STOLENTEE_CDN_PURGE_URL, the address "
                "PURGE requests are sent to (e.g. http://varnish:6081)"
            )
        return VarnishPurger(purge_url=cdn.purge_url, client=client or purge_client(settings))
    token = cdn.cloudflare_api_token.get_secret_value()
    if not cdn.cloudflare_zone_id or not token:
        raise ConfigurationError(
            "STOLENTEE_CDN_PURGE_BACKEND=cloudflare needs STOLENTEE_CLOUDFLARE_ZONE_ID and "
            "STOLENTEE_CLOUDFLARE_API_TOKEN (a token with the zone's Cache Purge permission)"
        )
    storage = settings.storage
    domain = {"r2": storage.r2_public_domain, "s3": storage.s3_public_domain}.get(
        storage.backend, ""
    )
    if not (domain or settings.service.public_base_url):
        raise ConfigurationError(
            "STOLENTEE_CDN_PURGE_BACKEND=cloudflare purges absolute URLs: set the bucket's public "
            "domain (R2_PUBLIC_DOMAIN / S3_PUBLIC_DOMAIN) or STOLENTEE_PUBLIC_BASE_URL to the "
            "domain Cloudflare serves the assets on"
        )
    return CloudflarePurger(
        api_url=cdn.cloudflare_api_url,
        zone_id=cdn.cloudflare_zone_id,
        token=token,
        client=client or purge_client(settings),
    )


def purge_client(settings: Settings) -> httpx.Client:
    """The one HTTP client purges use (the operator's own endpoints: no redirects followed)."""
    timeout = settings.cdn.purge_timeout_s
    return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
