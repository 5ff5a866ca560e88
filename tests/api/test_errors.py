"""Unexpected errors over a real connection: one clean answer, and the connection not reused."""

from __future__ import annotations

import httpx

from stolentee.api.app import create_app
from tests.fakes.faultproxy import LiveServer

from ..conftest import SettingsFactory


def test_an_unhandled_error_answers_500_and_closes_the_connection(
    make_settings: SettingsFactory,
) -> None:
    """The server drops a connection after an unhandled error: the answer says so
    (``Connection: close``), so a keep-alive client opens a new one instead of meeting a reset."""
    app = create_app(make_settings(queue={"run_worker": False}), role="removal")

    def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        failed = client.get("/broken")
        assert failed.status_code == 500
        assert failed.json()["errors"][0]["code"] == "internal_error"
        assert "a bug" not in failed.text  # no internals in the answer
        assert failed.headers["connection"] == "close"
        for _ in range(3):  # the same client goes on working
            assert client.get("/health").status_code == 200
