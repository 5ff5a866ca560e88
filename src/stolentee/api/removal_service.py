"""What every removal endpoint does once it has the image bytes and options.

Authenticated caller in, image bytes and options in: check the header (type by content,
resolution), charge the rate limit in megapixels, run the engine through the admission gate,
refuse an empty result, count usage, and hand back the result with the Remove.bg headers.
Route modules only translate their wire formats to and from this.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from starlette.concurrency import run_in_threadpool

from stolentee.api.admission import RemovalGate
from stolentee.errors import RateLimitedError, UnknownForegroundError
from stolentee.keys.principals import Principal
from stolentee.keys.ratelimit import RateLimiter
from stolentee.keys.store import KeyStore
from stolentee.removal.base import RemovalOptions, RemovalResult, Remover, credits_for
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.imaging.decode import read_header
from stolentee.removal.removebg_wire import result_headers


@dataclass(frozen=True, slots=True)
class ServedRemoval:
    result: RemovalResult
    credits: float
    headers: dict[str, str]


@dataclass(slots=True)
class RemovalService:
    """The shared removal use case behind the HTTP routes (built once in the lifespan)."""

    engine: RemovalEngine
    remover: Remover  # the provider chain (the engine itself when there is no chain)
    keys: KeyStore
    limiter: RateLimiter
    gate: RemovalGate
    premium_model: str | None = None  # STOLENTEE_PREMIUM_MODEL when it can be served here

    async def serve(
        self, principal: Principal, data: bytes, options: RemovalOptions
    ) -> ServedRemoval:
        header = await run_in_threadpool(
            read_header, data, max_megapixels=self.engine.settings.max_input_megapixels
        )
        billable = min(header.megapixels, options.size.max_pixels / 1e6)
        decision = await run_in_threadpool(
            self.limiter.check_and_consume, principal.label, billable
        )
        rate_headers = decision.headers()
        if not decision.allowed:
            raise RateLimitedError(
                f"rate limit of {decision.limit:g} megapixels per minute reached",
                headers=rate_headers,
            )
        model = options.model
        if model is None and principal.premium:
            model = self.premium_model  # served here first; Remove.bg is then the fallback
        routed = replace(options, premium=principal.premium, model=model)
        result = await self.gate.run(lambda: self.remover.remove(data, routed))
        if result.foreground is None:
            raise UnknownForegroundError("no subject was found in the image", headers=rate_headers)
        credits = credits_for(options.size, result.width, result.height)
        await run_in_threadpool(
            self.keys.record_usage,
            principal,
            images=1,
            megapixels=header.megapixels,
            credits=credits,
        )
        headers = {**rate_headers, **result_headers(result, credits), "X-Model": result.model}
        return ServedRemoval(result, credits, headers)
