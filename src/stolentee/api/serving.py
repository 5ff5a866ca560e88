"""Running the HTTP roles under uvicorn: one process, or several workers behind one port.

``serve`` and ``removal-service`` both start here. One process is a plain uvicorn server: the
app's :class:`~stolentee.api.drain.Drain` handles SIGTERM. Several workers
(``STOLENTEE_HTTP_WORKERS`` > 1) run under :class:`DrainingSupervisor`, uvicorn's multi-process
supervisor with the drain added at the top: on SIGTERM it writes the marker file its workers read
(their ``/readyz`` answers 503 and their responses close connections), keeps them serving for
``STOLENTEE_SHUTDOWN_DRAIN_S``, then stops them (each finishes its requests in flight). SIGHUP
replaces the workers one at a time, each replacement ready before the old one stops
(uvicorn's own rolling restart), without draining the server.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from socket import socket
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from stolentee.api.drain import Drain
from stolentee.config import Settings

log = logging.getLogger(__name__)
APP_FACTORY = "stolentee.api.app:app_from_env"
WORKER_START_TIMEOUT_S = 60


class DrainingSupervisor(Multiprocess):
    """uvicorn's supervisor, draining the whole server on the first SIGTERM."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket], *, drain: Drain) -> None:
        super().__init__(config, sockets)
        self.drain = drain
        self.drain_until: float | None = None

    def handle_term(self) -> None:
        if self.drain_until is not None or self.drain.drain_s <= 0:
            super().handle_term()  # a second SIGTERM, or no drain: stop now
            return
        self.drain.begin()
        self.drain_until = time.monotonic() + self.drain.drain_s
        log.info("SIGTERM: draining %d workers for %.0f s (/readyz answers 503), then stopping "
                 "them", len(self.processes), self.drain.drain_s)  # fmt: skip

    def keep_subprocess_alive(self) -> None:
        if self.drain_until is not None and time.monotonic() >= self.drain_until:
            self.should_exit.set()  # the run loop then stops every worker
            return
        super().keep_subprocess_alive()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    service = settings.service
    return {
        "log_config": None,
        "proxy_headers": True,
        "timeout_graceful_shutdown": math.ceil(service.shutdown_timeout_s),
        "timeout_keep_alive": service.keepalive_s,
    }


def run_one(app: Any, settings: Settings, *, host: str, port: int) -> None:
    """One process: the app's drain handles SIGTERM."""
    uvicorn.run(app, host=host, port=port, **uvicorn_options(settings))


def run_workers(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """``workers`` processes of :data:`APP_FACTORY` sharing one listening socket.

    Each worker builds its own settings and pool from the environment. Their metrics meet in a
    fresh multiprocess directory (stale files would be summed in), which also holds the drain
    marker; both paths reach the workers through the environment, as their settings read it.
    """
    root = settings.service.data_dir / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    shared = tempfile.mkdtemp(prefix="http-workers-", dir=root)
    marker = Path(shared) / "draining"
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    os.environ["STOLENTEE_DRAIN_MARKER"] = str(marker)
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # A worker starts in seconds (imports, the model, the pool), longer on a busy machine:
        # a rolling restart waits this long for a replacement before keeping the old worker.
        timeout_worker_healthcheck=WORKER_START_TIMEOUT_S,
        **uvicorn_options(settings),
    )
    try:
        sock = config.bind_socket()
        drain = Drain(drain_s=settings.service.shutdown_drain_s, marker=marker)
        DrainingSupervisor(config, [sock], drain=drain).run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
