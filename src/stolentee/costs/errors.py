"""Errors of the cost model: bad price books, profiles and scaling tables."""

from __future__ import annotations

from stolentee.errors import ConfigurationError


class CostDataError(ConfigurationError):
    """A price book, profile or scaling file is missing, malformed or inconsistent. The message
    names the file and the key, e.g. ``my.toml: storage.stored_gb: must be a number >= 0``."""

    code = "invalid_cost_data"
    title = "Invalid cost data"


class PricebookError(CostDataError):
    """The price book (shipped or a user's override file) is malformed or incomplete."""

    code = "invalid_pricebook"
    title = "Invalid price book"


class ProfileError(CostDataError):
    """A usage profile is malformed, or names a plan the price book does not have."""

    code = "invalid_usage_profile"
    title = "Invalid usage profile"
