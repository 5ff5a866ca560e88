"""A real CDN in front of a running instance: Varnish with ``deploy/varnish/stolentee.vcl``.

Checked: files are cached (hit ratio over a repeated access pattern), a client's
``If-None-Match`` gets 304 from the cache, a stale upload is served at once and revalidated
in the background with a 304 from the origin (stale-while-revalidate), and is served while the
origin is down; and a deleted design's original and cutout disappear from the CDN within 5 s
(the purge job the DELETE queues), with the purge counted in ``/metrics``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import varnish
from tests.fakes.processes import StolenteeProcess, free_port

from ..removal.conftest import composite, draw_logo, encode

pytestmark = pytest.mark.skipif(not varnish.available(), reason="varnish is not installed")
PURGE_GOAL_S = 5.0
# The shipped TTLs are a day and a week; this edit lets the test see an upload go stale.
SHORT_TTL = {
    "        # Kept past TTL and grace for a conditional fetch (ETag): a 304 refreshes it.": (
        "        set beresp.ttl = 1s;\n"
        "        # Kept past TTL and grace for a conditional fetch (ETag): a 304 refreshes it."
    )
}


def start_origin(tmp_path: Path, varnish_port: int) -> StolenteeProcess:
    return StolenteeProcess(
        ["serve"],
        {
            "STOLENTEE_DATA_DIR": str(tmp_path / "data"),
            "STOLENTEE_CDN_PURGE_BACKEND": "varnish",
            "STOLENTEE_CDN_PURGE_URL": f"http://127.0.0.1:{varnish_port}",
        },
        tmp_path / "origin.log",
    ).start()


@pytest.fixture
def cdn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    edits = getattr(request, "param", {})
    varnish_port = free_port()
    origin = start_origin(tmp_path, varnish_port)
    cache = varnish.Varnish(origin.port, tmp_path, port=varnish_port, edits=edits)
    try:
        cache.start()
        yield origin, cache
    finally:
        cache.stop()
        origin.stop()


def upload_design(origin: StolenteeProcess, seed: int = 0) -> dict[str, Any]:
    logo = encode(composite(draw_logo((160 + seed, 100)), (255, 255, 255)))
    created = httpx.post(f"{origin.url}/v1/designs", files={"file": ("logo.png", logo)}, timeout=30)
    assert created.status_code == 202, created.text
    design_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(f"{origin.url}/v1/designs/{design_id}", timeout=10).json()
        if body["status"] == "done":
            return body
        assert body["status"] != "failed", body
        time.sleep(0.2)
    raise AssertionError("the design did not finish")


def metric(origin: StolenteeProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{origin.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_files_are_cached_and_revalidated_and_a_deleted_design_leaves_the_cdn(
    cdn: tuple[StolenteeProcess, varnish.Varnish],
) -> None:
    origin, cache = cdn
    design = upload_design(origin)
    paths = [design["original"]["url"], design["cutout"]["url"]]
    assert all(path.startswith(("/uploads/", "/assets/")) for path in paths)
    with httpx.Client(base_url=cache.url, timeout=10) as client:
        for path in paths:
            first, second = client.get(path), client.get(path)
            assert (first.status_code, second.status_code) == (200, 200)
            assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
            assert second.content == first.content
            cached = client.get(path, headers={"If-None-Match": first.headers["etag"]})
            assert cached.status_code == 304 and cached.headers["x-cache"] == "HIT"

        deleted = httpx.delete(f"{origin.url}/v1/designs/{design['id']}", timeout=10)
        assert deleted.status_code == 204
        started = time.monotonic()
        while any(client.get(path).status_code != 404 for path in paths):
            assert time.monotonic() - started < PURGE_GOAL_S, "still served by the CDN"
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        gone = client.get(paths[0])
        assert gone.headers["cache-control"] == "no-store"  # and the 404 is not cached
        assert client.get(paths[0]).headers["x-cache"] == "MISS"
    print(f"purged from the CDN {elapsed:.2f} s after the DELETE")
    assert metric(origin, "stolentee_cdn_purges_total", backend="varnish", outcome="ok") >= 1
    assert metric(origin, "stolentee_cdn_purged_urls_total", backend="varnish") >= 2


def test_a_repeated_access_pattern_is_served_from_the_cache(
    cdn: tuple[StolenteeProcess, varnish.Varnish],
) -> None:
    origin, cache = cdn
    designs = [upload_design(origin, seed) for seed in range(5)]
    paths = [d[part]["url"] for d in designs for part in ("original", "cutout")]
    hits = total = 0
    with httpx.Client(base_url=cache.url, timeout=10) as client:
        for n in range(400):
            response = client.get(paths[(n * 7) % len(paths)])
            assert response.status_code == 200
            total += 1
            hits += response.headers["x-cache"] == "HIT"
    assert hits / total >= 0.9  # one miss per object, 10 objects


@pytest.mark.parametrize("cdn", [SHORT_TTL], indirect=True)
def test_a_stale_upload_is_served_at_once_and_revalidated_and_outlives_the_origin(
    cdn: tuple[StolenteeProcess, varnish.Varnish],
) -> None:
    origin, cache = cdn
    path = upload_design(origin)["original"]["url"]
    route = {"method": "GET", "route": "/uploads/{key:path}"}
    with httpx.Client(base_url=cache.url, timeout=10) as client:
        assert client.get(path).headers["x-cache"] == "MISS"
        time.sleep(1.5)  # past the (shortened) TTL, well inside stale-while-revalidate
        revalidations = metric(origin, "stolentee_http_requests_total", status="304", **route)
        stale = client.get(path)
        assert stale.status_code == 200 and stale.headers["x-cache"] == "HIT"
        assert int(stale.headers["age"]) >= 1  # served stale, at once
        deadline = time.monotonic() + 10
        while (
            metric(origin, "stolentee_http_requests_total", status="304", **route) <= revalidations
        ):
            assert time.monotonic() < deadline, "no background revalidation reached the origin"
            time.sleep(0.2)

        origin.stop()  # the origin goes away: the CDN goes on serving the upload from grace
        time.sleep(1.5)
        served = client.get(path)
        assert served.status_code == 200 and served.headers["x-cache"] == "HIT"
