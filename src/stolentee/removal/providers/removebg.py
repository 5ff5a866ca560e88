"""Remove.bg itself, as the paid fallback: its own type names, the credits it charged from
X-Credits-Charged, and its account balance for the probes."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from stolentee.config import RemovalSettings
from stolentee.errors import ConfigurationError
from stolentee.removal.base import (
    RemovalOptions,
    credits_for,
)
from stolentee.removal.providers.http import ProbeResult
from stolentee.removal.providers.remote import RemoteRemover, error_entry

log = logging.getLogger(__name__)


class RemoveBgRemover(RemoteRemover):
    """Remove.bg (``REMOVEBG_API_URL``, ``REMOVEBG_API_KEY``): the paid fallback."""

    name = "removebg"
    photo_type = "auto"  # Remove.bg has no generic "photo" type; its auto handles photos

    def __init__(
        self,
        *,
        settings: RemovalSettings,
        http_client: httpx.Client,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        api_key = settings.removebg_api_key.get_secret_value()
        if not api_key:
            raise ConfigurationError("the removebg provider needs REMOVEBG_API_KEY")
        if not settings.removebg_api_url:
            raise ConfigurationError("the removebg provider needs REMOVEBG_API_URL")
        super().__init__(
            base_url=settings.removebg_api_url,
            api_key=api_key,
            settings=settings,
            http_client=http_client,
            sleep=sleep,
            rng=rng,
        )

    @property
    def remove_url(self) -> str:
        return f"{self.base_url}/removebg"

    def credits_charged(
        self, response: httpx.Response, options: RemovalOptions, width: int, height: int
    ) -> float:
        """``X-Credits-Charged``; when absent or unreadable, what Remove.bg's pricing says."""
        value = response.headers.get("X-Credits-Charged")
        if value is not None:
            try:
                charged = float(value.strip())
            except ValueError:
                charged = -1.0
            if charged >= 0:
                return charged
        estimate = credits_for(options.size, width, height)
        log.warning(
            "%s answered without a usable X-Credits-Charged (%r); counting %g credits",
            self.name,
            value,
            estimate,
        )
        return estimate

    def probe(self) -> ProbeResult:
        """``GET {REMOVEBG_API_URL}/account`` with the key: 200 is usable (the credit balance is
        reported), 401/402/403 is not.

        A 404 still counts as ok: the host answered HTTP, it just has no ``/account``, as a
        Remove.bg-compatible stand-in (another removal API at ``REMOVEBG_API_URL`` in staging or
        tests) may not. Reachability is what the probe can tell there, and failing it would
        keep the provider's breaker from ever half-opening early."""
        url = f"{self.base_url}/account"
        response, problem, latency_ms = self._get(url)
        if response is None:
            return ProbeResult(False, problem, latency_ms)
        status = response.status_code
        if status == 200:
            credits = _account_credits(response)
            detail = "account ok" if credits is None else f"account ok, {credits:g} credits"
            return ProbeResult(True, detail, latency_ms, credits=credits)
        if status == 404:
            return ProbeResult(
                True, f"reachable ({url} answered 404: no account endpoint)", latency_ms
            )
        entry = error_entry(response)
        said = entry.get("detail") or entry.get("title") or ""
        reasons = {401: "API key refused", 402: "out of credits", 403: "API key refused"}
        reason = reasons.get(status, f"HTTP {status}")
        return ProbeResult(False, f"{url}: {reason}" + (f" ({said})" if said else ""), latency_ms)


def _account_credits(response: httpx.Response) -> float | None:
    """``data.attributes.credits.total`` of Remove.bg's account document, if present."""
    try:
        body: Any = response.json()
        total = body["data"]["attributes"]["credits"]["total"]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(total, bool) or not isinstance(total, int | float):
        return None
    return float(total)
