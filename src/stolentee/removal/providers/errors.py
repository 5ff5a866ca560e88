"""How a provider fails: each error carries the FailureKind the chain and its breakers act on, and
whether a retry can help."""

from __future__ import annotations

from stolentee.errors import ClientError, StolenteeError
from stolentee.removal.base import (
    FailureKind,
)

RETRYABLE_KINDS: frozenset[FailureKind] = frozenset(
    {"timeout", "connect", "server_error", "rate_limited"}
)


class ProviderError(StolenteeError):
    """A removal provider failed. ``kind`` classifies it; ``retryable`` says whether trying the
    same provider again may help; ``retry_after_s`` is what the provider asked us to wait."""

    status_code = 502
    code = "provider_failed"
    title = "Removal provider failed"

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        kind: FailureKind,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
        http_status: int | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.provider = provider
        self.kind: FailureKind = kind
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.retry_after_s = retry_after_s
        self.http_status = http_status
        self.url = url


class ProviderOutOfCreditsError(ProviderError):
    """Remove.bg answered 402: the account has no credits left for this request."""

    code = "provider_out_of_credits"
    title = "Removal provider out of credits"

    def __init__(self, detail: str, *, provider: str, url: str | None = None) -> None:
        super().__init__(
            detail,
            provider=provider,
            kind="out_of_credits",
            retryable=False,
            http_status=402,
            url=url,
        )


class ProviderAuthError(ProviderError):
    """The provider refused our API key (401/403): a configuration problem on our side, so the
    chain moves on and keeps the provider off until a probe says the key works."""

    code = "provider_auth_failed"
    title = "Removal provider refused our credentials"

    def __init__(
        self, detail: str, *, provider: str, http_status: int, url: str | None = None
    ) -> None:
        super().__init__(
            detail,
            provider=provider,
            kind="server_error",
            retryable=False,
            http_status=http_status,
            url=url,
        )


class ProviderRejectedError(ProviderError, ClientError):
    """The provider refused the *input* (a 4xx about the image or an option): the client's
    fault, so it reaches the client with the provider's status, code and detail, and no other
    provider is tried (it would refuse the same input).

    ``detail`` is the provider's own detail, fit for the client (no internal URL); ``str()`` of
    the error is the same; the log line of the chain names the provider.
    """

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        http_status: int,
        remote_code: str | None = None,
        remote_title: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(
            detail,
            provider=provider,
            kind="rejected",
            retryable=False,
            http_status=http_status,
            url=url,
        )
        self._status = http_status if 400 <= http_status < 500 else 400
        self._code = remote_code or "provider_rejected"
        self._title = remote_title or "Request rejected by the removal provider"

    # The remote's status, code and title replace the class-wide ones of StolenteeError.
    @property
    def status_code(self) -> int:  # type: ignore[override]
        return self._status

    @property
    def code(self) -> str:  # type: ignore[override]
        return self._code

    @property
    def title(self) -> str:  # type: ignore[override]
        return self._title
