"""The composition root: every long-lived object of one process, built once for its role.

``build_runtime(settings, role)`` is the only place that wires the subsystems together. The API
lifespan, ``stolentee worker``, ``stolentee removal-service`` and the operator commands all start
from it, so the roles cannot drift apart: a part that two roles use is built the same way for
both (the S3 store is instrumented wherever it is built, the worker's storage check runs
wherever a worker runs). Each role builds only what it uses:

=================  ========  =======  ======  =======  ============  ======
role               database  removal  keys    storage  designs/jobs  worker
=================  ========  =======  ======  =======  ============  ======
``api``            yes       yes      yes     yes      yes           when asked
``removal``        yes       yes      yes     no       no            no
``worker``         yes       yes      no      checked  yes           yes
``admin``          yes       no       yes     no       no            no
``maintenance``    yes       no       no      yes      yes           no
=================  ========  =======  ======  =======  ============  ======

(``removal`` = the engine, the provider chain, its HTTP client and its statistics;
``maintenance`` is ``stolentee jobs`` and ``stolentee storage``: failed jobs retried, orphaned
objects swept.)

``Runtime.close()`` releases everything it built, last built first; objects handed in by the
caller (a test's database or storage) are the caller's to close.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from functools import partial
from typing import Literal, TypeVar

import httpx

from stolentee.alerts.watch import HealthWatch, build_health_watch
from stolentee.cdn.purge import Purger, build_purger
from stolentee.config import QueueSettings, Settings
from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.designs.callbacks import CallbackSender
from stolentee.designs.jobs import PERMANENT_ERRORS, build_handlers, queue_hooks
from stolentee.designs.repair import repair_designs
from stolentee.designs.store import DesignStore
from stolentee.errors import ConfigurationError, DatabaseUnavailableError
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.transport import Transport, build_transport
from stolentee.jobs.worker import Worker
from stolentee.keys.ratelimit import RateLimiter, build_rate_limiter
from stolentee.keys.store import KeyStore
from stolentee.metrics import Metrics
from stolentee.removal.engine import RemovalEngine
from stolentee.removal.providers.chain import ProviderChain, build_chain
from stolentee.removal.providers.http import build_http_client
from stolentee.removal.stats.store import SERVICE_FLUSH_INTERVAL_S, RemovalStatsStore
from stolentee.storage.base import Storage
from stolentee.storage.diskspace import DiskSpace
from stolentee.storage.factory import build_storage
from stolentee.storage.s3.store import S3Storage

log = logging.getLogger(__name__)

Role = Literal["api", "removal", "worker", "admin", "maintenance"]

# Within the shutdown's time (docs/scaling.md): jobs still running after this go back to the queue.
IN_PROCESS_WORKER_STOP_TIMEOUT_S = 8.0

_T = TypeVar("_T")


class Runtime:
    """The parts one process runs with; a part its role does not build raises when asked for."""

    def __init__(self, settings: Settings, role: Role) -> None:
        self.settings = settings
        self.role = role
        self._stack = ExitStack()
        self._database: Database | None = None
        self._metrics: Metrics | None = None
        self._engine: RemovalEngine | None = None
        self._http_client: httpx.Client | None = None
        self._removal_stats: RemovalStatsStore | None = None
        self._providers: ProviderChain | None = None
        self._keys: KeyStore | None = None
        self._storage: Storage | None = None
        self._designs: DesignStore | None = None
        self._callbacks: CallbackSender | None = None
        self._purger: Purger | None = None
        self._queue: JobQueue | None = None
        self._disk: DiskSpace | None = None
        self._rate_limiter: RateLimiter | None = None
        self.worker: Worker | None = None  # None: this process runs no worker
        self.health_watch: HealthWatch | None = None  # health notices (STOLENTEE_ALERT_*)

    def _need(self, part: _T | None, name: str) -> _T:
        if part is None:
            raise RuntimeError(f"the {self.role!r} runtime does not build {name}")
        return part

    @property
    def database(self) -> Database:
        return self._need(self._database, "a database")

    @property
    def metrics(self) -> Metrics:
        return self._need(self._metrics, "metrics")

    @property
    def engine(self) -> RemovalEngine:
        return self._need(self._engine, "the removal engine")

    @property
    def http_client(self) -> httpx.Client:
        """The client the remote removal providers share."""
        return self._need(self._http_client, "an HTTP client")

    @property
    def removal_stats(self) -> RemovalStatsStore:
        return self._need(self._removal_stats, "removal statistics")

    @property
    def providers(self) -> ProviderChain:
        """Local engine / removal service / Remove.bg, with their breakers."""
        return self._need(self._providers, "the provider chain")

    @property
    def keys(self) -> KeyStore:
        return self._need(self._keys, "a key store")

    @property
    def has_storage(self) -> bool:
        return self._storage is not None

    @property
    def rate_limiter(self) -> RateLimiter:
        return self._need(self._rate_limiter, "a rate limiter")

    @property
    def disk(self) -> DiskSpace:
        return self._need(self._disk, "a disk space watch")

    @property
    def storage(self) -> Storage:
        return self._need(self._storage, "storage")

    @property
    def designs(self) -> DesignStore:
        return self._need(self._designs, "the designs table")

    @property
    def callbacks(self) -> CallbackSender:
        return self._need(self._callbacks, "a callback sender")

    @property
    def purger(self) -> Purger:  # tells the CDN to forget URLs
        return self._need(self._purger, "a CDN purger")

    @property
    def has_queue(self) -> bool:
        return self._queue is not None

    @property
    def queue(self) -> JobQueue:
        return self._need(self._queue, "a job queue")

    def start(self) -> None:
        """Start the background parts: provider probes and the in-process worker."""
        if self._providers is not None:
            self._providers.start_probes()
        if self.worker is not None and self.role != "worker":
            self.worker.start()
        if self.health_watch is not None:
            self.health_watch.start()

    def close(self) -> None:
        """Stop and release everything this runtime built, last built first."""
        self._stack.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_runtime(
    settings: Settings,
    role: Role,
    *,
    database: Database | None = None,
    storage: Storage | None = None,
    run_worker: bool | None = None,
    worker_concurrency: int | None = None,
) -> Runtime:
    """Build the parts of ``role``; on any failure what was built so far is released.

    ``run_worker`` (role ``api``; default ``STOLENTEE_RUN_WORKER``) adds an in-process worker;
    ``worker_concurrency`` overrides ``STOLENTEE_WORKER_CONCURRENCY`` for it.
    ``database`` and ``storage`` let a test hand in its own; they are not closed here.
    """
    runtime = Runtime(settings, role)
    try:
        _build(
            runtime,
            database=database,
            storage=storage,
            run_worker=run_worker,
            worker_concurrency=worker_concurrency,
        )
    except BaseException:
        runtime.close()
        raise
    return runtime


def _build(
    runtime: Runtime,
    *,
    database: Database | None,
    storage: Storage | None,
    run_worker: bool | None,
    worker_concurrency: int | None,
) -> None:
    settings, role, stack = runtime.settings, runtime.role, runtime._stack
    wants_jobs = role in ("api", "worker")
    if wants_jobs or role == "maintenance":
        # Wrong callback or CDN settings are a clear error at start-up, before anything opens.
        runtime._callbacks = CallbackSender.from_settings(settings.api)
        runtime._purger = purger = build_purger(settings)
        stack.callback(purger.close)

    if database is None:
        database = Database(
            settings=settings.database,
            # The operator's one-shot commands never hold a query long enough to need it.
            watchdog=role != "admin",
            synchronous_commit=(
                settings.database.worker_synchronous_commit if role == "worker" else True
            ),
        )
        stack.callback(database.dispose)
    runtime._database = database
    _prepare_schema(runtime)
    if role in ("api", "removal"):
        database.start_idle_reaper()
        # Shared by every API process through Redis when REDIS_URL is set (issue 23, item 6).
        limiter = build_rate_limiter(
            settings.api.rate_limit_megapixels_per_minute,
            settings.queue.redis_url.get_secret_value().strip(),
        )
        stack.callback(limiter.close)
        runtime._rate_limiter = limiter
    if role in ("api", "removal", "admin"):
        runtime._keys = KeyStore(database=database, static_keys=settings.api.static_keys)
    if role == "admin":
        return
    if role == "maintenance":
        _build_maintenance(runtime, storage)
        return

    metrics = Metrics(multiprocess_dir=settings.service.metrics_multiprocess_dir)
    metrics.instrument_database(database)
    runtime._metrics = metrics
    _build_removal(runtime, metrics)
    if not wants_jobs:
        # Pool figures and breakers; this role has no queue to watch.
        metrics.watch(database=database, providers=runtime.providers)
        return

    if storage is None:
        storage = build_storage(settings)
        stack.callback(storage.close)
    if role == "worker":
        storage.check()  # fail now, not on every job, when the bucket or credentials are wrong
    if isinstance(storage, S3Storage):
        metrics.instrument_s3(storage)
    runtime._storage = storage
    runtime._disk = disk = DiskSpace.from_settings(settings)
    disk.keep_reserve()
    runtime._designs = DesignStore(database=database)
    transport = build_transport(settings)
    stack.callback(transport.close)
    callbacks = runtime.callbacks
    queue = build_queue(
        database=database, transport=transport, settings=settings.queue, callbacks=callbacks
    )
    runtime._queue = queue
    metrics.watch(queue=queue, database=database, disk=disk, providers=runtime.providers)
    if role == "api" and settings.alerts.enabled:
        runtime.health_watch = watch = build_health_watch(
            settings, database=database, storage=storage, disk=disk, queue=queue,
            providers=runtime.providers,
        )  # fmt: skip
        stack.callback(watch.stop)

    worker_wanted = role == "worker" or (
        settings.queue.run_worker if run_worker is None else run_worker
    )
    if worker_wanted:
        handlers = build_handlers(
            designs=runtime.designs,
            storage=storage,
            remover=runtime.providers,
            queue=queue,
            callbacks=callbacks,
            purger=runtime.purger,
            observe_purge=metrics.count_purge,
        )
        worker = Worker(
            queue=queue,
            handlers=metrics.timed_handlers(handlers),
            concurrency=worker_concurrency,
            permanent_errors=PERMANENT_ERRORS,
            housekeeping=[partial(repair_designs, queue)],
            name="stolentee-worker" if role == "worker" else "stolentee-inprocess-worker",
        )
        runtime.worker = worker
        if role != "worker":  # the worker role runs it in the foreground and stops it itself
            stack.callback(worker.stop, IN_PROCESS_WORKER_STOP_TIMEOUT_S)


def _build_maintenance(runtime: Runtime, storage: Storage | None) -> None:
    """The operator's commands on jobs and stored objects: the queue with every job kind's
    hooks, the designs and the storage (not checked: ``storage gc`` reports what it meets)."""
    settings, stack = runtime.settings, runtime._stack
    if storage is None:
        storage = build_storage(settings)
        stack.callback(storage.close)
    runtime._storage = storage
    runtime._designs = DesignStore(database=runtime.database)
    transport = build_transport(settings)
    stack.callback(transport.close)
    runtime._queue = build_queue(
        database=runtime.database,
        transport=transport,
        settings=settings.queue,
        callbacks=runtime.callbacks,
    )


def build_queue(
    *,
    database: Database,
    transport: Transport,
    settings: QueueSettings,
    callbacks: CallbackSender,
) -> JobQueue:
    """The job queue with the design jobs' hooks (:func:`stolentee.designs.jobs.queue_hooks`)."""
    return JobQueue(
        database=database, transport=transport, settings=settings, **queue_hooks(callbacks)
    )


