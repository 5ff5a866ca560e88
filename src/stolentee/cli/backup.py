"""``stolentee backup create | list | verify | prune | restore``: backups of the whole instance.

    stolentee backup create --to local:/backups           # database + every object, verified
    stolentee backup create --to s3:other-bucket/stolentee  # S3_* settings, another bucket
    stolentee backup list --from local:/backups
    stolentee backup verify --from local:/backups [--id ID]  # exit 1 and the problems
    stolentee backup prune --from local:/backups --keep-daily 7 --keep-weekly 4
    stolentee backup restore --from local:/backups [--id ID] [--force]
    stolentee backup schedule --to s3:shop-backups --format kubernetes   # cron / CronJob / Railway

See docs/disaster-recovery.md for the runbook.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stolentee.cli.common import console, err_console, load_settings, print_error
from stolentee.errors import StolenteeError

if TYPE_CHECKING:
    from stolentee.backup.targets import BackupTarget
    from stolentee.config import Settings
    from stolentee.db.engine import Database
    from stolentee.storage.base import Storage

backup_app = typer.Typer(no_args_is_help=True)

_TARGET = "local:PATH, s3:BUCKET[/PREFIX] or r2:BUCKET[/PREFIX]"
TargetTo = Annotated[str, typer.Option("--to", help=f"Where to write the backup: {_TARGET}.")]
TargetFrom = Annotated[str, typer.Option("--from", help=f"Where the backups are: {_TARGET}.")]
Nice = Annotated[
    bool, typer.Option("--nice/--no-nice", help="Run at a lower CPU priority than the service.")
]
BackupId = Annotated[
    str | None, typer.Option("--id", help="The backup (default: the newest complete one).")
]


@backup_app.callback()
def backup_main() -> None:
    """Backups of the database and every stored object: create, list, verify, prune, restore."""


BACKUP_NICENESS = 10  # the service gets the CPU first; a backup takes what is left


def _yield_the_cpu(nice: bool) -> None:
    """A backup runs beside the service on the same cores: lower its priority so that requests
    come first (benchmarks/dr_drill.md: a backup beside 1,000 users on 2 cores)."""
    if nice:
        with suppress(OSError):
            os.nice(BACKUP_NICENESS)


@contextmanager
def _failing_cleanly() -> Iterator[None]:
    try:
        yield
    except StolenteeError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc


@contextmanager
def _opened(spec: str) -> Iterator[BackupTarget]:
    from stolentee.backup.targets import open_target

    target = open_target(load_settings(), spec)
    try:
        yield target
    finally:
        target.close()


@dataclass(frozen=True, slots=True)
class _Instance:
    settings: Settings
    database: Database
    storage: Storage


@contextmanager
def _instance() -> Iterator[_Instance]:
    """The configured database and store, as they are: a restore may find an empty database
    (no schema yet), which the service's own start-up checks would refuse."""
    from stolentee.db.engine import Database
    from stolentee.storage.factory import build_storage

    settings = load_settings()
    database = Database(settings=settings.database, watchdog=False)
    try:
        storage = build_storage(settings)
        try:
            yield _Instance(settings, database, storage)
        finally:
            storage.close()
    finally:
        database.dispose()


@backup_app.command("create")
def backup_create(
    to: TargetTo,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Objects at a time.")] = 8,
    nice: Nice = True,
) -> None:
    """Back up the running instance (no downtime): a database snapshot, then every object."""
    from stolentee.backup.create import Progress as BackupProgress
    from stolentee.backup.create import create_backup

    _yield_the_cpu(nice)
    with _failing_cleanly(), _instance() as instance, _opened(to) as target, _bar() as bar:
        task = bar.add_task("database snapshot", total=None)

        def report(event: BackupProgress) -> None:
            label = f"{event.stage}: {event.objects_done} objects, {event.objects_copied} new"
            bar.update(task, description=label, completed=event.bytes_done)

        manifest = create_backup(
            settings=instance.settings,
            database=instance.database,
            store=instance.storage,
            target=target,
            concurrency=concurrency,
            progress=report,
        )
    console.print(
        f"backup [bold]{manifest.id}[/bold] written to {to}: database "
        f"({manifest.database.format}, {manifest.database.size} bytes, schema "
        f"{manifest.schema_revision}), {len(manifest.objects)} objects; "
        f"{manifest.copied_objects} new ({manifest.copied_bytes} bytes), the rest already held.",
        soft_wrap=True,
    )
    if manifest.deleted_during_backup:
        console.print(
            f"{len(manifest.deleted_during_backup)} object(s) were deleted while the backup "
            "ran; their designs are left out of it.",
            soft_wrap=True,
        )


