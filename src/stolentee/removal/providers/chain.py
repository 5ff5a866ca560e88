"""The provider chain: self-hosted first, Remove.bg as the paid fallback, each behind a breaker.

:class:`ProviderChain` is itself a :class:`~stolentee.removal.base.Remover` (``name = "chain"``):
callers (the API's removal service, the job worker, the CLI) hand it image bytes and options, and
it tries the providers in order:

* the order is ``RemovalSettings.chain()`` (``rembg-service`` or ``local``, then ``removebg``
  when ``REMOVEBG_API_KEY`` is set); a premium request goes to ``removebg`` first when
  ``PREMIUM_USES_REMOVEBG`` is on;
* a provider whose circuit breaker is open is skipped at no latency cost;
* a provider failure that another provider may not share (timeout, connection, 5xx, 429, a bad
  answer, the in-process engine raising) counts against its breaker and the next one is tried;
* a rejection of the *input* (a remote 4xx, or the local engine's image/option errors) reaches
  the caller at once: another provider would reject the same input. It says nothing about the
  provider's health, so the breaker is left as it was;
* Remove.bg's 402 (out of credits) or a refused key forces its breaker open (see
  :mod:`stolentee.removal.providers.breaker`), is logged at ERROR as an alert, and the chain
  moves on;
* when no provider could take the image, :class:`NoProviderAvailableError` (503) says when to
  retry (``Retry-After``: the soonest moment a breaker lets a trial through, at least 1 s).

Every attempt, success or failure, is reported to the :class:`~stolentee.removal.base.StatsSink`
as a :class:`~stolentee.removal.base.RemovalEvent`; a sink that fails is logged, never fatal.

Health probes (:meth:`ProviderChain.start_probes`) ask every remote provider whether it is up,
every ``STOLENTEE_PROVIDER_PROBE_INTERVAL_S``; a good probe of an open breaker half-opens it at
once, so traffic returns within one probe interval of a provider's restart instead of a whole
cooldown.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from stolentee.config import RemovalSettings
from stolentee.errors import ClientError, ConfigurationError, ServiceUnavailableError
from stolentee.removal.base import (
    NO_MODEL,
    FailureKind,
    RemovalEvent,
    RemovalOptions,
    RemovalResult,
    Remover,
    StatsSink,
    credits_for,
)
from stolentee.removal.imaging.decode import ImageHeader, read_header
from stolentee.removal.providers.breaker import BreakerState, CircuitBreaker
from stolentee.removal.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderOutOfCreditsError,
    ProviderRejectedError,
)
from stolentee.removal.providers.http import ProbeResult
from stolentee.removal.providers.rembg_service import RembgServiceRemover
from stolentee.removal.providers.remote import HEADER_MAX_MEGAPIXELS, RemoteRemover
from stolentee.removal.providers.removebg import RemoveBgRemover

log = logging.getLogger(__name__)

PAID_PROVIDERS = frozenset({"removebg"})
ProviderKind = Literal["self-hosted", "paid"]


class NoProviderAvailableError(ServiceUnavailableError):
    """Every provider of the chain failed or is switched off by its breaker."""

    code = "no_removal_provider"
    title = "No removal provider available"


@runtime_checkable
class ProbingRemover(Remover, Protocol):
    """A provider that can tell whether it is up without removing anything."""

    def probe(self) -> ProbeResult: ...


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    result: ProbeResult
    at: datetime


@dataclass(slots=True)
class _Provider:
    remover: Remover
    breaker: CircuitBreaker
    kind: ProviderKind
    last_probe: ProbeRecord | None = None
    out_of_credits: bool = False  # its breaker was forced open by a 402

    @property
    def name(self) -> str:
        return self.remover.name


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ProviderChain:
    """Background removal through an ordered chain of providers (see the module docstring)."""

    name = "chain"

    def __init__(
        self,
        *,
        providers: Sequence[Remover],
        settings: RemovalSettings,
        stats: StatsSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not providers:
            raise ConfigurationError("the removal chain needs at least one provider")
        names = [provider.name for provider in providers]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"a provider may appear only once in the chain: {names}")
        self.settings = settings
        self.stats = stats
        self._clock = clock
        self._wall_clock = wall_clock
        self._providers = tuple(
            _Provider(
                remover=provider,
                breaker=CircuitBreaker(
                    failure_threshold=settings.breaker_failures,
                    cooldown_s=settings.breaker_cooldown_s,
                    clock=clock,
                ),
                kind="paid" if provider.name in PAID_PROVIDERS else "self-hosted",
            )
            for provider in providers
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._probe_thread: threading.Thread | None = None

    # --- introspection --------------------------------------------------------------------------

    @property
    def provider_names(self) -> tuple[str, ...]:
        return tuple(provider.name for provider in self._providers)

    def breaker(self, name: str) -> CircuitBreaker:
        return self._provider(name).breaker

    def provider(self, name: str) -> Remover:
        return self._provider(name).remover

    def order(self, *, premium: bool = False, model: str | None = None) -> tuple[str, ...]:
        """Provider names in the order a request (premium or not, naming a model or not)
        tries them."""
        return tuple(provider.name for provider in self._ordered(premium, model))

    def _provider(self, name: str) -> _Provider:
        for provider in self._providers:
            if provider.name == name:
                return provider
        raise KeyError(name)

    def _ordered(self, premium: bool, model: str | None = None) -> tuple[_Provider, ...]:
        # A premium request that names a model here (STOLENTEE_PREMIUM_MODEL, or its own) is
        # served here first; Remove.bg leads only for premium requests without one.
        if premium and model is None and self.settings.premium_uses_removebg:
            paid = [provider for provider in self._providers if provider.name == "removebg"]
            if paid:
                rest = [provider for provider in self._providers if provider.name != "removebg"]
                return (*paid, *rest)
        return self._providers

    # --- removal --------------------------------------------------------------------------------

    def remove(self, data: bytes, options: RemovalOptions) -> RemovalResult:
        header = read_header(data, max_megapixels=HEADER_MAX_MEGAPIXELS)
        failures: list[str] = []
        last_error: BaseException | None = None
        for provider in self._ordered(options.premium, options.model):
            if not provider.breaker.allow():
                failures.append(f"{provider.name}: skipped (circuit open)")
                continue
            outcome = self._try(provider, data, options, header)
            if isinstance(outcome, RemovalResult):
                return outcome
            last_error = outcome
            kind = outcome.kind if isinstance(outcome, ProviderError) else "internal"
            failures.append(f"{provider.name}: {kind}")
        raise NoProviderAvailableError(
            "no removal provider could take the image (" + "; ".join(failures) + ")",
            headers={"Retry-After": str(self._retry_after_s())},
        ) from last_error

    def _try(
        self, provider: _Provider, data: bytes, options: RemovalOptions, header: ImageHeader
    ) -> RemovalResult | Exception:
        """One attempt: the result, or the failure after which the chain moves on. Input
        rejections are raised. The breaker always gets its verdict (or the trial back)."""
        breaker = provider.breaker
        started = time.perf_counter()
        verdict = False
        try:
            try:
                if isinstance(provider.remover, RemoteRemover):
                    result = provider.remover.remove(data, options, header=header)
                else:
                    result = provider.remover.remove(data, options)
            except ClientError as error:  # ProviderRejectedError, or the engine's input errors
                self._report(provider, options, header, started, failure="rejected")
                if isinstance(error, ProviderRejectedError):
                    log.info("%s rejected the input: %s", provider.name, error.detail)
                raise
            except (ProviderOutOfCreditsError, ProviderAuthError) as error:
                breaker.force_open(f"{error.kind}: {error.detail}")
                verdict = True
                if isinstance(error, ProviderOutOfCreditsError):
                    provider.out_of_credits = True
                    log.error(
                        "ALERT: Remove.bg is out of credits; %s is switched off for up to %.0f s "
                        "(or until its probe reports credits): %s",
                        provider.name,
                        breaker.cooldown_s * breaker.forced_open_factor,
                        error.detail,
                    )
                else:
                    log.error(
                        "ALERT: %s refused our API key; switched off for up to %.0f s: %s",
                        provider.name,
                        breaker.cooldown_s * breaker.forced_open_factor,
                        error.detail,
                    )
                self._report(provider, options, header, started, failure=error.kind)
                return error
            except ProviderError as error:
                breaker.record_failure(error.detail)
                verdict = True
                log.warning("removal provider %s failed (%s): %s", provider.name, error.kind, error)
                self._report(provider, options, header, started, failure=error.kind)
                return error
            except Exception as error:  # the engine failing is a provider failure
                breaker.record_failure(f"{type(error).__name__}: {error}")
                verdict = True
                log.warning(
                    "removal provider %s raised; trying the next one", provider.name, exc_info=True
                )
                self._report(provider, options, header, started, failure="internal")
                return error
            breaker.record_success()
            verdict = True
            provider.out_of_credits = False
            if result.provider != provider.name:
                result = dataclasses.replace(result, provider=provider.name)
            self._report(provider, options, header, started, result=result)
            return result
        finally:
            if not verdict:
                breaker.release()

    def _report(
        self,
        provider: _Provider,
        options: RemovalOptions,
        header: ImageHeader,
        started: float,
        *,
        result: RemovalResult | None = None,
        failure: FailureKind | None = None,
    ) -> None:
        if self.stats is None:
            return
        avoided = 0.0
        if result is not None and provider.kind == "self-hosted":
            avoided = credits_for(options.size, result.width, result.height)
        event = RemovalEvent(
            provider=provider.name,
            ok=result is not None,
            failure_kind=failure,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            megapixels=header.megapixels,
            credits_charged=result.credits_charged if result is not None else 0.0,
            credits_avoided=avoided,
            premium=options.premium,
            at=self._wall_clock(),
            image_kind=result.kind.value if result is not None else None,
            model=result.model if result is not None else NO_MODEL,
        )
        try:
            self.stats.record(event)
        except Exception:  # statistics never fail a removal
            log.warning("could not record removal statistics for %s", provider.name, exc_info=True)

    def _retry_after_s(self) -> int:
        """Whole seconds until some provider may take a request again (at least 1)."""
        soonest = min(provider.breaker.retry_after_s() for provider in self._providers)
        return max(1, math.ceil(soonest))

    # --- health ---------------------------------------------------------------------------------

    def probe_now(self) -> None:
        """Probe every remote provider once; a good probe half-opens an open breaker."""
        for provider in self._providers:
            remover = provider.remover
            if not isinstance(remover, ProbingRemover):
                continue
            try:
                result = remover.probe()
            except Exception as exc:  # noqa: BLE001 - a probe failing is a result, not a crash
                result = ProbeResult(False, f"probe raised {type(exc).__name__}: {exc}", 0.0)
            with self._lock:
                previous = provider.last_probe
                provider.last_probe = ProbeRecord(result, self._wall_clock())
            if previous is None or previous.result.ok != result.ok:
                level = logging.INFO if result.ok else logging.WARNING
                log.log(level, "probe of %s: %s", provider.name, result.detail)
            if result.ok:
                self._after_good_probe(provider, result)

    def _after_good_probe(self, provider: _Provider, result: ProbeResult) -> None:
        if provider.breaker.state is not BreakerState.OPEN:
            return
        if provider.out_of_credits and result.credits is not None and result.credits <= 0:
            return  # still no credits: wait for the forced-open period or a top-up
        if provider.breaker.half_open_early():
            log.info("%s answers its probe again: letting a trial request through", provider.name)

    def start_probes(self) -> None:
        """Probe in a daemon thread every ``health_probe_interval_s`` (first probe at once)."""
        if self._probe_thread is not None and self._probe_thread.is_alive():
            return
        if not any(isinstance(p.remover, ProbingRemover) for p in self._providers):
            return
        self._stop.clear()
        self._probe_thread = threading.Thread(
            target=self._probe_loop, name="stolentee-provider-probes", daemon=True
        )
        self._probe_thread.start()

    def _probe_loop(self) -> None:
        interval = self.settings.health_probe_interval_s
        while not self._stop.is_set():
            try:
                self.probe_now()
            except Exception:  # the loop outlives any one bad round
                log.exception("provider probe round failed")
            if self._stop.wait(interval):
                break

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the probe thread (the providers' HTTP client belongs to the caller)."""
        self._stop.set()
        thread = self._probe_thread
        if thread is not None:
            thread.join(timeout_s)
            self._probe_thread = None

    def snapshot(self) -> list[dict[str, Any]]:
        """Per provider, in chain order: name, kind, breaker state and figures, last probe."""
        now, wall = self._clock(), self._wall_clock()
        entries = []
        for provider in self._providers:
            breaker = provider.breaker.snapshot()
            with self._lock:
                probe = provider.last_probe
            opened_at = None
            if breaker.opened_at is not None:
                opened_at = (wall - timedelta(seconds=now - breaker.opened_at)).isoformat()
            retry_in_s = None
            if breaker.reopens_at is not None:
                retry_in_s = round(max(0.0, breaker.reopens_at - now), 3)
            entries.append(
                {
                    "name": provider.name,
                    "kind": provider.kind,
                    "state": breaker.state.value,
                    "consecutive_failures": breaker.consecutive_failures,
                    "opened_at": opened_at,
                    "retry_in_s": retry_in_s,
                    "last_error": breaker.last_error,
                    "reason": breaker.reason,
                    "out_of_credits": provider.out_of_credits,
                    "credits": None if probe is None else probe.result.credits,
                    "last_probe": None
                    if probe is None
                    else {
                        "ok": probe.result.ok,
                        "detail": probe.result.detail,
                        "latency_ms": probe.result.latency_ms,
                        "at": probe.at.isoformat(),
                    },
                }
            )
        return entries

    def self_hosted_first_and_healthy(self) -> bool:
        """Is the first provider of the normal chain self-hosted and usable: its breaker not
        open, and its last probe (if it was probed) good?"""
        first = self._providers[0]
        if first.kind != "self-hosted" or first.breaker.state is BreakerState.OPEN:
            return False
        with self._lock:
            probe = first.last_probe
        return probe is None or probe.result.ok


