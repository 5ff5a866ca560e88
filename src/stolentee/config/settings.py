"""``Settings``: every section together, and the defaults that depend on several of them."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from stolentee.config.alerts import AlertSettings
from stolentee.config.api import ApiSettings
from stolentee.config.backup import BackupSettings
from stolentee.config.base import (
    normalise_database_url,
)
from stolentee.config.cdn import CdnSettings
from stolentee.config.database import POOL_MAX_DEVELOPMENT, POOL_MAX_PRODUCTION, DatabaseSettings
from stolentee.config.queue import QueueSettings
from stolentee.config.removal import EngineSettings, RemovalSettings
from stolentee.config.scaling import ScalingSettings
from stolentee.config.service import ServiceSettings
from stolentee.config.storage import StorageSettings


class Settings(BaseModel):
    """All of stolentee's settings, one section per subsystem."""

    service: ServiceSettings = Field(default_factory=ServiceSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    removal: RemovalSettings = Field(default_factory=RemovalSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    cdn: CdnSettings = Field(default_factory=CdnSettings)

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        """Fill in defaults that depend on other sections (paths under the data dir, pool size)."""
        data_dir = self.service.data_dir
        db = self.database
        url = db.url or f"sqlite:///{(data_dir / 'stolentee.db').as_posix()}"
        url = normalise_database_url(url)
        pool_max = db.pool_max_connections or (
            POOL_MAX_PRODUCTION if self.service.is_production else POOL_MAX_DEVELOPMENT
        )
        auto_migrate = db.auto_migrate if db.auto_migrate is not None else url.startswith("sqlite")
        self.database = db.model_copy(
            update={"url": url, "pool_max_connections": pool_max, "auto_migrate": auto_migrate}
        )
        if self.storage.local_dir is None:
            self.storage = self.storage.model_copy(update={"local_dir": data_dir / "storage"})
        return self

    @property
    def storage_dir(self) -> Path:
        assert self.storage.local_dir is not None  # set by _resolve
        return self.storage.local_dir

    @property
    def pool_max_connections(self) -> int:
        assert self.database.pool_max_connections is not None  # set by _resolve
        return self.database.pool_max_connections
