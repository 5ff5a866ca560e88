"""The long-running roles: ``serve`` (the API), ``removal-service`` and ``worker``.

Each builds its settings once and hands them to :func:`stolentee.runtime.build_runtime` (through
the API's lifespan for the HTTP roles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from stolentee.cli.common import err_console, load_settings

if TYPE_CHECKING:
    from stolentee.config import Settings


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default STOLENTEE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="HTTP worker processes (default STOLENTEE_HTTP_WORKERS).")
    ] = None,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Also process design jobs in this process (default STOLENTEE_RUN_WORKER).",
        ),
    ] = None,
    worker_concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Jobs at once (default STOLENTEE_WORKER_CONCURRENCY)."),
    ] = None,
) -> None:
    """Run the HTTP API server (uvicorn), with an in-process job worker by default."""
    from stolentee.backup.litestream import replicating
    from stolentee.designs.callbacks import CallbackSender
    from stolentee.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.service)
    CallbackSender.from_settings(settings.api)  # wrong callback settings: a clear error, now
    with replicating(settings):  # Litestream beside the service, when STOLENTEE_LITESTREAM is on
        _serve(settings, host, port, workers, worker, worker_concurrency)


def _serve(
    settings: Settings,
    host: str | None,
    port: int | None,
    workers: int | None,
    worker: bool | None,
    worker_concurrency: int | None,
) -> None:
    from stolentee.api import serving
    from stolentee.api.app import create_app

    bind_host = host or settings.service.host
    bind_port = port or settings.service.port
    worker_count = workers or settings.service.http_workers
    if worker_count > 1:
        if worker is not None or worker_concurrency is not None:
            raise typer.BadParameter(
                "with several HTTP workers, set STOLENTEE_RUN_WORKER and "
                "STOLENTEE_WORKER_CONCURRENCY in the environment instead"
            )
        serving.run_workers(settings, host=bind_host, port=bind_port, workers=worker_count)
        return
    if worker_concurrency is not None:
        settings.queue = settings.queue.model_copy(
            update={"worker_concurrency": worker_concurrency}
        )
    app = create_app(settings, run_worker=worker)
    serving.run_one(app, settings, host=bind_host, port=bind_port)


def removal_service(
    host: Annotated[str | None, typer.Option(help="Bind address (default STOLENTEE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PORT).")] = None,
) -> None:
    """Run only the removal API (/v1.0/removebg, /api/remove, health) as its own service.

    The seed's "Railway Worker - rembg": deploy it separately (2 GB of memory is plenty for the
    default u2netp model) and point the main service's REMBG_ENDPOINT at it. The engine is loaded
    once; concurrency is STOLENTEE_ENGINE_MAX_IN_FLIGHT.
    """
    from stolentee.api import serving
    from stolentee.api.app import create_app
    from stolentee.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.service)
    serving.run_one(
        create_app(settings, role="removal"),
        settings,
        host=host or settings.service.host,
        port=port or settings.service.port,
    )


def worker_command(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Jobs at once (default STOLENTEE_WORKER_CONCURRENCY)."),
    ] = None,
    graceful_timeout_s: Annotated[
        float | None,
        typer.Option(
            help="On SIGTERM, time to finish running jobs before handing the rest back "
            "(default STOLENTEE_SHUTDOWN_TIMEOUT_S).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Process design jobs from the queue until SIGTERM (scale out: one or many processes)."""
    from prometheus_client import start_http_server

    from stolentee.logs import configure_logging
    from stolentee.runtime import build_runtime

    settings = load_settings()
    configure_logging(settings.service)
    with build_runtime(settings, "worker", worker_concurrency=concurrency) as runtime:
        job_worker = runtime.worker
        assert job_worker is not None  # the worker role always builds one
        if settings.service.metrics_port:
            start_http_server(
                settings.service.metrics_port,
                addr=settings.service.host,
                registry=runtime.metrics.registry,
            )
        err_console.print(
            f"worker {job_worker.owner}: {job_worker.concurrency} at once, "
            f"queue {runtime.queue.transport.backend}, "
            f"database {runtime.database.url.get_backend_name()}, "
            f"removal {' -> '.join(runtime.providers.order())}"
        )
        runtime.start()
        # A worker takes no traffic from a load balancer: on SIGTERM it stops leasing at once.
        timeout_s = graceful_timeout_s or settings.service.shutdown_timeout_s
        job_worker.run_forever(graceful_timeout_s=timeout_s)