def build_chain(
    settings: RemovalSettings,
    *,
    engine: Remover,
    http_client: httpx.Client,
    stats: StatsSink | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], datetime] = _utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> ProviderChain:
    """The chain ``settings.chain()`` names: ``local`` is ``engine``; ``rembg-service`` needs
    ``REMBG_ENDPOINT``; ``removebg`` needs ``REMOVEBG_API_KEY``."""
    providers: list[Remover] = []
    for name in settings.chain():
        if name == "local":
            providers.append(engine)
        elif name == "rembg-service":
            if not settings.rembg_endpoint:
                raise ConfigurationError(
                    "STOLENTEE_REMOVAL_PROVIDERS names rembg-service but REMBG_ENDPOINT is empty"
                )
            providers.append(
                RembgServiceRemover(settings=settings, http_client=http_client, sleep=sleep)
            )
        elif name == "removebg":
            if not settings.removebg_api_key.get_secret_value():
                raise ConfigurationError(
                    "STOLENTEE_REMOVAL_PROVIDERS names removebg but REMOVEBG_API_KEY is empty"
                )
            providers.append(
                RemoveBgRemover(settings=settings, http_client=http_client, sleep=sleep)
            )
        else:  # the settings validator already refuses unknown names
            raise ConfigurationError(f"unknown removal provider {name!r}")
    return ProviderChain(
        providers=providers, settings=settings, stats=stats, clock=clock, wall_clock=wall_clock
    )
