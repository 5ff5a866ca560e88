"""A named lease in the database: at most one process holds it at a time, until it expires.

The holder renews it on every round (:func:`acquire` again, well before ``ttl_s``); a holder
that dies lets it expire, and the next process to ask takes it over. Both steps are one
conditional statement, so two processes racing for it cannot both win: the UPDATE takes a held
lease only from its holder or once expired, and the INSERT of a first lease meets the primary
key. It works alike on SQLite and PostgreSQL. Expiry compares the processes' wall clocks, which
must agree (NTP) to well within ``ttl_s``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, update
from sqlalchemy.exc import IntegrityError

from stolentee.db.engine import Database
from stolentee.db.models import Lease


def acquire(database: Database, name: str, holder: str, *, ttl_s: float, now: datetime) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until ``now + ttl_s``; True when held."""
    expires = now + timedelta(seconds=ttl_s)
    with database.session() as session:
        taken = session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=expires)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
    try:
        with database.session() as session:
            session.execute(insert(Lease).values(name=name, holder=holder, expires_at=expires))
    except IntegrityError:  # someone holds it
        return False
    return True


def release(database: Database, name: str, holder: str) -> None:
    """Give the lease up (on shutdown), so that another process takes it at once."""
    with database.session() as session:
        session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
