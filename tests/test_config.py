"""Settings come from the environment under the seed's names, with derived defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stolentee.config import (
    Settings,
    effective_settings,
    iter_setting_docs,
    mask_url,
    normalise_database_url,
)


def test_defaults_are_the_embedded_setup() -> None:
    settings = Settings()
    assert settings.service.env.value == "development"
    assert settings.database.url == "sqlite:///var/stolentee.db"
    assert settings.database.auto_migrate is True
    assert settings.pool_max_connections == 5
    assert settings.database.pool_idle_timeout_s == 10
    assert settings.database.statement_timeout_s == 30
    assert settings.database.query_timeout_s == 10
    assert settings.storage_dir == Path("var/storage")
    assert settings.service.port == 8000


def test_seed_variable_names_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STOLENTEE_ENV", "production")
    monkeypatch.setenv("STOLENTEE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw@db.example:5432/shop")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@cache:6379/0")
    monkeypatch.setenv("REMBG_ENDPOINT", "https://rembg.internal")
    monkeypatch.setenv("REMOVEBG_API_KEY", "sk-remove")
    monkeypatch.setenv("R2_BUCKET_NAME", "stolentee-assets")
    monkeypatch.setenv("R2_PUBLIC_DOMAIN", "assets.stolentee.com")
    monkeypatch.setenv("PORT", "9123")
    settings = Settings()
    assert settings.service.is_production
    assert settings.database.url == "postgresql+psycopg://u:pw@db.example:5432/shop"
    assert settings.database.auto_migrate is False
    assert settings.pool_max_connections == 15
    assert settings.queue.redis_url.get_secret_value() == "redis://:pw@cache:6379/0"
    assert settings.removal.rembg_endpoint == "https://rembg.internal"
    assert settings.removal.removebg_api_key.get_secret_value() == "sk-remove"
    assert settings.storage.r2_bucket_name == "stolentee-assets"
    assert settings.storage.r2_public_domain == "https://assets.stolentee.com"
    assert settings.storage_dir == tmp_path / "storage"
    assert settings.service.port == 9123


def test_dotenv_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("STOLENTEE_LOG_LEVEL=debug\nPORT=7000\n")
    monkeypatch.setenv("PORT", "7001")
    settings = Settings()
    assert settings.service.log_level == "debug"
    assert settings.service.port == 7001


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STOLENTEE_ENV", "staging"),
        ("PORT", "0"),
        ("PORT", "http"),
        ("STOLENTEE_DB_POOL_MAX", "0"),
        ("STOLENTEE_DB_QUERY_TIMEOUT_S", "-1"),
        ("STOLENTEE_PUBLIC_BASE_URL", "ftp://x"),
        ("R2_PUBLIC_DOMAIN", "javascript://x"),
        ("STORAGE_BACKEND", "floppy"),
    ],
)
def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_database_url_spellings() -> None:
    assert normalise_database_url("postgres://a@h/d") == "postgresql+psycopg://a@h/d"
    assert normalise_database_url("postgresql://a@h/d") == "postgresql+psycopg://a@h/d"
    assert normalise_database_url("postgresql+psycopg://a@h/d") == "postgresql+psycopg://a@h/d"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql://user:s3cret@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert mask_url("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert mask_url("sqlite:///var/x.db") == "sqlite:///var/x.db"


def test_effective_settings_mask_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:dbpass@h/d")
    monkeypatch.setenv("REDIS_URL", "redis://:redispass@h:6379/0")
    monkeypatch.setenv("REMOVEBG_API_KEY", "removebgkey")
    monkeypatch.setenv("R2_ACCESS_KEY_ID", "r2keyid")
    monkeypatch.setenv("R2_SECRET_ACCESS_KEY", "r2secret")
    rendered = "\n".join(f"{doc.env_var}={value}" for doc, value in effective_settings(Settings()))
    for secret in ("dbpass", "redispass", "removebgkey", "r2keyid", "r2secret"):
        assert secret not in rendered
    assert "REMOVEBG_API_KEY=***" in rendered
    assert "DATABASE_URL=postgresql+psycopg://user:***@h/d" in rendered


def test_every_setting_declares_variable_and_description() -> None:
    docs = list(iter_setting_docs())
    assert len(docs) >= 20
    names = [doc.env_var for doc in docs]
    assert len(names) == len(set(names)), "two settings share an environment variable"
    for doc in docs:
        assert doc.description.strip(), f"{doc.env_var} has no description"


@pytest.mark.parametrize(("name", "prefix"), [("r2", "R2_"), ("s3", "S3_")])
def test_each_s3_profile_reads_its_own_variables(
    monkeypatch: pytest.MonkeyPatch, name: str, prefix: str
) -> None:
    """The two profiles are declared once: the same parts, each from its own prefix."""
    values = {
        "ENDPOINT": f"https://{name}.example.net",
        "ACCESS_KEY_ID": f"{name}-key-id",
        "SECRET_ACCESS_KEY": f"{name}-secret",
        "BUCKET_NAME": f"{name}-bucket",
        "REGION": f"{name}-region",
        "PUBLIC_DOMAIN": f"cdn-{name}.example.net",
    }
    for suffix, value in values.items():
        monkeypatch.setenv(prefix + suffix, value)
    other = "S3_" if prefix == "R2_" else "R2_"
    monkeypatch.setenv(other + "BUCKET_NAME", "not-this-one")
    profile = Settings().storage.s3_profile("r2" if name == "r2" else "s3")
    assert (profile.name, profile.env_prefix) == (name, prefix)
    assert profile.endpoint == values["ENDPOINT"]
    assert (profile.access_key_id, profile.secret_access_key) == (
        values["ACCESS_KEY_ID"],
        values["SECRET_ACCESS_KEY"],
    )
    assert (profile.bucket, profile.region) == (values["BUCKET_NAME"], values["REGION"])
    assert profile.public_domain == f"https://cdn-{name}.example.net"
    assert "secret" not in repr(profile)
