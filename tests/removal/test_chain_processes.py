"""The provider chain with real processes: a main stolentee, a standalone removal service
(``stolentee removal-service``) at ``REMBG_ENDPOINT``, and a third stolentee standing in for
Remove.bg (our API is Remove.bg-compatible) at ``REMOVEBG_API_URL``, behind a fault-injecting
proxy. Killing a process is a real SIGKILL; restarting it a real start-up.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes.faultproxy import FaultProxy
from tests.fakes.processes import STOLENTEE, StolenteeProcess, clean_environment

from .conftest import composite, draw_logo, encode

LOGO = encode(composite(draw_logo((300, 200)), (255, 255, 255)))
SHOP_KEY = "st_shop_static_key"
SERVICE_KEY = "st_removal_service_key"
REMOVEBG_KEY = "removebg-standin-key"
OUT_OF_CREDITS = {
    "errors": [{"title": "Insufficient credits", "code": "insufficient_credits", "detail": "0"}]
}


@dataclass
class Cluster:
    main: StolenteeProcess
    service: StolenteeProcess
    standin: StolenteeProcess
    service_proxy: FaultProxy
    standin_proxy: FaultProxy
    premium_key: str

    def remove(self, key: str = SHOP_KEY) -> httpx.Response:
        return httpx.post(
            f"{self.main.url}/v1.0/removebg",
            files={"image_file": ("logo.png", LOGO, "image/png")},
            data={"size": "auto"},
            headers={"X-Api-Key": key},
            timeout=60,
        )

    def health(self) -> dict[str, object]:
        body: dict[str, object] = httpx.get(f"{self.main.url}/health/detailed", timeout=10).json()
        return body

    def provider(self, name: str) -> dict[str, object]:
        removal = self.health()["removal"]
        assert isinstance(removal, dict)
        return next(entry for entry in removal["providers"] if entry["name"] == name)


def _warm_up(process: StolenteeProcess, key: str) -> None:
    """One removal straight to a new process (not through its proxy, so nothing is counted):
    its first request pays for lazy imports, which on a loaded machine can take longer than the
    main service's 3 s read timeout and would send the test's first request elsewhere."""
    response = httpx.post(
        f"{process.url}/v1.0/removebg",
        files={"image_file": ("logo.png", LOGO, "image/png")},
        headers={"X-Api-Key": key},
        timeout=60,
    )
    assert response.status_code == 200, response.text


def _create_premium_key(data_dir: Path) -> str:
    env = {**clean_environment(), "STOLENTEE_DATA_DIR": str(data_dir)}
    done = subprocess.run(  # our own CLI
        [STOLENTEE, "keys", "create", "premium-shop", "--premium"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    standin = StolenteeProcess(
        ["serve", "--no-worker"],
        {"STOLENTEE_DATA_DIR": str(tmp_path / "standin"), "STOLENTEE_API_KEYS": REMOVEBG_KEY},
        tmp_path / "standin.log",
    )
    service = StolenteeProcess(
        ["removal-service"],
        {"STOLENTEE_DATA_DIR": str(tmp_path / "service"), "STOLENTEE_API_KEYS": SERVICE_KEY},
        tmp_path / "service.log",
    )
    started: list[StolenteeProcess] = []
    proxies: list[FaultProxy] = []
    try:
        for process, key in ((standin, REMOVEBG_KEY), (service, SERVICE_KEY)):
            started.append(process.start())
            _warm_up(process, key)
        standin_proxy = FaultProxy(standin.url).start()
        service_proxy = FaultProxy(service.url).start()
        proxies += [standin_proxy, service_proxy]
        main_dir = tmp_path / "main"
        premium_key = _create_premium_key(main_dir)
        main = StolenteeProcess(
            ["serve", "--no-worker"],
            {
                "STOLENTEE_DATA_DIR": str(main_dir),
                "STOLENTEE_API_KEYS": SHOP_KEY,
                "REMBG_ENDPOINT": service_proxy.url,
                "REMBG_API_KEY": SERVICE_KEY,
                "REMOVEBG_API_URL": f"{standin_proxy.url}/v1.0",
                "REMOVEBG_API_KEY": REMOVEBG_KEY,
                "PREMIUM_USES_REMOVEBG": "true",
                # Premium callers without a local quality tier (whether or not this machine has
                # one installed): Remove.bg first.
                "STOLENTEE_PREMIUM_MODEL": "",
                "STOLENTEE_BREAKER_FAILURES": "2",
                "STOLENTEE_BREAKER_COOLDOWN_S": "2",
                "STOLENTEE_PROVIDER_PROBE_INTERVAL_S": "0.3",
                "STOLENTEE_PROVIDER_MAX_ATTEMPTS": "2",
                "STOLENTEE_PROVIDER_RETRY_BACKOFF_S": "0.05",
                "STOLENTEE_PROVIDER_CONNECT_TIMEOUT_S": "1",
                "STOLENTEE_PROVIDER_READ_TIMEOUT_S": "3",
            },
            tmp_path / "main.log",
        )
        started.append(main.start())
        yield Cluster(main, service, standin, service_proxy, standin_proxy, premium_key)
    finally:
        for process in reversed(started):
            process.stop()
        for proxy in proxies:
            proxy.stop()


def _wait_for(condition: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_fallback_recovery_premium_and_out_of_credits(cluster: Cluster) -> None:
    served: Counter[str] = Counter()
    credits: Counter[str] = Counter()

    def remove(key: str = SHOP_KEY) -> str:
        response = cluster.remove(key)
        assert response.status_code == 200, response.text  # never an error for the client
        provider = response.headers["X-Removal-Provider"]
        served[provider] += 1
        credits[provider] += float(response.headers["X-Credits-Charged"])
        return provider

    # The normal path: the removal service; premium callers go to Remove.bg first.
    assert remove() == "rembg-service"
    assert remove(cluster.premium_key) == "removebg"
    assert cluster.standin_proxy.count("/v1.0/removebg") == 1
    assert cluster.health()["infrastructure"]["rembgSelfHosted"] is True  # type: ignore[index]

    # The removal service dies: requests fall back to Remove.bg, none fails, and once the
    # breaker is open the dead service costs no attempt.
    cluster.service.kill()
    for _ in range(6):
        assert remove() == "removebg"
    assert cluster.provider("rembg-service")["state"] in ("open", "half_open")
    assert cluster.health()["infrastructure"]["rembgSelfHosted"] is False  # type: ignore[index]

    # It comes back: the probes see it, the breaker closes, traffic returns to it.
    cluster.service.start()
    _wait_for(
        lambda: cluster.provider("rembg-service")["state"] != "open",
        "the probe to half-open the breaker",
    )
    deadline = time.monotonic() + 30
    while remove() != "rembg-service":
        assert time.monotonic() < deadline, "traffic did not return to the removal service"
    assert cluster.provider("rembg-service")["state"] == "closed"
    assert cluster.health()["infrastructure"]["rembgSelfHosted"] is True  # type: ignore[index]

    # Remove.bg runs out of credits (402): premium requests fall back to the service, and the
    # out-of-credits provider is left alone afterwards.
    cluster.standin_proxy.status(402, body=OUT_OF_CREDITS, path_prefix="/v1.0/removebg")
    before = cluster.standin_proxy.count("/v1.0/removebg")
    assert remove(cluster.premium_key) == "rembg-service"
    assert cluster.standin_proxy.count("/v1.0/removebg") == before + 1
    assert remove(cluster.premium_key) == "rembg-service"
    assert cluster.standin_proxy.count("/v1.0/removebg") == before + 1  # breaker: not asked
    removebg = cluster.provider("removebg")
    assert removebg["state"] == "open"
    assert "credit" in str(removebg["reason"]).lower()
    assert "ALERT" in cluster.main.log_path.read_text()

    # The statistics count every path exactly as the clients saw it.
    stats = httpx.get(
        f"{cluster.main.url}/v1/stats/removal", headers={"X-Api-Key": SHOP_KEY}, timeout=10
    ).json()
    by_name = {entry["provider"]: entry for entry in stats["providers"]}
    assert by_name["rembg-service"]["successes"] == served["rembg-service"]
    assert by_name["removebg"]["successes"] == served["removebg"]
    assert by_name["removebg"]["failures_by_kind"]["out_of_credits"] == 1
    # The dead service behind the proxy: the proxy answers 502 for it. At least the failures
    # that opened the breaker; probes are not counted, nor skipped (breaker-open) requests.
    service_failures = by_name["rembg-service"]["failures_by_kind"]
    assert service_failures["server_error"] + service_failures["connect"] >= 2
    assert by_name["rembg-service"]["failures"] == sum(service_failures.values())
    assert by_name["removebg"]["credits_charged"] == pytest.approx(credits["removebg"])
    assert by_name["rembg-service"]["credits_avoided"] == pytest.approx(credits["rembg-service"])
    assert by_name["rembg-service"]["credits_charged"] == 0
    assert stats["totals"]["successes"] == sum(served.values())


def test_faults_between_the_services_never_reach_the_client(cluster: Cluster) -> None:
    statuses: Counter[int] = Counter()
    removal = "/v1.0/removebg"
    for mode in ("slow", "intermittent", "drop"):
        if mode == "slow":
            cluster.service_proxy.slow(5.0, path_prefix=removal)  # past the 3 s read timeout
        elif mode == "intermittent":
            cluster.service_proxy.error(502, every_nth=2, path_prefix=removal)
        else:
            cluster.service_proxy.drop(path_prefix=removal)
        for _ in range(3):
            statuses[cluster.remove().status_code] += 1
    assert statuses == Counter({200: 9})

    # With every provider down, a clear 503 with Retry-After, never a hang or a 500.
    cluster.standin.kill()
    cluster.service_proxy.error(503, path_prefix=removal)
    response = cluster.remove()
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["errors"][0]["code"] == "no_removal_provider"
    cluster.service_proxy.pass_through()
    _wait_for(lambda: cluster.remove().status_code == 200, "the service to be used again")