def _build_removal(runtime: Runtime, metrics: Metrics) -> None:
    settings, stack = runtime.settings, runtime._stack
    runtime._engine = RemovalEngine(settings=settings.engine)
    http_client = build_http_client(settings.removal)
    stack.callback(http_client.close)
    runtime._http_client = http_client
    removal_stats = RemovalStatsStore(
        database=runtime.database, flush_interval_s=SERVICE_FLUSH_INTERVAL_S
    )
    stack.callback(removal_stats.close)
    runtime._removal_stats = removal_stats
    chain = build_chain(
        settings.removal,
        engine=runtime.engine,
        http_client=http_client,
        stats=metrics.removal_sink(removal_stats),
    )
    stack.callback(chain.stop)
    runtime._providers = chain


def _prepare_schema(runtime: Runtime) -> None:
    """Migrations at start-up, by role.

    The HTTP roles migrate when allowed and go on when the database is unreachable (``/readyz``
    reports it, and the pool reconnects). A worker and the operator's commands need the schema
    at head before they do anything, and stop with a clear error otherwise.
    """
    settings, database = runtime.settings, runtime.database
    auto_migrate = bool(settings.database.auto_migrate)
    if runtime.role in ("api", "removal"):
        if not auto_migrate:
            return
        try:
            revision = migrate.upgrade(database)
            log.info("database schema at revision %s", revision)
        except DatabaseUnavailableError as exc:
            log.error("migrations not applied at start-up: %s", exc.detail)
        return
    if runtime.role in ("admin", "maintenance"):
        migrate.ensure_schema(database, auto_migrate=auto_migrate)
        return
    if auto_migrate:
        migrate.upgrade(database)
    problem = migrate.schema_problem(database)
    if problem is not None:
        raise ConfigurationError(problem)
