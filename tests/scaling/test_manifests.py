"""The HPA and KEDA ScaledObject parse as YAML and carry the policy's numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from huey.storage import RedisStorage
from typer.testing import CliRunner

from stolentee.cli.autoscale import autoscale_app
from stolentee.config import ScalingSettings
from stolentee.jobs.transport import QUEUE_NAME
from stolentee.scaling import manifests as m
from stolentee.scaling.policy import API, WORKER, Policy

yaml = pytest.importorskip("yaml")
runner = CliRunner()


def documents(settings: ScalingSettings, targets: m.Targets | None = None) -> dict[str, Any]:
    policy = Policy.from_settings(settings, worker_concurrency=2)
    found = m.manifests(policy.services, targets)
    return {manifest.filename: yaml.safe_load(manifest.text()) for manifest in found}


def test_the_queue_list_is_huey_s_redis_list_of_our_queue() -> None:
    assert m.QUEUE_NAME == QUEUE_NAME
    storage = RedisStorage(name=QUEUE_NAME, url="redis://127.0.0.1:9/0")  # never connects
    assert m.HUEY_LIST_KEY == storage.queue_key == "huey.redis.stolentee"


def test_hpa_carries_the_seed_policy() -> None:
    hpa = documents(ScalingSettings())["hpa-api.yaml"]
    assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "stolentee-api",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 5)
    targets = {
        metric["resource"]["name"]: metric["resource"]["target"] for metric in spec["metrics"]
    }
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 70},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 600  # the shorter sustained window (memory)
    assert up["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 600}]
    assert down["stabilizationWindowSeconds"] == 300
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]


def test_scaled_object_carries_the_queue_target() -> None:
    keda = documents(ScalingSettings())["keda-worker.yaml"]
    assert (keda["apiVersion"], keda["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = keda["spec"]
    assert spec["scaleTargetRef"]["name"] == "stolentee-worker"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 5)
    assert (spec["cooldownPeriod"], spec["pollingInterval"]) == (300, 30)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"] == {
        "addressFromEnv": "REDIS_ADDRESS",
        "listName": "huey.redis.stolentee",
        "listLength": "20",  # KEDA's metadata values are strings
        "databaseIndex": "0",
    }
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0  # the queue acts at once
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_other_settings_give_other_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "STOLENTEE_SCALE_CPU_PERCENT": "65",
        "STOLENTEE_SCALE_MEMORY_PERCENT": "75",
        "STOLENTEE_SCALE_CPU_WINDOW_S": "300",
        "STOLENTEE_SCALE_MEMORY_WINDOW_S": "480",
        "STOLENTEE_SCALE_MIN_REPLICAS": "2",
        "STOLENTEE_SCALE_MAX_REPLICAS": "9",
        "STOLENTEE_SCALE_QUEUE_PER_WORKER": "8",
        "STOLENTEE_SCALE_UP_STEP": "2",
        "STOLENTEE_SCALE_DOWN_STABILISATION_S": "120",
    }.items():
        monkeypatch.setenv(name, value)
    targets = m.Targets(namespace="shop", redis_address="redis:6379", redis_password_env="PW")
    found = documents(ScalingSettings(), targets)
    hpa, keda = found["hpa-api.yaml"], found["keda-worker.yaml"]
    assert hpa["metadata"]["namespace"] == keda["metadata"]["namespace"] == "shop"
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 9)
    assert [metric["resource"]["target"]["averageUtilization"] for metric in spec["metrics"]] == [
        65,
        75,
    ]
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 300
    assert spec["behavior"]["scaleUp"]["policies"][0]["value"] == 2
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    metadata = keda["spec"]["triggers"][0]["metadata"]
    assert (metadata["address"], metadata["passwordFromEnv"], metadata["listLength"]) == (
        "redis:6379",
        "PW",
        "8",
    )
    assert "addressFromEnv" not in metadata
    assert (keda["spec"]["minReplicaCount"], keda["spec"]["maxReplicaCount"]) == (2, 9)
    assert keda["spec"]["cooldownPeriod"] == 120


def test_only_the_scaled_services_get_a_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOLENTEE_SCALE_SERVICES", "worker")
    assert list(documents(ScalingSettings())) == ["keda-worker.yaml"]


def test_the_yaml_emitter_round_trips_awkward_values() -> None:
    value = {
        "plain": "text: with colon # and hash",
        "quote": 'say "hi"\nnext line',
        "yes": "no",
        "on": True,
        "number-like": "0123",
        "empty": {},
        "none": [],
        "nested": [{"a": 1, "b": [1.5, False, None]}, ["x", "y"], "z"],
        "with space": "v",
    }
    assert yaml.safe_load(m.to_yaml(value)) == value


def test_cli_prints_both_documents() -> None:
    result = runner.invoke(autoscale_app, ["manifests", "--namespace", "shop"])
    assert result.exit_code == 0, result.output
    loaded = [doc for doc in yaml.safe_load_all(result.output) if doc]
    assert [doc["kind"] for doc in loaded] == ["HorizontalPodAutoscaler", "ScaledObject"]
    assert {doc["metadata"]["namespace"] for doc in loaded} == {"shop"}


def test_cli_writes_the_files(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    result = runner.invoke(
        autoscale_app,
        ["manifests", "--out", str(out), "--redis-address", "redis.shop.svc:6379"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == ["hpa-api.yaml", "keda-worker.yaml"]
    keda = yaml.safe_load((out / "keda-worker.yaml").read_text())
    assert keda["spec"]["triggers"][0]["metadata"]["address"] == "redis.shop.svc:6379"
    hpa_text = (out / "hpa-api.yaml").read_text()
    assert hpa_text.startswith("# Written by `stolentee autoscale manifests`")
    assert yaml.safe_load(hpa_text)["metadata"]["labels"]["app.kubernetes.io/component"] == API
    assert keda["metadata"]["labels"]["app.kubernetes.io/component"] == WORKER
