"""One deadline for a whole fetch: every socket operation of every hop counts against it, and a
watchdog aborts the sockets when it passes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Final

from stolentee.errors import (
    ImageDownloadTimeoutError,
)

if TYPE_CHECKING:
    pass


_SOCKET_EVENTS: Final = frozenset(
    {"connection.connect_tcp.complete", "connection.start_tls.complete"}
)


class Deadline:
    """The time budget of one fetch, and the watchdog that enforces it on blocked sockets.

    Per-operation timeouts alone do not bound a fetch: a server may dribble its status line and
    headers one byte at a time, each read well within the read timeout, while httpcore keeps
    reading until the headers are complete. So when the budget runs out a timer thread shuts down
    every socket this fetch opened, which wakes any read blocked on it. Sockets are learnt through
    httpcore's documented ``trace`` request extension (the ``connect_tcp`` / ``start_tls`` events
    return the network stream, whose ``get_extra_info("socket")`` is the socket).
    """

    def __init__(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True
        self._timer.name = "stolentee-fetch-watchdog"
        self._timer.start()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self.deadline

    def remaining(self) -> float:
        """Seconds left; raises :class:`ImageDownloadTimeoutError` when there are none."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0 or self._fired:
            raise ImageDownloadTimeoutError(
                "Downloading the image took longer than the time allowed."
            )
        return remaining

    def trace(self, event: str, info: dict[str, object]) -> None:
        """httpcore ``trace`` hook: remember each socket as soon as it exists."""
        if event not in _SOCKET_EVENTS:
            return
        get_extra_info = getattr(info.get("return_value"), "get_extra_info", None)
        sock = get_extra_info("socket") if callable(get_extra_info) else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if not self._fired:
                self._sockets.append(sock)
                return
        _abort(sock)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _abort(sock)

    def stop(self) -> None:
        self._timer.cancel()


def _abort(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the latter also drops the TLS object that
    # the reading thread may be using. Shutting down the descriptor wakes that thread with EOF.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
