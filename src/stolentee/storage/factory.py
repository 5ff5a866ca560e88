"""Build the configured storage backend once, at an entry point."""

from __future__ import annotations

from pathlib import Path

from stolentee.config import Settings
from stolentee.errors import ConfigurationError
from stolentee.storage.backends.local import LocalStorage
from stolentee.storage.base import Storage


def build_storage(settings: Settings) -> Storage:
    """The backend ``settings.storage.backend`` names (``local``, ``r2`` or ``s3``)."""
    return build_named_storage(settings, settings.storage.backend)


def build_named_storage(settings: Settings, spec: str) -> Storage:
    """A storage from a short spec, as the migration command accepts them.

    ``local`` (``STOLENTEE_STORAGE_DIR``), ``local:PATH``, ``r2`` / ``s3`` (the ``R2_*`` /
    ``S3_*`` profile), ``r2:BUCKET`` / ``s3:BUCKET`` (that profile with another bucket).
    """
    name, _, argument = spec.partition(":")
    public_base_url = settings.service.public_base_url
    if name == "local":
        return LocalStorage(
            root=Path(argument) if argument else settings.storage_dir,
            public_domain=settings.storage.r2_public_domain,
            public_base_url=public_base_url,
        )
    if name in ("r2", "s3"):
        from stolentee.storage.s3.store import S3Storage  # boto3 is imported only when S3 is used

        storage_settings = settings.storage
        if argument:
            field = "r2_bucket_name" if name == "r2" else "s3_bucket_name"
            storage_settings = storage_settings.model_copy(update={field: argument})
        return S3Storage.from_settings(storage_settings, name, public_base_url=public_base_url)
    raise ConfigurationError(
        f"unknown storage {spec!r}: use local, local:PATH, r2, r2:BUCKET, s3 or s3:BUCKET"
    )
