"""``build_storage``: the configured backend, built from settings."""

from __future__ import annotations

from pathlib import Path

from stolentee.storage.backends.local import LocalStorage
from stolentee.storage.base import Storage
from stolentee.storage.factory import build_storage
from tests.conftest import SettingsFactory


def test_local_backend_under_the_data_dir(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    storage = build_storage(settings)
    assert isinstance(storage, LocalStorage)
    assert isinstance(storage, Storage)
    assert storage.name == "local"
    assert storage.root == settings.storage_dir.resolve()
    for sub in ("objects", "meta", "tmp"):
        assert (settings.storage_dir / sub).is_dir()
    assert storage.public_url("assets/x.png") == "/assets/x.png"


def test_explicit_dir_and_public_urls(make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings(
        storage={"local_dir": tmp_path / "elsewhere", "r2_public_domain": "assets.example.com"},
        service={"public_base_url": "https://api.example.com/"},
    )
    storage = build_storage(settings)
    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / "elsewhere").resolve()
    assert storage.public_url("assets/x.png") == "https://assets.example.com/assets/x.png"

    no_cdn = build_storage(make_settings(service={"public_base_url": "https://api.example.com/"}))
    assert no_cdn.public_url("uploads/a b.png") == "https://api.example.com/uploads/a%20b.png"
