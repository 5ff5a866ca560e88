"""Our own removal service (stolentee removal-service) as a provider: self-hosted, so it never
costs credits whatever X-Credits-Charged says."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import httpx

from stolentee.config import RemovalSettings
from stolentee.errors import ConfigurationError
from stolentee.removal.providers.http import ProbeResult
from stolentee.removal.providers.remote import RemoteRemover


class RembgServiceRemover(RemoteRemover):
    """Our own removal service (``stolentee removal-service``) at ``REMBG_ENDPOINT``."""

    name = "rembg-service"
    photo_type = "photo"
    sends_model = True  # our own service: the caller's model (name or tier) is forwarded

    def __init__(
        self,
        *,
        settings: RemovalSettings,
        http_client: httpx.Client,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not settings.rembg_endpoint:
            raise ConfigurationError("the rembg-service provider needs REMBG_ENDPOINT")
        super().__init__(
            base_url=settings.rembg_endpoint,
            api_key=settings.rembg_api_key.get_secret_value(),
            settings=settings,
            http_client=http_client,
            sleep=sleep,
            rng=rng,
        )

    @property
    def remove_url(self) -> str:
        return f"{self.base_url}/v1.0/removebg"

    def probe(self) -> ProbeResult:
        """``GET {REMBG_ENDPOINT}/readyz`` (application/health+json): 200 is ready."""
        url = f"{self.base_url}/readyz"
        response, problem, latency_ms = self._get(url)
        if response is None:
            return ProbeResult(False, problem, latency_ms)
        if response.status_code == 200:
            return ProbeResult(True, "ready", latency_ms)
        output = ""
        try:
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("output"), str):
                output = f": {body['output']}"
        except ValueError:
            pass
        return ProbeResult(False, f"{url} answered HTTP {response.status_code}{output}", latency_ms)
