"""The one change the outbox cannot hold: the database itself stops answering.

Notices normally go through the database (the lease, the statuses, the outbox). When it is the
database that fails, the replica that held the lease when it went keeps the watch in memory: once
the failure has lasted ``STOLENTEE_ALERT_DEBOUNCE_S`` it sends the ``database`` failure notice
directly (retried every round until delivered, or refused), and when the database answers again
it records that ``fail`` was announced, so that the recovery notice follows through the outbox as
for any component. Only the last lease holder does this, so one notice goes out; if that replica
dies during the outage, none does (the uptime check on ``/health`` and Prometheus cover that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from stolentee.alerts import changes
from stolentee.alerts.changes import Notice
from stolentee.alerts.notices import DeliveryError, RejectedError, Webhook
from stolentee.config import AlertSettings
from stolentee.db.engine import Database

log = logging.getLogger(__name__)


class DatabaseOutage:
    def __init__(
        self,
        *,
        settings: AlertSettings,
        webhook: Webhook,
        holder: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._webhook = webhook
        self._holder = holder
        self._clock = clock
        self.since: datetime | None = None
        self.announced = False  # the failure notice went out (or was refused for good)
        self._attempts = 0

    def failed(self, error: str) -> None:
        """A round met the database down (called only by the replica that held the lease)."""
        now = self._clock()
        if self.since is None:
            self.since = now
        if self.announced or now - self.since < timedelta(seconds=self._settings.debounce_s):
            return
        notice = Notice(
            id=0,
            component="database",
            status="fail",
            previous="pass",
            detail=error[: changes.DETAIL_LENGTH],
            created_at=self.since,
            attempts=self._attempts,
        )
        try:
            self._webhook.send(notice, holder=self._holder)
        except DeliveryError as exc:
            self._attempts += 1
            log.warning("database failure notice not delivered (%s); next round", exc)
            return
        except RejectedError as exc:
            log.error("database failure notice refused: %s", exc)
        self.announced = True

    def recovered(self, database: Database) -> None:
        """The database answers again: hand the announced failure to the outbox's bookkeeping."""
        if self.since is None:
            return
        if self.announced:
            changes.mark_announced(database, "database", "fail")
        self.since, self.announced, self._attempts = None, False, 0
