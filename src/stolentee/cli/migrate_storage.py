"""``stolentee migrate-storage``: copy every object between two stores, verified and resumable.

Each step is its own invocation, so nothing irreversible happens by accident::

    stolentee migrate-storage --from s3 --to r2 --dry-run        # what would be copied
    stolentee migrate-storage --from s3 --to r2                  # copy + verify (re-run resumes)
    stolentee migrate-storage --from s3 --to r2 --rewrite-urls   # point designs at the new store
    stolentee migrate-storage --from s3 --to r2 --rollback-urls  # ... and back again
    stolentee migrate-storage --from s3 --to r2 --delete-source  # only once everything verified

Stores are named as :func:`stolentee.storage.factory.build_named_storage` accepts them
(``local``, ``local:PATH``, ``r2``, ``r2:BUCKET``, ``s3``, ``s3:BUCKET``). The manifest defaults
to ``$STOLENTEE_DATA_DIR/migrations/<from>__<to>.jsonl``, so every step of one migration finds it.
"""

from __future__ import annotations

import re
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from stolentee.cli.common import console, err_console, load_settings
from stolentee.config import Settings
from stolentee.errors import StolenteeError
from stolentee.storage import migration
from stolentee.storage.base import Storage
from stolentee.storage.factory import build_named_storage

if TYPE_CHECKING:  # the database layer is imported only by the URL steps
    from stolentee.db.engine import Database
    from stolentee.designs.urls import UrlChange


_SPEC_HELP = "local, local:PATH, r2, r2:BUCKET, s3 or s3:BUCKET"
FAILURES_SHOWN = 20


def default_manifest_path(settings: Settings, source: str, dest: str) -> Path:
    """``$STOLENTEE_DATA_DIR/migrations/<from>__<to>.jsonl``, names made file-system safe."""

    def safe(spec: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_") or "store"

    return settings.service.data_dir / "migrations" / f"{safe(source)}__{safe(dest)}.jsonl"


def migrate_storage(
    source_spec: Annotated[
        str, typer.Option("--from", help=f"The store to copy from: {_SPEC_HELP}.")
    ],
    dest_spec: Annotated[str, typer.Option("--to", help=f"The store to copy to: {_SPEC_HELP}.")],
    prefix: Annotated[str, typer.Option(help="Only keys starting with this prefix.")] = "",
    concurrency: Annotated[
        int, typer.Option(min=1, max=256, help="Objects copied at the same time.")
    ] = migration.DEFAULT_CONCURRENCY,
    manifest_path: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="JSON-lines manifest (default: "
            "$STOLENTEE_DATA_DIR/migrations/<from>__<to>.jsonl).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List what would be copied and its size; copy nothing."),
    ] = False,
    verify_existing: Annotated[
        bool,
        typer.Option(
            help="Read back objects the destination already holds before skipping them "
            "(catches copies corrupted in place). Off: objects verified before whose source "
            "and copy both still list the ETags the manifest recorded are skipped from the "
            "listings alone; others are compared by their heads' sha256."
        ),
    ] = True,
    delete_source: Annotated[
        bool,
        typer.Option(
            "--delete-source",
            help="Separate last step: delete the source's objects, refused unless the manifest "
            "holds a verified copy of every one of them.",
        ),
    ] = False,
    rewrite_urls: Annotated[
        bool,
        typer.Option(
            "--rewrite-urls",
            help="Point designs whose files are all verified in the destination at its public "
            "URL (one transaction; recorded in the manifest).",
        ),
    ] = False,
    rollback_urls: Annotated[
        bool,
        typer.Option("--rollback-urls", help="Undo the URL rewrites recorded in the manifest."),
    ] = False,
    public_base_url: Annotated[
        str,
        typer.Option(
            help="Public base URL of the destination for --rewrite-urls (default: its "
            "R2_PUBLIC_DOMAIN / S3_PUBLIC_DOMAIN)."
        ),
    ] = "",
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before deleting the source.")
    ] = False,
) -> None:
    """Copy every object from one store to another, verify each copy, and resume when re-run.

    Never deletes from the source unless asked with --delete-source, as a separate step. Exits
    non-zero when anything failed, is missing, or was interrupted.
    """
    steps = [dry_run, delete_source, rewrite_urls, rollback_urls]
    if sum(steps) > 1:
        _fail("choose one of --dry-run, --delete-source, --rewrite-urls, --rollback-urls")
    settings = load_settings()
    path = manifest_path or default_manifest_path(settings, source_spec, dest_spec)
    try:
        if rewrite_urls or rollback_urls:
            _url_step(settings, dest_spec, path, rollback=rollback_urls, base_url=public_base_url)
            return
        with _storage(settings, source_spec) as source:
            if dry_run:
                _dry_run(source, source_spec, dest_spec, prefix)
            elif delete_source:
                _delete_source(source, source_spec, path, prefix, yes=yes)
            else:
                with _storage(settings, dest_spec) as dest:
                    _copy(
                        source,
                        dest,
                        path,
                        prefix=prefix,
                        concurrency=concurrency,
                        verify_existing=verify_existing,
                    )
    except StolenteeError as exc:
        _fail(f"{exc.code}: {exc.detail}")


