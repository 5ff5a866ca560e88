"""Build the configured storage backend once, at an entry point."""

from __future__ import annotations

from stolentee.config import Settings
from stolentee.errors import ConfigurationError
from stolentee.storage.base import Storage
from stolentee.storage.local import LocalStorage


def build_storage(settings: Settings) -> Storage:
    """The backend ``settings.storage.backend`` names, with its directories created."""
    backend = settings.storage.backend
    if backend == "local":
        return LocalStorage(
            root=settings.storage_dir,
            public_domain=settings.storage.r2_public_domain,
            public_base_url=settings.service.public_base_url,
        )
    raise ConfigurationError(f"unknown storage backend {backend!r}")
