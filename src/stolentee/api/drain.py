"""Graceful drain on SIGTERM: leave the load balancer's rotation first, then stop.

On SIGTERM an HTTP process does not stop at once. It answers ``/readyz`` with 503 straight away
and goes on accepting and serving for ``STOLENTEE_SHUTDOWN_DRAIN_S``, every response carrying
``Connection: close`` so that keep-alive clients (a load balancer's pooled connections
included) reconnect, and are sent elsewhere. When the drain is over it lets uvicorn's graceful
shutdown run: stop accepting, finish what is in flight within ``STOLENTEE_SHUTDOWN_TIMEOUT_S``,
run the lifespan's shutdown (the in-process worker hands its jobs back). A second SIGTERM, or
SIGINT, stops at once.

:class:`Drain` wraps the handler uvicorn installed for SIGTERM (it is read back from the
``signal`` module when the app starts, in the main thread, so a plain ``uvicorn.run`` and every
worker of a multi-process server get the same behaviour without a server subclass of ours in
each worker). With ``STOLENTEE_HTTP_WORKERS`` > 1 the parent process drains for the whole server
(:mod:`stolentee.api.serving`): it writes the marker file ``STOLENTEE_DRAIN_MARKER`` that the
workers read, waits, and then stops them. A worker that gets SIGTERM itself (the whole process
group was signalled) therefore waits briefly for the parent's marker and, if it comes, leaves the
timing to the parent; if none comes, it is being replaced alone (a SIGHUP rolling restart, its
siblings keep serving) and stops then, without failing ``/readyz`` for the server. While it waits
its responses already close their connections, so that the load balancer's pooled connections
to it end cleanly, not in a race between a new request and the close.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any]
# How long a worker of a multi-process server waits for its parent's marker after a SIGTERM:
# the parent handles signals every 0.5 s.
PARENT_MARKER_WAIT_S = 2.0
MARKER_CHECK_EVERY_S = 0.2


class Drain:
    """Whether this process is draining, and the SIGTERM handling that starts it."""

    def __init__(
        self,
        *,
        drain_s: float,
        marker: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drain_s = drain_s
        self.marker = marker  # set in the workers of a multi-process server
        self._clock = clock
        self._own = False  # this process started draining itself
        self._closing = False  # stopping soon: responses close their connections
        self._stopping = False
        self._marker_seen = False
        self._marker_checked_at = -1e9
        self._server_handler: Handler | None = None
        self._lock = threading.RLock()  # a second signal may arrive inside the handler

    @property
    def draining(self) -> bool:
        if self._own or self._marker_seen:
            return True
        if self.marker is None:
            return False
        now = self._clock()
        if now - self._marker_checked_at >= MARKER_CHECK_EVERY_S:  # a stat, not every request
            self._marker_checked_at = now
            self._marker_seen = self.marker.exists()
        return self._marker_seen

    @property
    def closing(self) -> bool:
        """Responses should carry ``Connection: close`` (draining, or about to stop)."""
        return self._closing or self.draining

    def begin(self) -> None:
        """Start draining (``/readyz`` 503, ``Connection: close``); the parent of a
        multi-process server also writes the marker its workers read."""
        self._own = True
        if self.marker is not None:
            self.marker.touch()

    # --- signals ---------------------------------------------------------------------------

    def install(self) -> bool:
        """Wrap the server's SIGTERM handler (main thread only; False elsewhere, e.g. tests)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return False
        self._server_handler = previous
        signal.signal(signal.SIGTERM, self._on_sigterm)
        return True

    def uninstall(self) -> None:
        if (
            self._server_handler is not None
            and threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGTERM, self._server_handler)
            self._server_handler = None

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        with self._lock:
            again, self._stopping = self._stopping, True
        if again or self.drain_s <= 0:
            self._stop(sig)
            return
        if self.marker is None:
            self.begin()
            log.info(
                "SIGTERM: draining for %.0f s (/readyz answers 503), then finishing requests "
                "in flight", self.drain_s,
            )  # fmt: skip
            timer = threading.Timer(self.drain_s, self._stop, (sig,))
            timer.daemon = True  # a server stopped otherwise meanwhile need not wait for it
            timer.start()
            return
        if self.marker.exists():  # the parent's drain is over: it is stopping us
            self._stop(sig)
            return
        self._closing = True
        threading.Thread(target=self._await_parent, args=(sig,), daemon=True).start()

    def _await_parent(self, sig: int) -> None:
        assert self.marker is not None
        deadline = self._clock() + PARENT_MARKER_WAIT_S
        while self._clock() < deadline:
            if self.marker.exists():
                with self._lock:
                    self._stopping = False  # the parent signals again when its drain ends
                return
            time.sleep(0.05)
        log.info("SIGTERM without the server draining: this worker alone is replaced")
        self._stop(sig)

    def _stop(self, sig: int) -> None:
        handler = self._server_handler
        if handler is not None:
            handler(sig, None)


class ConnectionCloseWhileDraining:
    """ASGI middleware: while draining or about to stop, every response says
    ``Connection: close``."""

    def __init__(self, app: ASGIApp, *, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.drain.closing:
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