def _fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error[/] {escape(message)}")
    raise typer.Exit(code)


@contextmanager
def _storage(settings: Settings, spec: str) -> Iterator[Storage]:
    storage = build_named_storage(settings, spec)
    try:
        storage.check()
        yield storage
    finally:
        storage.close()


def _dry_run(source: Storage, source_spec: str, dest_spec: str, prefix: str) -> None:
    """Print every object that would be copied (key and size, tab-separated), then the totals."""
    count = total = 0
    for entry in source.iterate_keys(prefix):
        count += 1
        total += entry.size
        typer.echo(f"{entry.key}\t{entry.size}")
    err_console.print(
        f"Would copy {count} objects, {_size(total)}, from {escape(source_spec)} to "
        f"{escape(dest_spec)}" + (f" (prefix {escape(prefix)!r})" if prefix else "") + "; "
        "objects the destination already holds with the same sha256 will be skipped."
    )


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM: start nothing new, let in-flight copies finish, write the report."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        err_console.print(
            f"[yellow]{signal.Signals(signum).name}: finishing the objects in flight "
            "(again to abort)[/]"
        )
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _copy(
    source: Storage,
    dest: Storage,
    path: Path,
    *,
    prefix: str,
    concurrency: int,
    verify_existing: bool,
) -> None:
    with console.status("Listing the source and the destination..."):
        listings = migration.list_both(source, dest, prefix=prefix)
    plan = listings.plan()
    err_console.print(
        f"Copying {plan.object_count} objects ({_size(plan.total_bytes)}) with {concurrency} at "
        f"a time; manifest {escape(str(path))}"
    )
    stop = threading.Event()
    with migration.Manifest.open(path) as manifest, _progress_bar() as bar:
        task = bar.add_task(f"0/{plan.object_count} objects", total=plan.total_bytes)
        tracker = _ProgressTracker(bar, task)
        with _stop_on_signals(stop):
            report = migration.migrate(
                source,
                dest,
                manifest=manifest,
                concurrency=concurrency,
                prefix=prefix,
                verify_existing=verify_existing,
                progress=tracker.update,
                stop=stop,
                total_objects=plan.object_count,
                total_bytes=plan.total_bytes,
                listings=listings,
            )
    _print_report(report, path)
    if not report.ok:
        raise typer.Exit(1)


class _ProgressTracker:
    """Feeds progress events to the bar: bytes drive it (rate, ETA), objects are its label."""

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar = bar
        self.task = task

    def update(self, event: migration.ProgressEvent) -> None:
        self.bar.update(
            self.task,
            completed=event.bytes_done,
            description=f"{event.objects_done}/{event.total_objects} objects",
        )


def _print_report(report: migration.MigrationReport, path: Path) -> None:
    table = Table(title="Migration report", show_header=False)
    for name, value in (
        ("copied (verified)", report.copied),
        ("skipped (already there, verified)", report.skipped),
        ("failed", report.failed),
        ("missing (gone from the source)", report.missing),
        ("bytes copied", _size(report.bytes_copied)),
        ("elapsed", f"{report.elapsed_s:.1f} s"),
    ):
        table.add_row(name, escape(str(value)))
    if report.interrupted:
        table.add_row("[yellow]interrupted[/]", "re-run the same command to resume")
    if report.listing_error:
        table.add_row("[red]listing error[/]", escape(report.listing_error))
    console.print(table)
    console.print(f"Manifest: {escape(str(path))}")
    for failure in report.failures[:FAILURES_SHOWN]:
        err_console.print(
            f"[red]{failure.status}[/] {escape(failure.key)}: {escape(failure.error)}"
        )
    if len(report.failures) > FAILURES_SHOWN:
        err_console.print(
            f"... and {len(report.failures) - FAILURES_SHOWN} more (see the manifest)"
        )
    if report.ok:
        console.print("[green]Every object is in the destination and verified.[/]")


