"""Which model a request may name, and which one a premium caller gets.

A request may name an installed model or a tier: ``fast`` (u2netp, when installed) or
``quality`` (when some quality-tier model is installed). Anything else is 400 ``invalid_model``
in Remove.bg's error shape, before any work. The same list is the ``model`` enum of the OpenAPI
document, so the schema and the server agree. Premium callers who name no model get
``STOLENTEE_PREMIUM_MODEL`` (``quality`` by default) when it can be served here; Remove.bg is
then only their fallback (:class:`stolentee.removal.providers.chain.ProviderChain`).
"""

from __future__ import annotations

from stolentee.config import Settings
from stolentee.errors import InvalidOptionError
from stolentee.removal import models


class InvalidModelError(InvalidOptionError):
    code = "invalid_model"
    title = "Invalid model"


def selectable_models(settings: Settings) -> list[str]:
    """The installed models (file present; loading verifies it) and the tiers they serve."""
    models_dir = settings.engine.models_dir
    names = sorted(
        name
        for name, spec in models.MODELS.items()
        if models.model_state(models_dir, spec, verify=False) is models.ModelState.INSTALLED
    )
    tiers = []
    if models.FAST_MODEL in names:
        tiers.append(models.Tier.FAST.value)
    if any(name in names for name in models.QUALITY_ORDER):
        tiers.append(models.Tier.QUALITY.value)
    return [*names, *tiers]


def check_model(
    value: str | None, settings: Settings, *, whitespace_is_blank: bool = True
) -> str | None:
    """The named model or tier (``None``: the server's default), or :class:`InvalidModelError`.
    Names match exactly; a blank value is the default (only the empty string, for the routes
    whose other form fields behave so)."""
    if value is None or value == "" or (whitespace_is_blank and not value.strip()):
        return None
    name = value
    available = selectable_models(settings)
    if name not in available:
        known = name in models.MODELS or name in {t.value for t in models.Tier}
        why = "not installed here" if known else "unknown"
        raise InvalidModelError(
            f"model {name!r} is {why}; available: {', '.join(available) or 'none'}"
        )
    return name


def premium_model(settings: Settings) -> str | None:
    """What a premium caller's removal runs on here, or ``None`` (none of it installed: the
    chain's premium order, Remove.bg first with ``PREMIUM_USES_REMOVEBG``)."""
    wanted = settings.removal.premium_model
    if not wanted:
        return None
    return wanted if wanted in selectable_models(settings) else None
