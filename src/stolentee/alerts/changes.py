"""From observed statuses to announced changes: the debounce, the flap limit, and the outbox.

Each round the watching replica hands :func:`record` what it sees. Per component the table
``alert_components`` keeps the status observed (and since when) and the status last announced.
A change is announced once the observed status has held for ``debounce_s`` and the component has
had fewer than ``flap_limit`` notices within ``flap_window_s``; announcing writes the notice to
``alert_notices`` in the same transaction, with a compare-and-set on the announced status, so a
change makes exactly one notice even if two replicas ever believed they held the lease.

A component first seen passing is recorded quietly; one first seen warning or failing is
announced (the service started into trouble). A component that disappears (a provider removed
from the chain) is forgotten without a notice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from stolentee.alerts.components import ComponentHealth
from stolentee.config import AlertSettings
from stolentee.db.engine import Database
from stolentee.db.models import AlertComponent, AlertNotice

log = logging.getLogger(__name__)
DETAIL_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class Notice:
    """One announced change, as the webhook receives it."""

    id: int
    component: str
    status: str
    previous: str | None
    detail: str | None
    created_at: datetime
    attempts: int

    @classmethod
    def of(cls, row: AlertNotice) -> Notice:
        return cls(
            id=row.id,
            component=row.component,
            status=row.status,
            previous=row.previous,
            detail=row.detail,
            created_at=row.created_at,
            attempts=row.attempts,
        )


def record(
    database: Database,
    observed: Sequence[ComponentHealth],
    *,
    settings: AlertSettings,
    now: datetime,
) -> list[int]:
    """Update every component with what was observed ``now``; the ids of the notices made."""
    made: list[int] = []
    seen = {health.name for health in observed}
    with database.session() as session:
        rows = {row.component: row for row in session.scalars(select(AlertComponent))}
        for health in observed:
            row = rows.get(health.name)
            detail = health.detail[:DETAIL_LENGTH]
            if row is None:
                row = AlertComponent(
                    component=health.name,
                    observed_status=health.status,
                    observed_since=now,
                    detail=detail,
                    announced_status=None,
                )
                session.add(row)
                session.flush()
            elif row.observed_status != health.status:
                row.observed_status, row.observed_since = health.status, now
            row.detail = detail
            notice = _announce(session, row, settings=settings, now=now)
            if notice is not None:
                made.append(notice)
        gone = [name for name in rows if name not in seen]
        if gone:
            session.execute(delete(AlertComponent).where(AlertComponent.component.in_(gone)))
    return made


def _announce(
    session: Session, row: AlertComponent, *, settings: AlertSettings, now: datetime
) -> int | None:
    status, previous = row.observed_status, row.announced_status
    if status == previous:
        return None
    if now - row.observed_since < timedelta(seconds=settings.debounce_s):
        return None  # not held long enough yet
    quiet = previous is None and status == "pass"  # first seen, and well: nothing to say
    if not quiet:
        since = now - timedelta(seconds=settings.flap_window_s)
        recent = session.scalar(
            select(func.count())
            .select_from(AlertNotice)
            .where(AlertNotice.component == row.component, AlertNotice.created_at >= since)
        )
        if (recent or 0) >= settings.flap_limit:
            log.info("%s is flapping: its change to %s waits for the window", row.component, status)
            return None
    claimed = session.execute(
        update(AlertComponent)
        .where(
            AlertComponent.component == row.component,
            AlertComponent.announced_status.is_not_distinct_from(previous),
        )
        .values(announced_status=status, announced_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1 or quiet:  # type: ignore[attr-defined]
        return None
    notice = AlertNotice(
        component=row.component,
        status=status,
        previous=previous,
        detail=row.detail,
        created_at=now,
        attempts=0,
        next_attempt_at=now,
        given_up=False,
    )
    session.add(notice)
    session.flush()
    log.warning("health: %s %s -> %s (%s)", row.component, previous, status, row.detail)
    return notice.id


def mark_announced(database: Database, component: str, status: str) -> None:
    """Record that ``status`` was announced for ``component`` outside the outbox (the database's
    own outage, :mod:`stolentee.alerts.outage`), so that its recovery is announced."""
    with database.session() as session:
        session.execute(
            update(AlertComponent)
            .where(AlertComponent.component == component)
            .values(announced_status=status)
        )


def claim_due(database: Database, *, now: datetime, hold_s: float, limit: int = 20) -> list[Notice]:
    """The notices due for delivery now, each claimed for ``hold_s`` (its next attempt moved
    past the delivery's time), so that no other round sends it meanwhile."""
    claimed: list[Notice] = []
    with database.session() as session:
        rows = session.scalars(
            select(AlertNotice)
            .where(
                AlertNotice.sent_at.is_(None),
                AlertNotice.given_up.is_(False),
                AlertNotice.next_attempt_at <= now,
            )
            .order_by(AlertNotice.id)
            .limit(limit)
        ).all()
        for row in rows:
            took = session.execute(
                update(AlertNotice)
                .where(AlertNotice.id == row.id, AlertNotice.next_attempt_at <= now)
                .values(next_attempt_at=now + timedelta(seconds=hold_s))
                .execution_options(synchronize_session=False)
            )
            if took.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(Notice.of(row))
    return claimed


def delivered(database: Database, notice_id: int, *, now: datetime) -> None:
    with database.session() as session:
        session.execute(
            update(AlertNotice)
            .where(AlertNotice.id == notice_id)
            .values(sent_at=now, attempts=AlertNotice.attempts + 1, last_error=None)
        )


def failed(
    database: Database,
    notice_id: int,
    *,
    error: str,
    retry_at: datetime | None,
) -> None:
    """One attempt failed: try again at ``retry_at``, or give up (``None``)."""
    values: dict[str, object] = {"attempts": AlertNotice.attempts + 1, "last_error": error[:500]}
    if retry_at is None:
        values["given_up"] = True
    else:
        values["next_attempt_at"] = retry_at
    with database.session() as session:
        session.execute(update(AlertNotice).where(AlertNotice.id == notice_id).values(**values))


def recent_notices(database: Database, *, limit: int = 20) -> list[dict[str, object]]:
    """The latest notices, newest first, with their delivery state (for the ops summary)."""
    with database.session() as session:
        rows = session.scalars(
            select(AlertNotice).order_by(AlertNotice.id.desc()).limit(limit)
        ).all()
        return [
            {
                "id": row.id,
                "component": row.component,
                "status": row.status,
                "previous": row.previous,
                "detail": row.detail,
                "createdAt": row.created_at.isoformat(),
                "sentAt": None if row.sent_at is None else row.sent_at.isoformat(),
                "attempts": row.attempts,
                "givenUp": row.given_up,
                "lastError": row.last_error,
            }
            for row in rows
        ]
