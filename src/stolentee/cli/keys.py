"""``stolentee keys``: create, list and revoke the API keys stored in the database.

Keys from ``STOLENTEE_API_KEYS`` are configuration, not data: they are not listed or revoked
here. On the embedded SQLite default pending migrations are applied first (as the server does on
start-up); on PostgreSQL run ``stolentee db upgrade`` when deploying.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from stolentee.cli.common import console, err_console, load_settings, print_error
from stolentee.errors import StolenteeError

if TYPE_CHECKING:  # the database layer is imported when a command runs, not for `--help`
    from stolentee.keys.principals import ApiKeyRecord, UsageTotals
    from stolentee.keys.store import KeyStore

keys_app = typer.Typer(help="API keys for the removal API (X-Api-Key).", no_args_is_help=True)


@contextmanager
def _key_store() -> Iterator[KeyStore]:
    """A KeyStore on the configured database, migrated when the settings allow it."""
    from stolentee.runtime import build_runtime

    try:
        with build_runtime(load_settings(), "admin") as runtime:
            yield runtime.keys
    except StolenteeError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. `shop-frontend`.")],
    premium: Annotated[
        bool, typer.Option(help="Route this key's requests to the premium tier.")
    ] = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    with _key_store() as store:
        record, key = store.create(name, premium=premium)
    tier = " (premium)" if record.premium else ""
    err_console.print(
        f"Created key {record.id} [bold]{escape(record.name)}[/]{tier}, prefix {record.prefix}."
    )
    err_console.print(
        "[bold yellow]Store this key now: it is shown only once and cannot be recovered.[/]"
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """List the database keys with their usage (images, credits Remove.bg would have charged)."""
    with _key_store() as store:
        records = store.list()
        usage = store.usage_by_label()
        static_count = store.static_key_count
    console.print(_table(records, usage))
    if static_count:
        console.print(f"{static_count} more key(s) accepted from STOLENTEE_API_KEYS (not listed).")


@keys_app.command("revoke")
def keys_revoke(
    id_or_prefix: Annotated[str, typer.Argument(help="Key id, 8-character prefix or the key.")],
) -> None:
    """Revoke a key; servers stop accepting it within a few seconds (their cache TTL)."""
    with _key_store() as store:
        revoked = store.revoke(id_or_prefix)
    if not revoked:
        err_console.print(f"[bold red]error[/] no active key matches {id_or_prefix!r}")
        raise typer.Exit(1)
    console.print(f"Revoked {id_or_prefix}.")


_COLUMNS = (
    "ID",
    "Name",
    "Prefix",
    "Premium",
    "Created",
    "Last used",
    "Revoked",
    "Images",
    "Credits",
)
_NUMERIC_COLUMNS = ("ID", "Images", "Credits")
_UNBROKEN_COLUMNS = ("ID", "Prefix")
_MIN_WIDTHS = {"Created": 10, "Last used": 10, "Revoked": 10}  # "YYYY-MM-DD", time below


def _table(records: list[ApiKeyRecord], usage: dict[str, UsageTotals]) -> Table:
    from stolentee.keys.principals import UsageTotals

    table = Table(
        title="API keys (times in UTC)",
        box=box.SIMPLE_HEAD,
        padding=0,  # the box's blank divider separates columns: 80 columns suffice
        show_edge=False,
    )
    for column in _COLUMNS:
        table.add_column(
            column,
            justify="right" if column in _NUMERIC_COLUMNS else "left",
            no_wrap=column in _UNBROKEN_COLUMNS,
            min_width=_MIN_WIDTHS.get(column),
            overflow="fold",
        )
    for record in records:
        totals = usage.get(record.label, UsageTotals())
        table.add_row(
            str(record.id),
            escape(record.name),
            record.prefix,
            "yes" if record.premium else "no",
            _when(record.created_at),
            _when(record.last_used_at),
            _when(record.revoked_at),
            str(totals.images),
            f"{totals.credits:g}",
        )
    return table


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")
