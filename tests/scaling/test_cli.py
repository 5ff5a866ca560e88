"""``stolentee autoscale run | simulate`` through typer's CliRunner (manifests: test_manifests)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stolentee.cli.autoscale import autoscale_app
from tests.scaling.conftest import LocalServer, Recorded, Reply
from tests.scaling.test_railway import ENV_ID, IDS, PATH, TOKEN, FakeRailway
from tests.scaling.test_sources import page

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(autoscale_app, list(args), env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, result.output


def test_simulate_the_shipped_day() -> None:
    code, output = invoke("simulate")
    assert code == 0, output
    assert "Simulated the shipped day at 1,000 users: 1,440 minutes" in output
    assert "Worker replicas by hour" in output
    assert "20:02  1 -> 2: queue depth" in output
    assert "Jobs: 1,000 arrived, 1,000 done." in output
    assert "Queue wait: p50 0.0 s, p95 " in output
    assert "Compute (Railway, price book 2026-11-28: $10/GB-month RAM, $20/vCPU-month)" in output


def test_simulate_json_and_options(tmp_path: Path) -> None:
    trace = tmp_path / "burst.csv"
    trace.write_text(
        "minute,arrivals,job_cost_s\n" + "".join(f"{m},40,6\n" for m in range(20)),
        encoding="utf-8",
    )
    code, output = invoke("simulate", str(trace), "--json", "--concurrency", "4")
    assert code == 0, output
    data = json.loads(output)
    assert data["trace"] == str(trace)
    assert (data["jobs_total"], data["jobs_done"], data["concurrency"]) == (800, 800, 4)
    assert data["peak_replicas"] >= 2
    assert data["wait_s"]["p50"] <= data["wait_s"]["p95"] <= data["wait_s"]["p99"]
    assert data["cost"]["total_usd"] > 0
    assert data["prices"]["ram"]["key"] == "railway.figures.ram_usd_per_gb_month"


def test_simulate_plot_writes_a_png(tmp_path: Path) -> None:
    target = tmp_path / "day.png"
    code, output = invoke("simulate", "--plot", str(target))
    assert code == 0, output
    assert target.read_bytes().startswith(PNG_SIGNATURE)


def test_simulate_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, output = invoke("simulate", "--plot", str(tmp_path / "x.png"))
    assert code == 1
    assert "pip install 'stolentee[plot]'" in output


def test_simulate_a_bad_trace_is_a_clean_error(tmp_path: Path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("minute,arrivals,job_cost_s\n0,1,4\n5,1,4\n", encoding="utf-8")
    code, output = invoke("simulate", str(trace))
    assert code == 1
    assert "invalid_trace" in output and "bad.csv:3: minute 5 where 1 was expected" in output


def metrics_env(server: LocalServer) -> dict[str, str]:
    return {"STOLENTEE_SCALE_API_METRICS_URLS": server.url("/metrics")}


def test_run_once_dry_run_on_real_metrics(server: LocalServer) -> None:
    def respond(request: Recorded) -> Reply:
        if request.path == "/metrics":
            return Reply(200, page(5.0, 100 * 2**20, depth=65, in_flight=2))
        return Reply(404, "")

    server.responder = respond
    code, output = invoke("run", "--once", env=metrics_env(server))
    assert code == 0, output
    assert "autoscale: backend log, every 30s; replicas now: api 1, worker 1" in output
    assert "worker: 1 -> 4 replicas: queue depth 65 > 20 per worker x 1: 4 wanted" in output
    assert "api: 1 replicas, hold: at the minimum of 1" in output


def test_run_once_through_railway(server: LocalServer) -> None:
    fake = FakeRailway({IDS["api"]: 1, IDS["worker"]: 2})

    def respond(request: Recorded) -> Reply:
        if request.path == "/metrics":
            return Reply(200, page(5.0, 100 * 2**20, depth=61, in_flight=4))
        return fake(request)

    server.responder = respond
    env = {
        **metrics_env(server),
        "STOLENTEE_SCALE_RAILWAY_API_URL": server.url(PATH),
        "RAILWAY_API_TOKEN": TOKEN,
        "RAILWAY_ENVIRONMENT_ID": ENV_ID,
        "RAILWAY_API_SERVICE_ID": IDS["api"],
        "RAILWAY_WORKER_SERVICE_ID": IDS["worker"],
    }
    code, output = invoke("run", "--once", "--backend", "railway", env=env)
    assert code == 0, output
    assert "replicas now: api 1, worker 2" in output
    assert "worker: 2 -> 4 replicas" in output
    assert fake.replicas[IDS["worker"]] == 4
    updates = [r.json() for r in server.requests if r.path == PATH]
    assert [u["operationName"] for u in updates][-1] == "serviceInstanceUpdate"
    assert updates[-1]["variables"]["input"] == {"numReplicas": 4}


def test_run_once_reports_a_refused_change(server: LocalServer) -> None:
    def respond(request: Recorded) -> Reply:
        if request.path == "/metrics":
            return Reply(200, page(5.0, 100 * 2**20, depth=61, in_flight=4))
        return Reply(403, {"errors": [{"message": "Not Authorized"}]})

    server.responder = respond
    env = {
        **metrics_env(server),
        "STOLENTEE_SCALE_SERVICES": "worker",
        "STOLENTEE_SCALE_RAILWAY_API_URL": server.url(PATH),
        "RAILWAY_TOKEN": "project-token",
        "RAILWAY_ENVIRONMENT_ID": ENV_ID,
        "RAILWAY_WORKER_SERVICE_ID": IDS["worker"],
    }
    code, output = invoke("run", "--once", "--backend", "railway", env=env)
    assert code == 1
    assert "worker: 1 -> 4 refused" in output
    assert "HTTP 403" in output and "project-token" not in output
    assert {r.headers.get("project-access-token") for r in server.requests if r.path == PATH} == {
        "project-token"
    }


def test_run_railway_without_credentials_exits_2() -> None:
    code, output = invoke("run", "--once", "--backend", "railway")
    assert code == 2
    assert "RAILWAY_API_TOKEN" in output


def test_invalid_settings_exit_2() -> None:
    code, output = invoke("simulate", env={"STOLENTEE_SCALE_MIN_REPLICAS": "6"})
    assert code == 2
    assert "Invalid configuration" in output and "STOLENTEE_SCALE_MAX_REPLICAS" in output
