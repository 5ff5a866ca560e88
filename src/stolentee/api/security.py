"""Who is calling: API keys in ``X-Api-Key`` (as Remove.bg), or loopback when no key exists."""

from __future__ import annotations

import ipaddress

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from stolentee.errors import AuthenticationError
from stolentee.keys.principals import LOOPBACK, Principal
from stolentee.keys.store import KeyStore

API_KEY_HEADER = "X-Api-Key"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def authenticate(request: Request, keys: KeyStore) -> Principal:
    """The caller, or 403 ``auth_failed`` with the reason."""
    presented = request.headers.get(API_KEY_HEADER)
    if presented:
        principal = await run_in_threadpool(keys.authenticate, presented)
        if principal is None:
            raise AuthenticationError("the API key is unknown or revoked")
        return principal
    if await run_in_threadpool(keys.keys_configured):
        raise AuthenticationError(f"missing API key: send it in the {API_KEY_HEADER} header")
    client = request.client.host if request.client else None
    if is_loopback(client):
        return LOOPBACK
    raise AuthenticationError(
        "no API key is configured, so only loopback clients are served; create one with "
        "`stolentee keys create NAME` or set STOLENTEE_API_KEYS"
    )
