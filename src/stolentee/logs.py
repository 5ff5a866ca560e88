"""Logging set-up: readable text on a laptop, one JSON object per line in production."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from stolentee.config import ServiceSettings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: ServiceSettings) -> None:
    """Install one handler on the root logger (idempotent)."""
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and settings.is_production
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_stolentee", False):
            root.removeHandler(existing)
    handler._stolentee = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