@backup_app.command("list")
def backup_list(source: TargetFrom) -> None:
    """The target's backups, oldest first; incomplete ones (no manifest) are marked."""
    from stolentee.backup.catalog import list_backups

    with _failing_cleanly(), _opened(source) as target:
        listing = list_backups(target)
    table = Table("id", "started", "objects", "bytes", "schema", "state", box=box.SIMPLE)
    for manifest in listing.complete:
        table.add_row(
            manifest.id,
            manifest.started_at,
            str(len(manifest.objects)),
            str(manifest.total_bytes),
            manifest.schema_revision or "-",
            "complete",
        )
    for backup_id, newest in listing.incomplete.items():
        table.add_row(backup_id, newest.isoformat(), "-", "-", "-", "incomplete (no manifest)")
    console.print(table)


@backup_app.command("verify")
def backup_verify(source: TargetFrom, backup_id: BackupId = None, nice: Nice = True) -> None:
    """Read every file of a backup back and check it against the manifest (exit 1 if not)."""
    from stolentee.backup.catalog import latest, load_manifest, verify_backup

    _yield_the_cpu(nice)  # it reads every file back: the service comes first
    with _failing_cleanly(), _opened(source) as target:
        manifest = load_manifest(target, backup_id) if backup_id else latest(target)
        problems = verify_backup(target, manifest)
    if problems:
        for problem in problems:
            err_console.print(f"[red]{problem}[/red]", soft_wrap=True)
        err_console.print(f"backup {manifest.id}: {len(problems)} problem(s)")
        raise typer.Exit(1)
    console.print(
        f"backup {manifest.id} verifies: database and {len(manifest.objects)} objects read back.",
        soft_wrap=True,
    )


@backup_app.command("prune")
def backup_prune(
    source: TargetFrom,
    keep_daily: Annotated[int, typer.Option(min=0, help="Newest backup of the last N days.")] = 7,
    keep_weekly: Annotated[int, typer.Option(min=0, help="... and of the last M weeks.")] = 4,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
) -> None:
    """Apply retention; objects a kept backup names always stay (incremental backups hold)."""
    from stolentee.backup.catalog import prune

    with _failing_cleanly(), _opened(source) as target:
        result = prune(target, keep_daily=keep_daily, keep_weekly=keep_weekly, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb} {len(result.removed_backups)} backup(s) {', '.join(result.removed_backups)}, "
        f"{len(result.removed_incomplete)} incomplete one(s), {result.removed_objects} "
        f"unreferenced object(s) ({result.removed_bytes} bytes).",
        soft_wrap=True,
    )


@backup_app.command("restore")
def backup_restore(
    source: Annotated[
        str | None,
        typer.Option(
            "--from", help=f"Where the backups are: {_TARGET} (optional with --point-in-time)."
        ),
    ] = None,
    backup_id: BackupId = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a non-empty instance's data.")
    ] = False,
    point_in_time: Annotated[
        str | None,
        typer.Option(
            "--point-in-time",
            help="SQLite with Litestream: the database as it was at this UTC time "
            "(2026-12-07T01:30:00Z) or 'latest', from STOLENTEE_LITESTREAM_REPLICA; objects "
            "from the backup --from names, if given.",
        ),
    ] = None,
    objects_only: Annotated[
        bool,
        typer.Option(
            "--objects-only",
            help="Only the stored objects (the database recovered another way: PostgreSQL's "
            "PITR); objects the store holds with the same sha256 stay.",
        ),
    ] = False,
) -> None:
    """Rebuild the configured instance from a backup (verified first; then migrated)."""
    if objects_only:
        _restore_objects(source, backup_id)
        return
    if point_in_time is not None:
        _restore_point_in_time(source, backup_id, force, point_in_time)
        return
    if source is None:
        err_console.print("give --from TARGET (or --point-in-time with Litestream)")
        raise typer.Exit(2)
    from stolentee.backup.catalog import latest, load_manifest
    from stolentee.backup.restore import restore_backup

    with _failing_cleanly(), _opened(source) as target:
        manifest = load_manifest(target, backup_id) if backup_id else latest(target)
        with _instance() as instance, _bar() as bar:
            task = bar.add_task(f"restoring {manifest.id}", total=len(manifest.objects))
            result = restore_backup(
                database=instance.database,
                store=instance.storage,
                target=target,
                manifest=manifest,
                force=force,
                progress=lambda done: bar.update(task, completed=done),
            )
    console.print(
        f"restored backup {result.backup_id}: database (schema {result.schema_from} -> "
        f"{result.schema_to}) and {result.objects} objects ({result.bytes} bytes), each read "
        f"back; {result.removed_designs} design(s) deleted during the backup left out.",
        soft_wrap=True,
    )


