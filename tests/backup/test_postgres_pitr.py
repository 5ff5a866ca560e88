"""PostgreSQL's own point-in-time recovery, as docs/disaster-recovery.md sets it up: WAL
archiving (``archive_mode``, ``archive_command``), a base backup (``pg_basebackup``), and a
recovery to a moment (``restore_command``, ``recovery_target_time``), on a private cluster."""

from __future__ import annotations

import grp
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from stolentee.config import DatabaseSettings
from stolentee.db import migrate
from stolentee.db.engine import Database

from ..fakes.servers import PrivatePostgres, _as_postgres_user, postgres_unavailable

pytestmark = pytest.mark.skipif(
    postgres_unavailable() is not None, reason=str(postgres_unavailable())
)


def _as_postgres(*command: str) -> str:
    done = subprocess.run(  # our own command line
        _as_postgres_user(list(command)), capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def archiving() -> Iterator[tuple[PrivatePostgres, Path]]:
    server = PrivatePostgres()
    server.start()
    archive = server.directory / "archive"
    _as_postgres("mkdir", "-p", str(archive))
    with (server.data / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# docs/disaster-recovery.md: WAL archiving\n"
            "wal_level = replica\narchive_mode = on\n"
            f"archive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'\n"
        )
    server.stop()
    server.start()
    try:
        yield server, archive
    finally:
        server.remove()


def _database(url: str) -> Database:
    return Database(settings=DatabaseSettings(url=url), watchdog=False)


def _add_designs(database: Database, count: int) -> None:
    with database.engine.begin() as conn:
        for _ in range(count):
            design_id = uuid.uuid4().hex
            conn.execute(
                text(
                    "INSERT INTO designs (id, owner, original_key, original_content_type, "
                    "original_width, original_height, kind, output_format, created_at, "
                    "updated_at) VALUES (:id, 'shop', :key, 'image/png', 1, 1, 'graphic', "
                    "'png', now(), now())"
                ),
                {"id": design_id, "key": f"uploads/{design_id}/original.png"},
            )


def _switch_wal(database: Database, archive: Path) -> None:
    """Close the current WAL segment and wait until the archiver has copied it."""
    with database.engine.begin() as conn:
        segment = conn.execute(text("SELECT pg_walfile_name(pg_switch_wal())")).scalar_one()
    deadline = time.monotonic() + 30
    while not (archive / segment).exists():
        assert time.monotonic() < deadline, f"{segment} was not archived"
        time.sleep(0.1)


def test_a_postgres_database_recovers_to_a_moment_from_archived_wal(
    archiving: tuple[PrivatePostgres, Path],
) -> None:
    server, archive = archiving
    database = _database(server.url)
    migrate.upgrade(database)
    _add_designs(database, 3)
    base = server.directory / "base"
    _as_postgres(
        "pg_basebackup", "-h", "127.0.0.1", "-p", str(server.port), "-U", server.user,
        "-D", str(base), "-X", "none", "--checkpoint=fast",
    )  # fmt: skip
    _add_designs(database, 2)
    _switch_wal(database, archive)
    time.sleep(1.0)
    moment = datetime.now(UTC)
    time.sleep(1.0)
    _add_designs(database, 4)  # after the moment: not in the recovered database
    _switch_wal(database, archive)
    database.dispose()
    server.stop()  # the server is lost; the base backup and the archive remain

    restored = PrivatePostgres(directory=Path(tempfile.mkdtemp(prefix="stolentee-pg-pitr-")))
    try:
        restored.directory.chmod(0o755)
        shutil.copytree(base, restored.data, symlinks=True)
        with (restored.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# docs/disaster-recovery.md: point-in-time recovery\n"
                "archive_mode = off\n"
                f"restore_command = 'cp {archive}/%f %p'\n"
                f"recovery_target_time = '{moment.isoformat()}'\n"
                "recovery_target_action = 'promote'\n"
            )
        (restored.data / "recovery.signal").touch()
        subprocess.run(["chown", "-R", _owner(server.data), str(restored.directory)], check=True)
        restored.start()
        recovered = _database(restored.url)
        with recovered.engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM designs")).scalar_one()
        assert count == 5  # the 3 in the base backup and the 2 before the moment
        assert migrate.current_revision(recovered) == migrate.head_revision()
        recovered.dispose()
    finally:
        restored.remove()


def _owner(path: Path) -> str:
    stat = path.stat()
    return f"{pwd.getpwuid(stat.st_uid).pw_name}:{grp.getgrgid(stat.st_gid).gr_name}"
