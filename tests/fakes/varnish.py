"""Varnish (Debian's ``varnish``) on loopback with the shipped VCL, as the CDN in the tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.fakes.processes import free_port

VARNISHD = shutil.which("varnishd") or "/usr/sbin/varnishd"
VCL = Path(__file__).resolve().parents[2] / "deploy" / "varnish" / "stolentee.vcl"


def available() -> bool:
    return Path(VARNISHD).exists()


@dataclass
class Varnish:
    """``deploy/varnish/stolentee.vcl`` with its backend set to ``backend_port``; ``edit`` may
    change the VCL text further (a test that needs a short TTL)."""

    backend_port: int
    directory: Path
    port: int = field(default_factory=free_port)
    edits: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Varnish:
        text = VCL.read_text().replace('.port = "8000";', f'.port = "{self.backend_port}";')
        for old, new in self.edits.items():
            assert old in text, f"the VCL no longer has {old!r}"
            text = text.replace(old, new)
        vcl = self.directory / "stolentee.vcl"
        vcl.write_text(text)
        log = (self.directory / "varnish.log").open("wb")
        self.process = subprocess.Popen(  # our own command line
            [
                VARNISHD, "-F", "-j", "none", "-a", f"127.0.0.1:{self.port}", "-f", str(vcl),
                "-n", str(self.directory / "varnish"), "-s", "malloc,64m", "-T", "none",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.directory / "varnish.log").read_text()
            try:  # the backend probe must have found the origin healthy
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(
            "Varnish did not start: " + (self.directory / "varnish.log").read_text()
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
