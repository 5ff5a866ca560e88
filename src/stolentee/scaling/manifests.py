"""Kubernetes manifests equivalent to the policy: an HPA for the API, a KEDA ScaledObject for the
worker. Where users outgrow Railway, the cluster applies the same rules itself.

**API** — ``autoscaling/v2`` ``HorizontalPodAutoscaler`` on CPU (``averageUtilization`` 70) and
memory (80). An HPA scales up on the lowest recommendation seen during
``behavior.scaleUp.stabilizationWindowSeconds``, i.e. only when the pressure lasted that long: the
sustained windows. It has one window per direction, not per metric, so the shorter of the CPU (15
min) and memory (10 min) windows is used (memory pressure ends in OOM kills; CPU pressure only in
slowness); a ``Pods`` policy adds ``step_up`` replicas per window. Scale-down: stabilisation 300 s
and ``step_down`` pods per 300 s. Utilisation is relative to the containers' resource *requests*,
so set requests to the replica size the thresholds mean.

**Worker** — KEDA ``ScaledObject`` (``keda.sh/v1alpha1``) with a ``redis`` trigger on the list
huey's ``RedisHuey`` keeps its messages in, ``huey.redis.<queue name>`` (``stolentee``), with
``listLength`` 20: KEDA's list length is a per-replica average target, so it asks for
ceil(length / 20) workers, which is the policy's queue targeting. The queue trigger acts at once,
as the policy's does, so the worker's HPA behaviour has no scale-up window; CPU and memory
triggers, whose windows would need one, are left out (a saturated worker shows as a growing
queue). Scale-down: the same 300 s stabilisation; ``cooldownPeriod`` 300 too (KEDA uses it only
when scaling to zero, which ``minReplicaCount`` >= 1 rules out). The Redis address is read from
an environment variable of the worker container (``REDIS_ADDRESS``, ``host:port``) unless given.
Run the API with ``STOLENTEE_RUN_WORKER=false`` there so that only worker pods take jobs.

YAML is written by a small emitter (block style, every string double-quoted): no YAML library
is needed to write it, and any YAML parser reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stolentee.scaling.policy import API, WORKER, ServiceRules

QUEUE_NAME = "stolentee"  # stolentee.jobs.transport.QUEUE_NAME (a test keeps them equal)
HUEY_LIST_KEY = f"huey.redis.{QUEUE_NAME}"  # huey.storage.RedisStorage.queue_key
HPA_MAX_WINDOW_S = 3600  # Kubernetes limit of stabilizationWindowSeconds
HPA_MAX_PERIOD_S = 1800  # Kubernetes limit of a scaling policy's periodSeconds
LABELS = {"app.kubernetes.io/part-of": "stolentee", "app.kubernetes.io/managed-by": "stolentee"}


@dataclass(frozen=True, slots=True)
class Targets:
    """Names in the cluster: the namespace, the Deployments, where the worker finds Redis."""

    namespace: str = "default"
    api_deployment: str = "stolentee-api"
    worker_deployment: str = "stolentee-worker"
    redis_address: str = ""  # host:port; empty: read from redis_address_env
    redis_address_env: str = "REDIS_ADDRESS"
    redis_password_env: str = ""  # the worker container's variable holding the password
    redis_database: int = 0
    polling_interval_s: int = 30


def hpa(rules: ServiceRules, targets: Targets) -> dict[str, Any]:
    """The API's HorizontalPodAutoscaler."""
    up_window = _window(min(rules.cpu_window_s, rules.memory_window_s))
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(targets.api_deployment, targets.namespace, API),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": targets.api_deployment,
            },
            "minReplicas": rules.min_replicas,
            "maxReplicas": rules.max_replicas,
            "metrics": [
                _resource_metric("cpu", rules.cpu_percent),
                _resource_metric("memory", rules.memory_percent),
            ],
            "behavior": _behavior(rules, up_window=up_window),
        },
    }


def scaled_object(rules: ServiceRules, targets: Targets) -> dict[str, Any]:
    """The worker's KEDA ScaledObject (Redis list length of the huey queue)."""
    if rules.queue_per_replica is None:
        raise ValueError("the worker's rules have no queue target")
    metadata: dict[str, Any] = {}
    if targets.redis_address:
        metadata["address"] = targets.redis_address
    else:
        metadata["addressFromEnv"] = targets.redis_address_env
    if targets.redis_password_env:
        metadata["passwordFromEnv"] = targets.redis_password_env
    metadata |= {
        "listName": HUEY_LIST_KEY,
        "listLength": str(rules.queue_per_replica),
        "databaseIndex": str(targets.redis_database),
    }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(targets.worker_deployment, targets.namespace, WORKER),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": targets.worker_deployment,
            },
            "pollingInterval": targets.polling_interval_s,
            "cooldownPeriod": _window(rules.scale_down_stabilisation_s),
            "minReplicaCount": rules.min_replicas,
            "maxReplicaCount": rules.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {"behavior": _behavior(rules, up_window=0)}
            },
            "triggers": [{"type": "redis", "metadata": metadata}],
        },
    }


