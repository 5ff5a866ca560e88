"""Model files that come in an npm package as content-addressed chunks.

``@imgly/background-removal-data`` ships its models under ``package/dist/``: every chunk is a
file named by its sha256, and ``package/dist/resources.json`` lists, per resource (the fp16 ISNet
is ``/models/medium``), its chunks in order with their byte offsets and the total size. The
package tarball is fetched with the ordinary client (``npm pack``, so npm's registry settings,
proxy and cache apply) or, without npm, downloaded over HTTPS from the registry
(``STOLENTEE_NPM_REGISTRY_URL``). The tarball is read as untrusted input: only regular files
under ``package/`` with the expected names are taken, each chunk is hashed against its name and
its length against its offsets, the offsets must tile the file from 0 to the declared size, and
the caller checks the assembled file's checksum before moving it into place.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stolentee.errors import StolenteeError

_CHUNK = re.compile(r"package/dist/([0-9a-f]{64})")
RESOURCES = "package/dist/resources.json"
MAX_MEMBER_BYTES = 512 * 2**20  # far above any chunk or index of the package
MAX_TARBALL_BYTES = 2 * 2**30


class NpmModelError(StolenteeError):
    code = "model_install_failed"
    title = "Model installation failed"


@dataclass(frozen=True, slots=True)
class NpmSource:
    """Where a model lives in an npm package: the package, its exact version, the resource."""

    package: str  # "@imgly/background-removal-data"
    version: str  # "1.4.5"
    resource: str  # "/models/medium"
    size: int  # the assembled file's bytes, as resources.json declares them

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    def tarball_url(self, registry: str) -> str:
        """The registry's tarball address (``<registry>/<scope>/<name>/-/<name>-<version>.tgz``)."""
        name = self.package.rsplit("/", 1)[-1]
        return f"{registry.rstrip('/')}/{self.package}/-/{name}-{self.version}.tgz"


Reporter = Callable[[str], None]


def fetch_tarball(
    source: NpmSource, workdir: Path, *, registry: str, use_npm: bool | None, report: Reporter
) -> Path:
    """The package tarball in ``workdir``: ``npm pack`` when npm is installed (or ``use_npm``
    says so), else a download from ``registry``."""
    npm = shutil.which("npm")
    if use_npm is None:
        use_npm = npm is not None
    if use_npm:
        if npm is None:
            raise NpmModelError("the npm client is not installed")
        report(f"running npm pack {source.spec}")
        done = subprocess.run(  # noqa: S603 - our own command line, a fixed package spec
            [npm, "pack", source.spec, "--silent", "--pack-destination", str(workdir)],
            capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise NpmModelError(f"npm pack failed: {lines[-1] if lines else 'error'}")
        tarballs = sorted(workdir.glob("*.tgz"))
        if not tarballs:
            raise NpmModelError("npm pack wrote no tarball")
        return tarballs[0]
    url = source.tarball_url(registry)
    report(f"downloading {url}")
    target = workdir / "package.tgz"
    received = 0
    with (
        httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(60.0)) as response,
        target.open("wb") as sink,
    ):
        if response.status_code != 200:
            raise NpmModelError(f"{url} answered HTTP {response.status_code}")
        for block in response.iter_bytes(1 << 20):
            received += len(block)
            if received > MAX_TARBALL_BYTES:
                raise NpmModelError(f"{url} is larger than {MAX_TARBALL_BYTES >> 20} MiB")
            sink.write(block)
    return target


def assemble(source: NpmSource, tarball: Path, dest: Path, *, report: Reporter) -> None:
    """Write ``source.resource`` from the tarball's chunks to ``dest``, every chunk verified."""
    chunks_dir = dest.parent / "chunks"
    chunks_dir.mkdir(exist_ok=True)
    index: dict[str, Any] | None = None
    try:
        with tarfile.open(tarball, mode="r:gz") as archive:
            for member in archive:
                if not member.isreg() or member.size > MAX_MEMBER_BYTES:
                    continue
                if member.name == RESOURCES:
                    handle = archive.extractfile(member)
                    assert handle is not None
                    index = json.loads(handle.read())
                elif (match := _CHUNK.fullmatch(member.name)) is not None:
                    handle = archive.extractfile(member)
                    assert handle is not None
                    with (chunks_dir / match.group(1)).open("wb") as sink:
                        shutil.copyfileobj(handle, sink, 1 << 20)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise NpmModelError(f"the package tarball is unreadable or cut short: {exc}") from None
    if not isinstance(index, dict) or not isinstance(index.get(source.resource), dict):
        raise NpmModelError(f"{RESOURCES} does not list {source.resource}")
    entry = index[source.resource]
    size = entry.get("size")
    if size != source.size:
        raise NpmModelError(f"{source.resource} is {size} bytes, expected {source.size}")
    position = 0
    with dest.open("wb") as sink:
        for chunk in entry.get("chunks", []):
            name, offsets = str(chunk.get("hash", "")), chunk.get("offsets", [])
            if not re.fullmatch(r"[0-9a-f]{64}", name) or len(offsets) != 2:
                raise NpmModelError(f"a malformed chunk entry in {RESOURCES}: {chunk!r}")
            start, end = offsets
            if start != position or end <= start:
                raise NpmModelError(f"chunk {name[:12]}… does not continue at byte {position}")
            path = chunks_dir / name
            if not path.is_file():
                raise NpmModelError(f"chunk {name[:12]}… is missing from the package")
            data = path.read_bytes()
            if len(data) != end - start or hashlib.sha256(data).hexdigest() != name:
                raise NpmModelError(f"chunk {name[:12]}… does not match its sha256 or length")
            sink.write(data)
            position = end
    if position != source.size:
        raise NpmModelError(f"the chunks cover {position} bytes, expected {source.size}")
    shutil.rmtree(chunks_dir, ignore_errors=True)
    report(f"{len(entry['chunks'])} chunks verified (sha256), {position:,} bytes")


def fetch(
    source: NpmSource,
    dest: Path,
    *,
    registry: str,
    use_npm: bool | None = None,
    report: Reporter,
) -> None:
    """Fetch the package and assemble the model at ``dest`` (in a directory of the caller's)."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix="npm-") as tmp:
        tarball = fetch_tarball(
            source, Path(tmp), registry=registry, use_npm=use_npm, report=report
        )
        assemble(source, tarball, dest, report=report)
