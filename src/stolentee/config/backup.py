"""Settings of backups: how old the last one may be, and continuous SQLite replication."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from stolentee.config.base import SECTION_CONFIG


class BackupSettings(BaseSettings):
    """Backups (``stolentee backup``) and Litestream, the SQLite database's continuous replica."""

    model_config = SECTION_CONFIG

    max_age_h: float = Field(
        26,
        gt=0,
        validation_alias="STOLENTEE_BACKUP_MAX_AGE_H",
        description="`/health/detailed` warns when the last `stolentee backup create` finished "
        "longer ago than this (a nightly backup, with two hours' slack).",
    )
    litestream: bool = Field(
        False,
        validation_alias="STOLENTEE_LITESTREAM",
        description="`stolentee serve` runs Litestream beside the service, replicating the "
        "SQLite database to `STOLENTEE_LITESTREAM_REPLICA` every "
        "`STOLENTEE_LITESTREAM_SYNC_INTERVAL_S` (SQLite only).",
    )
    litestream_replica: str = Field(
        "",
        validation_alias="STOLENTEE_LITESTREAM_REPLICA",
        description="Where Litestream replicates to: `local:PATH`, `s3:BUCKET[/PREFIX]` or "
        "`r2:BUCKET[/PREFIX]` (with the `S3_*` / `R2_*` connection settings).",
    )
    litestream_sync_interval_s: float = Field(
        1.0,
        gt=0,
        le=3600,
        validation_alias="STOLENTEE_LITESTREAM_SYNC_INTERVAL_S",
        description="How often Litestream ships new WAL pages: the SQLite database's recovery "
        "point (RPO) is about this long.",
    )
    litestream_bin: str = Field(
        "",
        validation_alias="STOLENTEE_LITESTREAM_BIN",
        description="The `litestream` executable (default: the one installed with the "
        "`litestream` extra, next to this Python, else on PATH).",
    )
