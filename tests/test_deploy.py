"""The shipped deployment files agree with the service's shutdown: the platform waits longer
after SIGTERM than the drain plus the in-flight deadline, traffic goes only to ready instances,
and a rollout never takes an instance away before its replacement is ready."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from stolentee.config import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
SHUTDOWN_MARGIN_S = 10  # the lifespan's shutdown: the in-process worker hands jobs back (8 s)


def shutdown_s(env: dict[str, str]) -> float:
    defaults = ServiceSettings()
    drain = float(env.get("STOLENTEE_SHUTDOWN_DRAIN_S", defaults.shutdown_drain_s))
    timeout = float(env.get("STOLENTEE_SHUTDOWN_TIMEOUT_S", defaults.shutdown_timeout_s))
    return drain + timeout + SHUTDOWN_MARGIN_S


@pytest.mark.parametrize("name", ["railway.toml", "railway.removal-service.toml"])
def test_railway_overlaps_deploys_and_waits_for_the_drain(name: str) -> None:
    deploy = tomllib.loads((ROOT / name).read_text())["deploy"]
    assert deploy["overlapSeconds"] >= 5
    assert deploy["drainingSeconds"] >= shutdown_s({})
    assert deploy["healthcheckPath"] in ("/health", "/readyz")


def deployment(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "kubernetes" / name).read_text())
    return loaded


@pytest.mark.parametrize("name", ["api.yaml", "worker.yaml"])
def test_kubernetes_rolls_one_ready_pod_at_a_time_and_waits_for_the_drain(name: str) -> None:
    spec = deployment(name)["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    if name == "worker.yaml":  # a worker takes no traffic: it does not drain, it stops leasing
        env.setdefault("STOLENTEE_SHUTDOWN_DRAIN_S", "0")
    assert pod["terminationGracePeriodSeconds"] >= shutdown_s(env)


def test_the_api_pod_takes_traffic_only_when_ready() -> None:
    (container,) = deployment("api.yaml")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    probe = container["readinessProbe"]
    detection_s = probe["periodSeconds"] * probe["failureThreshold"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert float(env["STOLENTEE_SHUTDOWN_DRAIN_S"]) > detection_s  # noticed within the drain
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_the_migrations_job_runs_db_upgrade() -> None:
    job = deployment("migrations.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["stolentee", "db", "upgrade"]
