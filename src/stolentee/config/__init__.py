"""Settings: the only package that reads the environment.

One typed :class:`Settings` object, made of one section per subsystem (a module each here), is
built once at the entry point (CLI command, ASGI factory) and passed down. Every field declares
the environment variable it is read from (``validation_alias``), its type, default and a
``description``; ``stolentee config show`` prints them, ``stolentee config docs`` writes
``docs/configuration.md``, and a test fails when that file is not what the settings say.

The seed report's variable names are kept (``DATABASE_URL``, ``REDIS_URL``, ``REMBG_ENDPOINT``,
``REMOVEBG_API_KEY``, ``R2_*``); everything stolentee adds is prefixed ``STOLENTEE_``. Values are
also read from a ``.env`` file in the working directory; real environment variables win.
"""

from stolentee.config.alerts import AlertSettings, WebhookFormat
from stolentee.config.api import ApiSettings
from stolentee.config.backup import BackupSettings
from stolentee.config.base import Environment, mask_url, normalise_database_url
from stolentee.config.cdn import CdnSettings, PurgeBackend
from stolentee.config.database import DatabaseSettings
from stolentee.config.docs import (
    SettingDoc,
    configuration_markdown,
    effective_settings,
    iter_setting_docs,
)
from stolentee.config.queue import QueueSettings
from stolentee.config.removal import PROVIDER_NAMES, EngineSettings, RemovalSettings
from stolentee.config.scaling import RAILWAY_API_URL, SCALED_SERVICES, ScalingSettings
from stolentee.config.service import ServiceSettings
from stolentee.config.settings import Settings
from stolentee.config.storage import S3Profile, StorageSettings

__all__ = [
    "PROVIDER_NAMES",
    "RAILWAY_API_URL",
    "SCALED_SERVICES",
    "AlertSettings",
    "ApiSettings",
    "BackupSettings",
    "CdnSettings",
    "DatabaseSettings",
    "EngineSettings",
    "Environment",
    "PurgeBackend",
    "QueueSettings",
    "RemovalSettings",
    "S3Profile",
    "ScalingSettings",
    "ServiceSettings",
    "SettingDoc",
    "Settings",
    "StorageSettings",
    "WebhookFormat",
    "configuration_markdown",
    "effective_settings",
    "iter_setting_docs",
    "mask_url",
    "normalise_database_url",
]