def _restore_objects(source: str | None, backup_id: str | None) -> None:
    from stolentee.backup.catalog import latest, load_manifest, verify_backup
    from stolentee.backup.manifest import BackupError
    from stolentee.backup.restore import restore_objects

    if source is None:
        err_console.print("--objects-only needs --from TARGET")
        raise typer.Exit(2)
    with _failing_cleanly(), _opened(source) as target:
        manifest = load_manifest(target, backup_id) if backup_id else latest(target)
        problems = verify_backup(target, manifest)
        if problems:
            raise BackupError(f"backup {manifest.id} does not verify: {'; '.join(problems[:5])}")
        with _instance() as instance, _bar() as bar:
            task = bar.add_task(f"objects of {manifest.id}", total=len(manifest.objects))
            written = restore_objects(
                target,
                manifest,
                instance.storage,
                skip_present=True,
                progress=lambda done: bar.update(task, completed=done),
            )
    console.print(
        f"restored {written} object(s) of backup {manifest.id} "
        f"({len(manifest.objects) - written} already in the store); the database is untouched.",
        soft_wrap=True,
    )


def _restore_point_in_time(
    source: str | None, backup_id: str | None, force: bool, when: str
) -> None:
    from stolentee.backup.catalog import latest, load_manifest
    from stolentee.backup.restore import restore_point_in_time

    with _failing_cleanly():
        at = _parse_moment(when)
        with _instance() as instance, ExitStack() as stack:
            target = manifest = None
            if source is not None:
                target = stack.enter_context(_opened(source))
                manifest = load_manifest(target, backup_id) if backup_id else latest(target)
            result = restore_point_in_time(
                settings=instance.settings,
                database=instance.database,
                store=instance.storage,
                at=at,
                target=target,
                manifest=manifest,
                force=force,
            )
    console.print(
        f"restored the database as of {when} (schema {result.schema_to}) and "
        f"{result.objects} objects; {result.designs_without_objects} design(s) have objects "
        "newer than the object backup (lost with the disk).",
        soft_wrap=True,
    )


def _parse_moment(text: str) -> datetime | None:
    if text == "latest":
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"--point-in-time must be a UTC time like 2026-12-07T01:30:00Z or 'latest'; "
            f"got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@backup_app.command("schedule")
def backup_schedule(
    to: TargetTo,
    keep_daily: Annotated[int, typer.Option(min=0, help="Newest backup of the last N days.")] = 7,
    keep_weekly: Annotated[int, typer.Option(min=0, help="... and of the last M weeks.")] = 4,
    at: Annotated[str, typer.Option(help="When, as a cron expression (UTC).")] = "17 3 * * *",
    output_format: Annotated[
        str, typer.Option("--format", help="cron, kubernetes (a CronJob) or railway.")
    ] = "cron",
    image: Annotated[str, typer.Option(help="Kubernetes: the service's image.")] = "stolentee",
    settings_from: Annotated[
        str,
        typer.Option(
            "--env-secret", help="Kubernetes: the name of the Secret with the service's settings."
        ),
    ] = "stolentee-env",
    namespace: Annotated[str, typer.Option(help="Kubernetes: the namespace.")] = "default",
) -> None:
    """Print the nightly backup (create, then prune) for cron, Kubernetes or Railway."""
    from stolentee.backup import schedule

    with _failing_cleanly():
        command = schedule.backup_command(to, keep_daily=keep_daily, keep_weekly=keep_weekly)
        if output_format == "cron":
            text = schedule.cron_line(at, command)
        elif output_format == "kubernetes":
            text = schedule.kubernetes_cronjob(
                at, command, image=image, env_secret=settings_from, namespace=namespace
            )
        elif output_format == "railway":
            text = schedule.railway_service(at, command)
        else:
            err_console.print(f"unknown format {output_format!r}: use cron, kubernetes or railway")
            raise typer.Exit(2)
    typer.echo(text, nl=False)


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
