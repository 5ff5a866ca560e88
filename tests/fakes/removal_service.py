"""``stolentee removal-service`` for tests: the real app (``create_app(role="removal")``) served
on a free loopback port by uvicorn, an API key required and a 2 MP input limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stolentee.api.app import create_app
from stolentee.config import ApiSettings, EngineSettings, QueueSettings, ServiceSettings, Settings
from tests.fakes.faultproxy import LiveServer

API_KEY = "remote-test-key"
SERVER_MAX_MEGAPIXELS = 2.0


def start_removal_server(engine_settings: EngineSettings, data_dir: Path) -> LiveServer:
    """``create_app(role="removal")`` on a real port; API key required; 2 MP input limit."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            app_variable = name.startswith(
                ("STOLENTEE_", "DATABASE_URL", "REDIS_URL", "REMBG_", "REMOVEBG_")
            )
            if app_variable and not name.startswith("STOLENTEE_TEST_"):
                patch.delenv(name)
        patch.chdir(data_dir)
        settings = Settings(
            service=ServiceSettings(data_dir=data_dir),
            queue=QueueSettings(run_worker=False),
            engine=engine_settings.model_copy(
                update={"max_input_megapixels": SERVER_MAX_MEGAPIXELS}
            ),
            api=ApiSettings(api_keys=API_KEY),
        )
    return LiveServer(create_app(settings, role="removal")).start()
