"""Connecting to an S3-compatible endpoint: the boto3 client with the settings R2, Supabase and
MinIO need, the credentials checked up front, and the lean signed requests of the hot path."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from stolentee.config import S3Profile, StorageSettings
from stolentee.errors import (
    ConfigurationError,
)
from stolentee.storage.s3.requests import S3Requests
from stolentee.storage.s3.signing import S3Credentials

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_s3 import S3Client


def client_config(
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    max_attempts: int,
    max_pool_connections: int,
) -> Config:
    """The botocore configuration every S3 client of stolentee uses (see the module docstring)."""
    from botocore.config import Config  # boto3 is imported when a client is first needed

    return Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=max_pool_connections,
    )


def check_profile(profile: S3Profile) -> None:
    """Raise ``ConfigurationError`` naming every setting ``profile`` lacks."""
    missing = [
        f"{profile.env_prefix}{name}"
        for name, value in (
            ("BUCKET_NAME", profile.bucket),
            ("ACCESS_KEY_ID", profile.access_key_id),
            ("SECRET_ACCESS_KEY", profile.secret_access_key),
        )
        if not value
    ]
    if profile.name == "r2" and not profile.endpoint:
        missing.insert(0, "R2_ENDPOINT")
    if missing:
        raise ConfigurationError(
            f"the {profile.name!r} storage profile needs {', '.join(missing)} to be set"
        )


def build_client(profile: S3Profile, settings: StorageSettings) -> S3Client:
    """An S3 client for ``profile``; raises ``ConfigurationError`` when a setting is missing."""
    import boto3

    check_profile(profile)
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=profile.endpoint or None,
        region_name=profile.region or None,
        aws_access_key_id=profile.access_key_id,
        aws_secret_access_key=profile.secret_access_key,
        config=client_config(
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
            max_attempts=settings.s3_max_attempts,
            max_pool_connections=settings.s3_max_pool_connections,
        ),
    )
    return client


def behind_proxy(endpoint: str) -> bool:
    """Whether the environment routes ``endpoint`` through a proxy (as botocore would)."""
    parts = urlsplit(endpoint)
    proxies = urllib.request.getproxies()
    if not proxies.get(parts.scheme):
        return False
    return not urllib.request.proxy_bypass(parts.netloc)


def observe_client(client: S3Client, callback: Callable[[str, str], None]) -> None:
    """Feed boto3's per-operation events (after its retries) to ``callback``."""

    def after_call(http_response: Any, model: Any, **_: Any) -> None:
        status = int(getattr(http_response, "status_code", 0))
        callback(model.name, _outcome(status))

    def after_error(event_name: str = "", **_: Any) -> None:
        # ``after-call-error.s3.<Operation>``: raised before any answer (connection, timeout)
        callback(event_name.rsplit(".", 1)[-1], "connection_error")

    client.meta.events.register("after-call.s3", after_call)
    client.meta.events.register("after-call-error.s3", after_error)


def _outcome(status: int) -> str:
    return "ok" if status < 400 else "client_error" if status < 500 else "server_error"


def requests_for(client: S3Client, credentials: S3Credentials) -> S3Requests:
    """Signed requests to ``client``'s endpoint, with its region, timeouts, retries and pool."""
    config = client.meta.config
    retries = getattr(config, "retries", None) or {}
    return S3Requests(
        endpoint=str(client.meta.endpoint_url),
        region=client.meta.region_name or "us-east-1",
        credentials=credentials,
        connect_timeout_s=float(getattr(config, "connect_timeout", 10) or 10),
        read_timeout_s=float(getattr(config, "read_timeout", 60) or 60),
        max_attempts=int(retries.get("max_attempts", 3)),
        max_connections=int(getattr(config, "max_pool_connections", 10) or 10),
    )


def signed_requests(
    profile: S3Profile, settings: StorageSettings, credentials: S3Credentials
) -> S3Requests:
    """The lean signed requests of the hot path, on ``profile``'s endpoint."""
    return S3Requests(
        endpoint=profile.endpoint,
        region=profile.region or "us-east-1",
        credentials=credentials,
        connect_timeout_s=settings.s3_connect_timeout_s,
        read_timeout_s=settings.s3_read_timeout_s,
        max_attempts=settings.s3_max_attempts,
        max_connections=settings.s3_max_pool_connections,
    )
