"""The scaling settings: the seed's numbers by default, declared like every other section."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from stolentee.config import ScalingSettings


def test_defaults_are_the_seed_and_a_dry_run() -> None:
    settings = ScalingSettings()
    assert settings.scaled_services == ("api", "worker")
    assert (settings.min_replicas, settings.max_replicas) == (1, 5)
    assert (settings.cpu_percent, settings.cpu_window_s) == (70, 900)
    assert (settings.memory_percent, settings.memory_window_s) == (80, 600)
    assert (settings.queue_per_worker, settings.down_stabilisation_s) == (20, 300)
    assert settings.backend == "log"
    assert settings.metrics_urls("api") == ("http://127.0.0.1:8000/metrics",)
    assert settings.metrics_urls("worker") == ()


def test_every_setting_declares_its_variable_and_description() -> None:
    for name, info in ScalingSettings.model_fields.items():
        alias = info.validation_alias
        assert isinstance(alias, str), name
        assert alias.startswith(("STOLENTEE_SCALE_", "RAILWAY_")), alias
        assert info.description, name
    secrets = {
        info.validation_alias
        for info in ScalingSettings.model_fields.values()
        if info.annotation is SecretStr
    }
    assert secrets == {"RAILWAY_API_TOKEN", "RAILWAY_TOKEN", "STOLENTEE_SCALE_METRICS_TOKEN"}


def test_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOLENTEE_SCALE_BACKEND", "railway")
    monkeypatch.setenv("STOLENTEE_SCALE_API_METRICS_URLS", " http://a:8000/metrics ,http://b/m ")
    monkeypatch.setenv("RAILWAY_API_TOKEN", "rw-secret-42")
    monkeypatch.setenv("RAILWAY_ENVIRONMENT_ID", " env ")
    monkeypatch.setenv("RAILWAY_WORKER_SERVICE_ID", "svc-w")
    settings = ScalingSettings()
    assert settings.backend == "railway"
    assert settings.metrics_urls("api") == ("http://a:8000/metrics", "http://b/m")
    assert settings.railway_api_token.get_secret_value() == "rw-secret-42"
    assert settings.railway_environment_id == "env"
    assert settings.railway_service_id("worker") == "svc-w"
    assert "rw-secret-42" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STOLENTEE_SCALE_SERVICES", "api,db"),
        ("STOLENTEE_SCALE_SERVICES", "api,api"),
        ("STOLENTEE_SCALE_MIN_REPLICAS", "0"),
        ("STOLENTEE_SCALE_MIN_REPLICAS", "6"),  # above the maximum of 5
        ("STOLENTEE_SCALE_CPU_WINDOW_S", "-1"),
        ("STOLENTEE_SCALE_BACKEND", "kubernetes"),
        ("STOLENTEE_SCALE_API_METRICS_URLS", "ftp://x/metrics"),
        ("STOLENTEE_SCALE_RAILWAY_API_URL", "backboard.railway.com"),
    ],
)
def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        ScalingSettings()
