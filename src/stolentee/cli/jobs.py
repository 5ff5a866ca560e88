"""``stolentee jobs retry``: queue failed jobs again, after the outage that failed them is over.

``--since`` takes an ISO 8601 time (``2026-12-06T10:00:00Z``; UTC when no offset is given) or a
duration back from now (``30m``, ``6h``, ``2d``). ``--dry-run`` lists what would be retried.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from stolentee.cli.common import console, load_settings, print_error
from stolentee.errors import StolenteeError

jobs_app = typer.Typer(no_args_is_help=True)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STATUSES = ("failed",)


@jobs_app.callback()
def jobs_main() -> None:
    """The job queue: retry failed jobs."""


def parse_duration(value: str) -> timedelta:
    """``30s``, ``30m``, ``6h``, ``2d`` as a timedelta; ``typer.BadParameter`` otherwise."""
    match = _DURATION.match(value.strip().lower())
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a duration such as 30m, 6h or 2d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


def parse_since(value: str, *, now: datetime) -> datetime:
    """An aware UTC time from ``value`` (ISO 8601, or a duration back from ``now``)."""
    text = value.strip()
    if _DURATION.match(text.lower()):
        return now - parse_duration(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO 8601 time nor a duration such as 30m, 6h or 2d"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@jobs_app.command("retry")
def jobs_retry(
    status: Annotated[
        str, typer.Option(help="Which jobs: only failed jobs can be retried.")
    ] = "failed",
    since: Annotated[
        str | None,
        typer.Option(help="Only jobs that failed at or after this time (ISO 8601 or 30m/6h/2d)."),
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only jobs of this kind (design, callback).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many jobs.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the jobs; change nothing.")
    ] = False,
) -> None:
    """Queue failed jobs again: attempts start over, a design's callback is sent again."""
    if status not in _STATUSES:
        raise typer.BadParameter(f"only --status failed can be retried, not {status!r}")
    from stolentee.jobs.retry import RetryFilter, failed_jobs, retry_failed
    from stolentee.runtime import build_runtime

    since_at = None if since is None else parse_since(since, now=datetime.now(UTC))
    which = RetryFilter(kind=kind, since=since_at)
    try:
        with build_runtime(load_settings(), "maintenance") as runtime:
            if dry_run:
                jobs = failed_jobs(runtime.queue, which, limit=limit)
                table = Table("job", "kind", "failed at", "attempts", "error", box=box.SIMPLE)
                for job in jobs:
                    finished = job.finished_at.isoformat() if job.finished_at else "-"
                    table.add_row(
                        job.id, job.kind, finished, str(job.attempts), escape(job.error or "")
                    )
                console.print(table)
                console.print(f"{len(jobs)} failed job(s) would be retried (dry run).")
                return
            retried = retry_failed(runtime.queue, which, limit=limit)
    except StolenteeError as exc:
        print_error(exc)
        raise typer.Exit(1) from exc
    console.print(f"{len(retried)} failed job(s) queued again.")
