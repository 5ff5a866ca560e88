"""The watching thread of each API process: take the lease, check, record, deliver.

Every process that serves the API runs one :class:`HealthWatch`; the one holding the
``alerts`` lease does the work each ``STOLENTEE_ALERT_CHECK_INTERVAL_S``, the others only ask
for the lease, so a second replica takes over within the lease's time when the first goes. The
thread never touches a request: a receiver that is slow or down delays only its own next round
(each attempt is bounded by ``STOLENTEE_ALERT_TIMEOUT_S``), and what it did not take stays in
the outbox for the next attempt, with exponential backoff.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from stolentee.alerts import changes, lease
from stolentee.alerts.components import Components, ComponentSource
from stolentee.alerts.notices import DeliveryError, RejectedError, Webhook
from stolentee.alerts.outage import DatabaseOutage
from stolentee.config import AlertSettings, Settings
from stolentee.db.engine import Database
from stolentee.jobs.queue import JobQueue
from stolentee.removal.providers.chain import ProviderChain
from stolentee.storage.base import Storage
from stolentee.storage.diskspace import DiskSpace

log = logging.getLogger(__name__)
LEASE = "alerts"
MAX_BACKOFF_S = 300.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def holder_id() -> str:
    """This process, in the lease table and in every notice it sends."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class HealthWatch:
    """Checks ``components`` and announces their changes to ``webhook``, while holding the
    lease. :meth:`run_once` is one round (the tests drive it); :meth:`start` runs rounds in a
    daemon thread until :meth:`stop`."""

    def __init__(
        self,
        *,
        database: Database,
        components: ComponentSource,
        webhook: Webhook,
        settings: AlertSettings,
        holder: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._database = database
        self._components = components
        self._webhook = webhook
        self._settings = settings
        self.holder = holder or holder_id()
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leading = False
        # Three rounds' grace before another replica may take over.
        self.lease_ttl_s = 3 * settings.check_interval_s + 2 * settings.timeout_s
        self._outage = DatabaseOutage(
            settings=settings, webhook=webhook, holder=self.holder, clock=clock
        )

    def run_once(self) -> None:
        now = self._clock()
        try:
            leading = lease.acquire(
                self._database, LEASE, self.holder, ttl_s=self.lease_ttl_s, now=now
            )
        except Exception as exc:
            if self.leading:  # the last holder keeps the watch of the database itself
                self._outage.failed(f"{type(exc).__name__}: {exc}")
            raise
        self._outage.recovered(self._database)
        if leading != self.leading:
            log.info("health notices: %s", "this process sends them" if leading else "standby")
            self.leading = leading
        if not leading:
            return
        observed = self._components.check()
        changes.record(self._database, observed, settings=self._settings, now=self._clock())
        self.deliver_due()

    def deliver_due(self) -> None:
        settings = self._settings
        now = self._clock()
        hold_s = settings.timeout_s * 2 + settings.check_interval_s
        for notice in changes.claim_due(self._database, now=now, hold_s=hold_s):
            try:
                self._webhook.send(notice, holder=self.holder)
            except DeliveryError as exc:
                attempts = notice.attempts + 1
                if attempts >= settings.max_attempts:
                    log.error("health notice %s given up after %d attempts: %s",
                              notice.id, attempts, exc)  # fmt: skip
                    changes.failed(self._database, notice.id, error=str(exc), retry_at=None)
                    continue
                delay = min(MAX_BACKOFF_S, settings.retry_backoff_s * 2 ** (attempts - 1))
                log.warning("health notice %s not delivered (%s); again in %.0f s",
                            notice.id, exc, delay)  # fmt: skip
                retry_at = self._clock() + timedelta(seconds=delay)
                changes.failed(self._database, notice.id, error=str(exc), retry_at=retry_at)
            except RejectedError as exc:
                log.error("health notice %s refused: %s", notice.id, exc)
                changes.failed(self._database, notice.id, error=str(exc), retry_at=None)
            else:
                changes.delivered(self._database, notice.id, now=self._clock())

    # --- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="stolentee-health-notices", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the loop outlives a bad round (database down)
                log.warning("health notice round failed: %s: %s", type(exc).__name__, exc)
            if self._stop.wait(self._settings.check_interval_s):
                break

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and hand the lease over (another replica takes it at once)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        if self.leading:
            try:
                lease.release(self._database, LEASE, self.holder)
            except Exception:
                log.warning("could not release the health-notice lease", exc_info=True)
            self.leading = False


def build_health_watch(
    settings: Settings,
    *,
    database: Database,
    storage: Storage,
    disk: DiskSpace,
    queue: JobQueue,
    providers: ProviderChain,
) -> HealthWatch:
    """The watch of an API process; a bad ``STOLENTEE_ALERT_WEBHOOK_URL`` stops the start-up
    here (:class:`~stolentee.errors.ConfigurationError`)."""
    alerts = settings.alerts
    webhook = Webhook.from_settings(alerts, environment=settings.service.env.value)
    components = Components(
        database=database,
        settings=alerts,
        storage=storage,
        disk=disk,
        queue=queue,
        providers=providers,
    )
    return HealthWatch(database=database, components=components, webhook=webhook, settings=alerts)
