"""Settings of object storage: the backend, and the R2 and S3 connection profiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import (
    SECTION_CONFIG,
)


@dataclass(frozen=True, slots=True)
class ProfileDoc:
    """What differs between the two S3 connection profiles: their variables and examples."""

    name: str
    env_prefix: str  # R2_ or S3_: the profile's variables are <prefix>ENDPOINT, ...
    service: str  # who runs the bucket, for the descriptions
    endpoint_example: str
    default_region: str
    region_note: str
    public_domain_example: str
    public_domain_note: str = ""


R2 = ProfileDoc(
    name="r2",
    env_prefix="R2_",
    service="Cloudflare R2",
    endpoint_example="`https://<account>.r2.cloudflarestorage.com`",
    default_region="auto",
    region_note="R2 expects `auto`",
    public_domain_example="`assets.example.com`",
    public_domain_note=" Used by the `local` backend too.",
)
S3 = ProfileDoc(
    name="s3",
    env_prefix="S3_",
    service="the `s3` profile (Supabase Storage, MinIO, AWS S3)",
    endpoint_example="Supabase's `https://<project>.supabase.co/storage/v1/s3` or MinIO's "
    "`http://minio:9000`; empty: AWS S3",
    default_region="us-east-1",
    region_note="Supabase: the project's region",
    public_domain_example="Supabase's "
    "`https://<project>.supabase.co/storage/v1/object/public/<bucket>`",
)
PROFILES = {doc.name: doc for doc in (R2, S3)}


def _profile_field(doc: ProfileDoc, part: str) -> Any:
    """One field of a connection profile: its variable, default and description."""
    masked = "(secret, masked in `config show`)"
    fields: dict[str, tuple[object, str, str]] = {
        "endpoint": (
            "",
            "ENDPOINT",
            f"S3 API endpoint of {doc.service}, e.g. {doc.endpoint_example}.",
        ),
        "access_key_id": (
            SecretStr(""),
            "ACCESS_KEY_ID",
            f"Access key id of the `{doc.name}` profile {masked}.",
        ),
        "secret_access_key": (
            SecretStr(""),
            "SECRET_ACCESS_KEY",
            f"Secret access key of the `{doc.name}` profile {masked}.",
        ),
        "bucket_name": (
            "",
            "BUCKET_NAME",
            f"Bucket of the `{doc.name}` profile, holding uploads and assets.",
        ),
        "region": (
            doc.default_region,
            "REGION",
            f"Region used to sign the `{doc.name}` profile's requests ({doc.region_note}).",
        ),
        "public_domain": (
            "",
            "PUBLIC_DOMAIN",
            f"CDN domain or public base URL serving the `{doc.name}` profile's objects, e.g. "
            f"{doc.public_domain_example}. When set, public URLs are `https://<domain>/<key>`; "
            "empty: this service serves them under `/uploads/` and `/assets/`."
            + doc.public_domain_note,
        ),
    }
    default, suffix, description = fields[part]
    return Field(default, validation_alias=doc.env_prefix + suffix, description=description)


class StorageSettings(BaseSettings):
    """Where uploads and assets are stored, and how their public URLs are built.

    Two S3 connection profiles exist side by side so that one store can be migrated to another
    (Supabase → R2): ``r2`` reads the seed's ``R2_*`` variables, ``s3`` the generic ``S3_*`` ones
    (Supabase's S3 API, MinIO, AWS). ``STORAGE_BACKEND`` picks the one the service uses.
    """

    model_config = SECTION_CONFIG

    backend: Literal["local", "s3", "r2"] = Field(
        "local",
        validation_alias="STORAGE_BACKEND",
        description="Storage backend. `local`: files under `STOLENTEE_STORAGE_DIR`. `r2`: an "
        "S3-compatible bucket from the `R2_*` settings (Cloudflare R2). `s3`: an S3-compatible "
        "bucket from the `S3_*` settings (Supabase Storage's S3 API, MinIO, AWS S3).",
    )
    local_dir: Path | None = Field(
        None,
        validation_alias="STOLENTEE_STORAGE_DIR",
        description="Root directory of local storage. Empty: `$STOLENTEE_DATA_DIR/storage`.",
    )
    # The two connection profiles, declared once (:data:`PROFILES`): same fields, own variables.
    r2_endpoint: str = _profile_field(R2, "endpoint")
    r2_access_key_id: SecretStr = _profile_field(R2, "access_key_id")
    r2_secret_access_key: SecretStr = _profile_field(R2, "secret_access_key")
    r2_bucket_name: str = _profile_field(R2, "bucket_name")
    r2_region: str = _profile_field(R2, "region")
    r2_public_domain: str = _profile_field(R2, "public_domain")
    s3_endpoint: str = _profile_field(S3, "endpoint")
    s3_access_key_id: SecretStr = _profile_field(S3, "access_key_id")
    s3_secret_access_key: SecretStr = _profile_field(S3, "secret_access_key")
    s3_bucket_name: str = _profile_field(S3, "bucket_name")
    s3_region: str = _profile_field(S3, "region")
    s3_public_domain: str = _profile_field(S3, "public_domain")
    s3_connect_timeout_s: float = Field(
        5.0,
        gt=0,
        validation_alias="STOLENTEE_S3_CONNECT_TIMEOUT_S",
        description="Seconds to wait for a connection to the S3 endpoint.",
    )
    s3_read_timeout_s: float = Field(
        30.0,
        gt=0,
        validation_alias="STOLENTEE_S3_READ_TIMEOUT_S",
        description="Seconds to wait for the S3 endpoint to answer once connected.",
    )
    s3_max_attempts: int = Field(
        4,
        ge=1,
        le=20,
        validation_alias="STOLENTEE_S3_MAX_ATTEMPTS",
        description="Attempts per S3 call (first try included); throttling, 5xx and connection "
        "errors are retried with exponential backoff and jitter.",
    )
    s3_max_pool_connections: int = Field(
        32,
        ge=1,
        validation_alias="STOLENTEE_S3_MAX_POOL_CONNECTIONS",
        description="HTTP connections kept to the S3 endpoint (per process).",
    )
    s3_multipart_threshold_mb: int = Field(
        8,
        ge=5,
        validation_alias="STOLENTEE_S3_MULTIPART_THRESHOLD_MB",
        description="Objects at least this many MiB are uploaded in parts.",
    )
    s3_multipart_chunk_mb: int = Field(
        8,
        ge=5,
        validation_alias="STOLENTEE_S3_MULTIPART_CHUNK_MB",
        description="Part size of multipart uploads, in MiB (S3's minimum is 5).",
    )
    presign_expiry_s: int = Field(
        900,
        ge=60,
        le=7 * 24 * 3600,
        validation_alias="STOLENTEE_PRESIGN_EXPIRY_S",
        description="Lifetime of presigned upload URLs (`POST /v1/uploads/presign`).",
    )
    presign_max_upload_mb: int = Field(
        25,
        ge=1,
        validation_alias="STOLENTEE_PRESIGN_MAX_UPLOAD_MB",
        description="Largest direct browser upload a presigned URL accepts, in MiB.",
    )

    @field_validator("r2_public_domain", "s3_public_domain")
    @classmethod
    def _check_domain(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return value
        if "://" not in value:
            value = "https://" + value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be a domain such as assets.example.com or an https:// URL")
        return value

    @field_validator("r2_endpoint", "s3_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("must be an http:// or https:// URL such as https://s3.example.com")
        return value

    @property
    def active_endpoint(self) -> str:
        """The endpoint of the bucket in use (R2's or the S3 one); empty on local storage."""
        if self.backend == "r2":
            return self.r2_endpoint
        return self.s3_endpoint if self.backend == "s3" else ""

    def s3_profile(self, name: Literal["s3", "r2"]) -> S3Profile:
        """The connection settings of one S3 profile (``r2``: ``R2_*``, ``s3``: ``S3_*``)."""
        doc = PROFILES[name]

        def value(part: str) -> str:
            found = getattr(self, f"{name}_{part}")
            return found.get_secret_value() if isinstance(found, SecretStr) else str(found)

        return S3Profile(
            name=name,
            env_prefix=doc.env_prefix,
            endpoint=value("endpoint"),
            access_key_id=value("access_key_id"),
            secret_access_key=value("secret_access_key"),
            bucket=value("bucket_name"),
            region=value("region"),
            public_domain=value("public_domain"),
        )


@dataclass(frozen=True, slots=True)
class S3Profile:
    """One S3-compatible bucket and the credentials to reach it."""

    name: str
    env_prefix: str
    endpoint: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str
    public_domain: str

    def __repr__(self) -> str:  # never print the secret
        return f"S3Profile(name={self.name!r}, endpoint={self.endpoint!r}, bucket={self.bucket!r})"
