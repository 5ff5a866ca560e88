"""Models from an npm package (``stolentee models install isnet``), against a local fake
registry serving a tarball built here: chunks assembled and verified, a corrupt chunk, a cut
tarball and a wrong index refused with nothing written; and the model tiers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stolentee.errors import ConfigurationError
from stolentee.removal import models
from stolentee.removal.model_npm import NpmSource

PACKAGE = "@imgly/background-removal-data"
VERSION = "1.4.5"
CHUNK = 64 * 1024


def build_package(payload: bytes, *, corrupt: bool = False, size: int | None = None) -> bytes:
    """The package tarball: ``payload`` as /models/medium in content-addressed chunks, plus
    another resource and files an attacker might slip in (ignored)."""
    chunks, members = [], {}
    for start in range(0, len(payload), CHUNK):
        data = payload[start : start + CHUNK]
        name = hashlib.sha256(data).hexdigest()
        chunks.append({"hash": name, "offsets": [start, start + len(data)]})
        members[f"package/dist/{name}"] = data
    if corrupt:
        first = chunks[0]["hash"]
        members[f"package/dist/{first}"] = b"X" + members[f"package/dist/{first}"][1:]
    small = os.urandom(1000)
    members[f"package/dist/{hashlib.sha256(small).hexdigest()}"] = small
    index = {
        "/models/medium": {"size": len(payload) if size is None else size, "chunks": chunks},
        "/models/small": {"size": 1000, "chunks": []},
    }
    members["package/dist/resources.json"] = json.dumps(index).encode()
    members["package/package.json"] = json.dumps({"name": PACKAGE, "version": VERSION}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("package/dist/" + "a" * 64)  # a link is never followed
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


class Registry:
    """An npm registry's tarball route on loopback."""

    def __init__(self) -> None:
        self.tarball = b""
        self.paths: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                registry.paths.append(self.path)
                if self.path != f"/{PACKAGE}/-/background-removal-data-{VERSION}.tgz":
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(registry.tarball)))
                self.end_headers()
                self.wfile.write(registry.tarball)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def registry() -> Iterator[Registry]:
    served = Registry()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture
def payload(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The model bytes, and a catalogue entry for them (the real ISNet is 88 MB)."""
    data = os.urandom(5 * CHUNK + 1234)
    spec = models.ModelSpec(
        "fake-isnet", "fake-isnet.onnx", hashlib.md5(data, usedforsecurity=False).hexdigest(),
        0.3, 1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), models.Activation.MINMAX, "",
        "a test model", family=models.Family.ISNET, licence="test",
        npm=NpmSource(package=PACKAGE, version=VERSION, resource="/models/medium", size=len(data)),
    )  # fmt: skip
    monkeypatch.setitem(models.MODELS, "fake-isnet", spec)
    return data


def install(models_dir: Path, registry: Registry) -> Path:
    lines: list[str] = []
    path = models.install(
        models_dir, "fake-isnet", models_url="http://127.0.0.1:9", npm_registry_url=registry.url,
        use_npm=False, report=lines.append,
    )  # fmt: skip
    assert any("licence: test" in line for line in lines)
    return path


def test_the_model_is_assembled_from_its_verified_chunks(
    tmp_path: Path, registry: Registry, payload: bytes
) -> None:
    registry.tarball = build_package(payload)
    models_dir = tmp_path / "models"
    path = install(models_dir, registry)
    assert path == models_dir / "fake-isnet.onnx"
    assert path.read_bytes() == payload
    assert [p.name for p in models_dir.iterdir()] == ["fake-isnet.onnx"]  # no chunks behind
    spec = models.MODELS["fake-isnet"]
    assert models.model_state(models_dir, spec) is models.ModelState.INSTALLED


@pytest.mark.parametrize(
    ("tarball", "why"),
    [
        (lambda data: build_package(data, corrupt=True), "does not match its sha256"),
        (lambda data: build_package(data)[: len(build_package(data)) // 2], "cut short"),
        (lambda data: build_package(data, size=len(data) + 1), "expected"),
        (lambda data: b"not a tarball", "unreadable"),
    ],
)
def test_a_bad_package_is_refused_and_nothing_is_written(
    tmp_path: Path, registry: Registry, payload: bytes, tarball: Any, why: str
) -> None:
    registry.tarball = tarball(payload)
    models_dir = tmp_path / "models"
    with pytest.raises(models.ModelInstallError, match=why):
        install(models_dir, registry)
    assert list(models_dir.iterdir()) == []


def test_a_registry_without_the_package_is_a_clear_error(
    tmp_path: Path, registry: Registry, payload: bytes
) -> None:
    registry.tarball = build_package(payload)
    with pytest.raises(models.ModelInstallError, match="HTTP 404"):
        models.install(
            tmp_path / "models", "fake-isnet", models_url="http://127.0.0.1:9",
            npm_registry_url=registry.url + "/elsewhere", use_npm=False,
        )  # fmt: skip


def test_the_tarball_url_is_the_registrys() -> None:
    source = models.MODELS["isnet"].npm
    assert source is not None
    assert source.tarball_url("https://registry.npmjs.org/") == (
        "https://registry.npmjs.org/@imgly/background-removal-data/-/"
        "background-removal-data-1.4.5.tgz"
    )
    assert source.size == 88_188_479


def test_tiers_resolve_to_the_best_installed_model(tmp_path: Path) -> None:
    assert models.resolve(tmp_path, "fast") == "u2netp"
    assert models.resolve(tmp_path, "u2net") == "u2net"
    with pytest.raises(models.ModelNotInstalledError, match="models install isnet"):
        models.resolve(tmp_path, "quality")
    (tmp_path / "birefnet-general.onnx").write_bytes(b"x")
    assert models.resolve(tmp_path, "quality") == "birefnet-general"
    (tmp_path / "isnet-fp16.onnx").write_bytes(b"x")
    assert models.resolve(tmp_path, "quality") == "isnet"
    with pytest.raises(ConfigurationError, match="unknown model 'nope'"):
        models.resolve(tmp_path, "nope")
    assert models.tier_of("u2netp") is models.Tier.FAST
    assert models.tier_of("isnet") is models.Tier.QUALITY
    assert models.tier_of("u2net") is None


def test_every_model_names_its_family_normalisation_and_licence() -> None:
    for spec in models.MODELS.values():
        assert spec.licence
        if spec.family is models.Family.ISNET:
            assert (spec.mean, spec.std, spec.input_size) == ((0.5,) * 3, (1.0,) * 3, 1024)
        if spec.family is models.Family.BIREFNET:
            assert spec.activation is models.Activation.SIGMOID and spec.input_size == 1024
    assert "AGPL-3.0" in models.MODELS["isnet"].licence
    assert "non-commercial" in models.MODELS["isnet"].licence