def _delete_source(
    source: Storage, source_spec: str, path: Path, prefix: str, *, yes: bool
) -> None:
    if not path.exists():
        _fail(f"no manifest at {path}: run the copy first (or pass --manifest)")
    with migration.Manifest.open(path) as manifest:
        with console.status("Checking every source object against the manifest..."):
            plan = migration.check_delete_allowed(source, manifest, prefix=prefix)
        console.print(
            f"Every one of the {plan.object_count} objects ({_size(plan.total_bytes)}) in "
            f"{escape(source_spec)} has a verified copy."
        )
        if not yes and not typer.confirm(f"Delete them from {source_spec}?", default=False):
            _fail("nothing deleted")
        with _progress_bar() as bar:
            task = bar.add_task("delete", total=plan.object_count)
            deleted = migration.delete_source(
                source, plan, progress=lambda event: bar.update(task, completed=event.objects_done)
            )
        manifest.append({"type": "delete_source", "deleted": deleted, "prefix": prefix})
    console.print(f"Deleted {deleted} objects from {escape(source_spec)}.")
    if deleted != plan.object_count:
        err_console.print(
            f"[yellow]{plan.object_count - deleted} objects were kept: they changed or vanished "
            "since the check (see the log).[/]"
        )
        raise typer.Exit(1)


def _url_step(
    settings: Settings, dest_spec: str, path: Path, *, rollback: bool, base_url: str
) -> None:
    """``--rewrite-urls`` / ``--rollback-urls``: designs follow the verified objects, or back;
    the CDN is then told to forget the URLs no longer handed out (a queued purge)."""
    from stolentee.cdn.jobs import enqueue_purge
    from stolentee.designs.urls import abandoned_urls
    from stolentee.runtime import build_runtime

    if not path.exists():
        _fail(f"no manifest at {path}: run the copy first (or pass --manifest)")
    with (
        build_runtime(settings, "maintenance") as runtime,
        migration.Manifest.open(path) as manifest,
    ):
        if rollback:
            changes = _rollback_urls(runtime.database, manifest)
        else:
            changes = _rewrite_urls(settings, runtime.database, manifest, dest_spec, base_url)
        urls = abandoned_urls(runtime.designs, runtime.storage, changes, undone=rollback)
        if enqueue_purge(runtime.queue, runtime.purger, urls):
            console.print(f"The CDN is told to forget {len(urls)} URLs (queued purge).")


def _rewrite_urls(
    settings: Settings,
    database: Database,
    manifest: migration.Manifest,
    dest_spec: str,
    base_url: str,
) -> list[UrlChange]:
    from stolentee.designs import urls as rewrite

    if not base_url:
        with _storage(settings, dest_spec) as dest:
            base_url = getattr(dest, "public_domain", "")
        if not base_url:
            _fail(
                f"{dest_spec} has no public URL: set its R2_PUBLIC_DOMAIN / S3_PUBLIC_DOMAIN "
                "or pass --public-base-url"
            )
    verified = manifest.verified_keys()
    rewrite_id = uuid.uuid4().hex
    changes = rewrite.rewrite_urls(database, verified=verified, new_base_url=base_url)
    # Recorded right after the commit: this is what --rollback-urls reads back.
    for change in changes:
        manifest.append({**change.to_record(), "rewrite_id": rewrite_id})
    manifest.append(
        {
            "type": "rewrite_run",
            "rewrite_id": rewrite_id,
            "at": datetime.now(UTC).isoformat(),
            "base_url": base_url,
            "designs": len(changes),
            "verified_objects": len(verified),
        }
    )
    console.print(
        f"{len(changes)} designs now served from {escape(base_url)} (only designs whose every "
        f"object is verified in the destination; {len(verified)} verified objects). Undo with "
        "--rollback-urls."
    )
    return changes


def _rollback_urls(database: Database, manifest: migration.Manifest) -> list[UrlChange]:
    from stolentee.designs import urls as rewrite

    rolled_back = {
        rewrite_id
        for record in manifest.records("rollback")
        for rewrite_id in record.get("rewrite_ids", [])
    }
    pending = [
        record
        for record in manifest.records(rewrite.RECORD_TYPE)
        if record.get("rewrite_id") not in rolled_back
    ]
    if not pending:
        console.print("No URL rewrite to roll back in this manifest.")
        return []
    changes = [rewrite.UrlChange.from_record(record) for record in pending]
    report = rewrite.rollback_urls(database, changes)
    rewrite_ids = sorted({str(record.get("rewrite_id")) for record in pending})
    manifest.append({"type": "rollback", "rewrite_ids": rewrite_ids, **report.as_dict()})
    console.print(
        f"Restored {report.restored} designs; {report.gone} were deleted since; "
        f"{len(report.conflicts)} changed since the rewrite and were left alone."
    )
    for design_id in report.conflicts[:FAILURES_SHOWN]:
        err_console.print(f"[yellow]conflict[/] design {design_id} changed after the rewrite")
    if report.conflicts:
        raise typer.Exit(1)
    return changes


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