def _metadata(name: str, namespace: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**LABELS, "app.kubernetes.io/component": component},
    }


def _resource_metric(name: str, percent: float) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {
            "name": name,
            "target": {"type": "Utilization", "averageUtilization": round(percent)},
        },
    }


def _behavior(rules: ServiceRules, *, up_window: int) -> dict[str, Any]:
    down_window = _window(rules.scale_down_stabilisation_s)
    if up_window:
        up_policy = {"type": "Pods", "value": rules.step_up, "periodSeconds": _period(up_window)}
    else:  # at once, as many as the metric asks for (the queue targeting)
        up_policy = {"type": "Pods", "value": rules.max_replicas, "periodSeconds": 15}
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": up_window,
            "selectPolicy": "Max",
            "policies": [up_policy],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": down_window,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": rules.step_down, "periodSeconds": _period(down_window)}
            ],
        },
    }


def _window(seconds: float) -> int:
    return min(HPA_MAX_WINDOW_S, max(0, math.ceil(seconds)))


def _period(seconds: int) -> int:
    return min(HPA_MAX_PERIOD_S, max(1, seconds))


# --- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    filename: str
    document: dict[str, Any]
    comment: str

    def text(self) -> str:
        head = "".join(f"# {line}\n" for line in self.comment.splitlines())
        return head + to_yaml(self.document)


def manifests(
    services: Mapping[str, ServiceRules], targets: Targets | None = None
) -> list[Manifest]:
    """The manifests for the scaled services (``api``: HPA, ``worker``: ScaledObject)."""
    targets = targets or Targets()
    found: list[Manifest] = []
    api = services.get(API)
    if api is not None:
        up = min(api.cpu_window_s, api.memory_window_s)
        found.append(
            Manifest(
                filename="hpa-api.yaml",
                document=hpa(api, targets),
                comment=(
                    "Written by `stolentee autoscale manifests` from the autoscaling policy.\n"
                    f"CPU > {api.cpu_percent:.0f}% for {api.cpu_window_s:.0f} s or memory > "
                    f"{api.memory_percent:.0f}% for {api.memory_window_s:.0f} s -> +{api.step_up};"
                    f" an HPA has one scale-up window: {_window(up)} s (the shorter).\n"
                    "Utilisation is relative to the containers' resource requests."
                ),
            )
        )
    worker = services.get(WORKER)
    if worker is not None:
        found.append(
            Manifest(
                filename="keda-worker.yaml",
                document=scaled_object(worker, targets),
                comment=(
                    "Written by `stolentee autoscale manifests` from the autoscaling policy.\n"
                    f"Workers = ceil(length of {HUEY_LIST_KEY} / {worker.queue_per_replica}), "
                    f"between {worker.min_replicas} and {worker.max_replicas}; needs KEDA.\n"
                    "Run the API with STOLENTEE_RUN_WORKER=false so only worker pods take jobs."
                ),
            )
        )
    return found


def write_manifests(found: Sequence[Manifest], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for manifest in found:
        path = directory / manifest.filename
        path.write_text(manifest.text(), encoding="utf-8")
        written.append(path)
    return written


def to_yaml(value: Any) -> str:
    """Block-style YAML of dicts, lists, strings, numbers and booleans."""
    lines: list[str] = []
    _emit(value, 0, lines)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} as YAML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a YAML double-quoted scalar
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _emit(value: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            lines.append(pad + "{}")
        for key, item in value.items():
            label = pad + (str(key) if _plain_key(key) else _scalar(str(key))) + ":"
            if isinstance(item, dict | list) and item:
                lines.append(label)
                _emit(item, indent + 2, lines)
            else:
                lines.append(f"{label} {_inline(item)}")
    elif isinstance(value, list):
        if not value:
            lines.append(pad + "[]")
        for item in value:
            if isinstance(item, dict | list) and item:
                nested: list[str] = []
                _emit(item, indent + 2, nested)
                lines.append(pad + "- " + nested[0].lstrip())
                lines.extend(nested[1:])
            else:
                lines.append(pad + "- " + _inline(item))
    else:
        lines.append(pad + _scalar(value))


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _plain_key(key: Any) -> bool:
    """Keys such as ``apiVersion`` or ``app.kubernetes.io/name`` need no quotes."""
    text = str(key)
    return (
        bool(text)
        and text[0].isalpha()
        and all(ch.isalnum() or ch in "._/-" for ch in text)
        and text.lower() not in _YAML_WORDS
    )
