"""Settings of object storage: the backend, and the R2 and S3 connection profiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from stolentee.config.base import (
    SECTION_CONFIG,
)


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
    r2_endpoint: str = Field(
        "",
        validation_alias="R2_ENDPOINT",
        description="Cloudflare R2 (S3 API) endpoint, e.g. `https://<account>.r2."
        "cloudflarestorage.com`.",
    )
    r2_access_key_id: SecretStr = Field(
        SecretStr(""),
        validation_alias="R2_ACCESS_KEY_ID",
        description="R2 access key id (secret, masked in `config show`).",
    )
    r2_secret_access_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="R2_SECRET_ACCESS_KEY",
        description="R2 secret access key (secret, masked in `config show`).",
    )
    r2_bucket_name: str = Field(
        "",
        validation_alias="R2_BUCKET_NAME",
        description="R2 bucket holding uploads and assets, e.g. `stolentee-assets`.",
    )
    r2_region: str = Field(
        "auto",
        validation_alias="R2_REGION",
        description="Region used to sign R2 requests (R2 expects `auto`).",
    )
    r2_public_domain: str = Field(
        "",
        validation_alias="R2_PUBLIC_DOMAIN",
        description="CDN domain serving the stored objects, e.g. `assets.example.com`. When set, "
        "public URLs are `https://<domain>/<key>` instead of this service's `/uploads/` and "
        "`/assets/` routes. Used by the `local` and `r2` backends.",
    )
    s3_endpoint: str = Field(
        "",
        validation_alias="S3_ENDPOINT",
        description="S3-compatible endpoint of the `s3` profile, e.g. Supabase's "
        "`https://<project>.supabase.co/storage/v1/s3` or MinIO's `http://minio:9000`. Empty: "
        "AWS S3.",
    )
    s3_access_key_id: SecretStr = Field(
        SecretStr(""),
        validation_alias="S3_ACCESS_KEY_ID",
        description="Access key id of the `s3` profile (secret, masked in `config show`).",
    )
    s3_secret_access_key: SecretStr = Field(
        SecretStr(""),
        validation_alias="S3_SECRET_ACCESS_KEY",
        description="Secret access key of the `s3` profile (secret, masked in `config show`).",
    )
    s3_bucket_name: str = Field(
        "",
        validation_alias="S3_BUCKET_NAME",
        description="Bucket of the `s3` profile.",
    )
    s3_region: str = Field(
        "us-east-1",
        validation_alias="S3_REGION",
        description="Region used to sign requests of the `s3` profile (Supabase: the project's "
        "region).",
    )
    s3_public_domain: str = Field(
        "",
        validation_alias="S3_PUBLIC_DOMAIN",
        description="Public base URL of the `s3` profile's objects, e.g. Supabase's "
        "`https://<project>.supabase.co/storage/v1/object/public/<bucket>`. Empty: this "
        "service serves them under `/uploads/` and `/assets/`.",
    )
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

    def s3_profile(self, name: Literal["s3", "r2"]) -> S3Profile:
        """The connection settings of one S3 profile (``r2``: ``R2_*``, ``s3``: ``S3_*``)."""
        if name == "r2":
            return S3Profile(
                name="r2",
                env_prefix="R2_",
                endpoint=self.r2_endpoint,
                access_key_id=self.r2_access_key_id.get_secret_value(),
                secret_access_key=self.r2_secret_access_key.get_secret_value(),
                bucket=self.r2_bucket_name,
                region=self.r2_region,
                public_domain=self.r2_public_domain,
            )
        return S3Profile(
            name="s3",
            env_prefix="S3_",
            endpoint=self.s3_endpoint,
            access_key_id=self.s3_access_key_id.get_secret_value(),
            secret_access_key=self.s3_secret_access_key.get_secret_value(),
            bucket=self.s3_bucket_name,
            region=self.s3_region,
            public_domain=self.s3_public_domain,
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
