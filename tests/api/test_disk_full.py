"""A full disk, for real (issue 23, item 2): a running server whose data directory is a tmpfs
of a few MiB, filled with zeros while it serves.

Wanted: 507 ``insufficient_storage`` without internal paths, ``DELETE`` still works (the disk
reserve), ``/readyz`` 503 and ``/health/detailed`` unhealthy below ``STOLENTEE_MIN_FREE_DISK_MB``,
a metric, and full service again once space is back; nothing stored before is lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.processes import StolenteeProcess
from tests.fakes.tmpfs import fill, free_bytes, inside, tmpfs_prefix, tmpfs_unavailable

from ..removal.conftest import composite, draw_logo, encode

KEY = "st_disk_full_key"
HEADERS = {"X-Api-Key": KEY}
LOGO = encode(composite(draw_logo(), (255, 255, 255)))
TMPFS_MB = 24

_UNAVAILABLE = tmpfs_unavailable()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=f"no tmpfs: {_UNAVAILABLE}")


def _server(tmp_path: Path, min_free_mb: int) -> StolenteeProcess:
    data = tmp_path / "data"
    data.mkdir()
    return StolenteeProcess(
        args=["serve"],
        env={
            "STOLENTEE_DATA_DIR": str(data),
            "STOLENTEE_API_KEYS": KEY,
            "STOLENTEE_MIN_FREE_DISK_MB": str(min_free_mb),
            "STOLENTEE_JOB_RETRY_BACKOFF_S": "0.5",
            "STOLENTEE_JOB_STALL_BACKOFF_MAX_S": "1",
        },
        log_path=tmp_path / "serve.log",
        prefix=tmpfs_prefix(data, TMPFS_MB),
    )


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StolenteeProcess]:
    process = _server(tmp_path, request.param).start()
    try:
        yield process
    finally:
        process.stop()


def upload(client: httpx.Client, data: bytes = LOGO) -> httpx.Response:
    return client.post("/v1/designs", files={"file": ("logo.png", data)}, headers=HEADERS)


def wait_done(client: httpx.Client, design_id: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/designs/{design_id}", headers=HEADERS).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"design {design_id} did not finish: {body}")


def _pid(server: StolenteeProcess) -> int:
    assert server.process is not None
    return server.process.pid


@pytest.mark.parametrize("server", [0], indirect=True)
def test_a_full_disk_refuses_uploads_with_507_and_still_deletes(
    server: StolenteeProcess, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        kept = wait_done(client, upload(client).json()["id"])
        doomed = wait_done(client, upload(client, encode(draw_logo())).json()["id"])
        assert kept["status"] == doomed["status"] == "done"

        fill(_pid(server), data / "filler")
        assert free_bytes(_pid(server), data) < 64 * 1024
        refused = upload(client)
        assert refused.status_code == 507, refused.text
        error = refused.json()["errors"][0]
        assert error["code"] == "insufficient_storage"
        assert str(data) not in refused.text and "/tmp" not in refused.text

        deleted = client.delete(f"/v1/designs/{doomed['id']}", headers=HEADERS)
        assert deleted.status_code == 204, deleted.text
        assert client.get(f"/v1/designs/{doomed['id']}", headers=HEADERS).status_code == 404

        inside(_pid(server), "rm", "-f", str(data / "filler"))
        again = upload(client)
        assert again.status_code == 202, again.text
        assert wait_done(client, again.json()["id"])["status"] == "done"
        # What was stored before the disk filled up is intact.
        survivor = client.get(f"/v1/designs/{kept['id']}", headers=HEADERS).json()
        assert survivor["status"] == "done"
        cutout = client.get(survivor["cutout"]["url"])
        assert cutout.status_code == 200 and cutout.content.startswith(b"\x89PNG")


@pytest.mark.parametrize("server", [4], indirect=True)
def test_below_the_floor_readiness_and_health_fail_and_the_metric_says_so(
    server: StolenteeProcess, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/readyz").status_code == 200
        assert 'stolentee_disk_low{volume="data"} 0.0' in client.get("/metrics").text
        fill(_pid(server), data / "filler")

        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["disk:free"][0]["status"] == "fail"
        health = client.get("/health/detailed")
        assert health.status_code == 503
        assert health.json()["storage"]["disk"]["status"] == "fail"
        assert 'stolentee_disk_low{volume="data"} 1.0' in client.get("/metrics").text
        refused = upload(client)
        assert refused.status_code == 507
        assert "low on disk space" in refused.json()["errors"][0]["detail"]

        inside(_pid(server), "rm", "-f", str(data / "filler"))
        assert client.get("/readyz").status_code == 200
        assert client.get("/health/detailed").json()["storage"]["disk"]["status"] == "pass"
