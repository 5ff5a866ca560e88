"""``stolentee storage gc``: find and delete objects no design points at.

Dry run by default: it lists what would go; ``--delete`` deletes. Only the design prefixes
(``uploads/``, ``assets/cutouts/``) are looked at, and only objects older than ``--older-than``
(a day by default), so uploads and jobs in progress are never touched.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from stolentee.cli.common import console, err_console, load_settings, print_error
from stolentee.cli.jobs import parse_duration
from stolentee.errors import StolenteeError

storage_app = typer.Typer(no_args_is_help=True)
LISTED = 50  # orphans shown in the table; the totals count them all


@storage_app.callback()
def storage_main() -> None:
    """The configured object store: sweep orphaned objects."""


@storage_app.command("gc")
def storage_gc(
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run/--delete", help="List the orphans (default), or delete them."),
    ] = True,
    older_than: Annotated[
        str, typer.Option(help="Only objects older than this (30m, 6h, 2d).")
    ] = "1d",
) -> None:
    """Objects under uploads/ and assets/cutouts/ that no design names."""
    from stolentee.designs.janitor import sweep_orphans
    from stolentee.runtime import build_runtime

    age = parse_duration(older_than)
    try:
        with build_runtime(load_settings(), "maintenance") as runtime:
            report = sweep_orphans(
                database=runtime.database,
                storage=runtime.storage,
                older_than=age,
                dry_run=dry_run,
                progress=lambda scanned: err_console.print(
                    f"scanned {scanned} object(s)", end="\r"
                ),
            )
    except StolenteeError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc
    table = Table("orphaned object", "size", "last modified", box=box.SIMPLE)
    for info in report.orphans[:LISTED]:
        table.add_row(info.key, str(info.size), info.last_modified.isoformat())
    if report.orphans:
        console.print(table)
    more = len(report.orphans) - LISTED
    if more > 0:
        console.print(f"... and {more} more")
    verb = "would be deleted (dry run; --delete deletes them)" if dry_run else "deleted"
    count = len(report.orphans) if dry_run else report.deleted
    console.print(
        f"{report.scanned} object(s) scanned; {count} orphan(s), "
        f"{report.orphan_bytes} bytes, {verb}; {report.kept_young} unreferenced but newer "
        f"than {older_than}, kept"
    )
