"""The ``stolentee`` command: one CLI for every role (API server, worker, operator tools).

Each command lives in its own module of this package and is imported only when it runs (or when
``--help`` lists it); settings are built once, at the command's start (:mod:`.common`), and
passed to what it runs.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from stolentee import __version__
from stolentee.cli.common import console, print_error
from stolentee.errors import StolenteeError

if TYPE_CHECKING:
    from typer._click import Command, Context  # typer carries its own click

# Commands are imported only when invoked (or listed by --help): ``stolentee migrate-storage``
# should not pay for SQLAlchemy, the cost model and the autoscaler before it copies anything.
# name -> (module, attribute): a ``typer.Typer`` app, or a function for a single command.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("stolentee.cli.serve", "serve"),
    "removal-service": ("stolentee.cli.serve", "removal_service"),
    "worker": ("stolentee.cli.serve", "worker_command"),
    "remove": ("stolentee.cli.remove", "remove"),
    "models": ("stolentee.cli.models", "models_app"),
    "config": ("stolentee.cli.config", "config_app"),
    "db": ("stolentee.cli.db", "db_app"),
    "keys": ("stolentee.cli.keys", "keys_app"),
    "bench": ("stolentee.cli.bench", "bench_app"),
    "stats": ("stolentee.cli.stats", "stats_app"),
    "costs": ("stolentee.cli.costs", "costs_app"),
    "autoscale": ("stolentee.cli.autoscale", "autoscale_app"),
    "migrate-storage": ("stolentee.cli.migrate_storage", "migrate_storage"),
    "jobs": ("stolentee.cli.jobs", "jobs_app"),
    "storage": ("stolentee.cli.storage", "storage_app"),
    "backup": ("stolentee.cli.backup", "backup_app"),
}


class _LazyGroup(TyperGroup):
    """The top-level group: commands of :data:`LAZY_COMMANDS` are imported on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        return names + [name for name in LAZY_COMMANDS if name not in names]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY_COMMANDS:
            return command
        module_name, attribute = LAZY_COMMANDS[cmd_name]
        target = getattr(importlib.import_module(module_name), attribute)
        # Mounted on a throw-away parent, so that it is built as a subcommand (no completion
        # options of its own), exactly as ``add_typer`` / ``command`` would have built it.
        parent = typer.Typer(add_completion=False)
        parent.callback()(_no_op)
        if isinstance(target, typer.Typer):
            parent.add_typer(target, name=cmd_name)
        else:
            parent.command(cmd_name)(target)
        built = typer.main.get_command(parent)
        assert isinstance(built, TyperGroup)
        command = built.commands[cmd_name]
        self.add_command(command, cmd_name)
        return command


def _no_op() -> None:
    """Callback of the throw-away parent in :meth:`_LazyGroup.get_command`."""


app = typer.Typer(
    name="stolentee",
    help="Self-hostable print-on-demand backend: API server and operator tools.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_LazyGroup,
)
# A callback makes ``app`` a group even though only ``version`` is mounted eagerly.
app.callback()(_no_op)


@app.command()
def version() -> None:
    """Print stolentee's version."""
    console.print(__version__)


def main() -> None:
    try:
        app()
    except StolenteeError as exc:
        print_error(exc)
        sys.exit(1)
