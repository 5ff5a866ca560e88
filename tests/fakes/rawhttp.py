"""A tiny scripted HTTP/1.1 server on loopback for the wire tests: each request read off a
connection is answered with the next :class:`Answer` of the script, sent exactly as written
(malformed too), in pieces, or not at all."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Answer:
    data: bytes = b""
    pieces: int = 1  # sent in this many writes, a pause between (the client reads them apart)
    close_after: bool = False  # close the connection once sent
    drop: bool = False  # close the connection instead of answering
    hang: bool = False  # never answer (until the server stops)
    early: bool = False  # answer before reading the request's body, then close


def ok(body: bytes = b"", *headers: str, status: str = "200 OK") -> Answer:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{header}\r\n" for header in headers)
    return Answer((head + "\r\n").encode() + body)


@dataclass
class Received:
    connection: int  # which connection (0, 1, ...) it came on
    head: bytes  # request line and headers, as received
    body: bytes

    @property
    def line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode()


@dataclass
class RawServer:
    """Answers requests from ``script`` in order (its last answer repeats); ``answer`` may be
    set instead to compute each answer from the request."""

    script: list[Answer] = field(default_factory=list)
    answer: Callable[[Received], Answer] | None = None
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.received: list[Received] = []
        self.connections = 0
        self.closed = threading.Event()  # set whenever the server closed a connection
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                number = self.connections
                self.connections += 1
                self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock, number), daemon=True).start()

    def _next(self, request: Received) -> Answer:
        with self.lock:
            self.received.append(request)
            if self.answer is not None:
                return self.answer(request)
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = sock.makefile("rb")
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = Received(number, head, b"")
                answer = self._next(request)
                if not answer.early and length:
                    request.body = reader.read(length)
                if answer.drop:
                    return
                if answer.hang:
                    self.stop.wait()
                    return
                size = max(1, -(-len(answer.data) // answer.pieces))
                for start in range(0, len(answer.data), size):
                    sock.sendall(answer.data[start : start + size])
                    if answer.pieces > 1:
                        time.sleep(0.002)
                if answer.close_after or answer.early:
                    return
        except (OSError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            self.closed.set()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        with self.lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def self_signed_certificate(folder: Path, names: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (a subjectAltName value), made with the openssl
    command (skips when there is none)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a self-signed certificate with")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    command += ["-nodes", "-days", "2", "-subj", "/CN=stolentee test", "-addext"]
    command += [f"subjectAltName={names}", "-keyout", str(key), "-out", str(cert)]
    made = subprocess.run(command, capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made.stderr.decode()[-300:]}")
    return cert, key
