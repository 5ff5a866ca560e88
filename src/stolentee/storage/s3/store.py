"""S3-compatible storage (Cloudflare R2, Supabase Storage's S3 API, MinIO, SeaweedFS, AWS S3).

Every object is written with its content type, the CDN ``Cache-Control`` of its prefix (see
:mod:`stolentee.storage.cache_policy`) and its sha256 in the user metadata
``x-amz-meta-stolentee-sha256``; ETags are never trusted as content hashes (multipart and R2
ETags are not MD5s). An object written by another tool (a browser upload through a presigned
POST, the old store of a migration) has no such metadata: :meth:`S3Storage.head` then reads it
once to hash it.

The boto3 client is configured the way R2 and MinIO need (``s3v4`` signatures, path-style
addressing, checksums only when an operation requires them; the newer default checksums break
uploads to both) with connect/read timeouts and botocore's ``standard`` retry mode (exponential
backoff with jitter on throttling, 5xx and connection errors). Reads that fail mid-stream are
resumed with a ranged GET from the byte reached. Objects from the multipart threshold up are
uploaded in parts, aborted on failure so no orphaned parts are billed.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError

from stolentee.config import S3Profile, StorageSettings
from stolentee.errors import (
    ConfigurationError,
    InvalidKeyError,
    ObjectNotFoundError,
    RangeNotSatisfiableError,
    StolenteeError,
    StorageAuthenticationError,
    StorageError,
    StorageUnavailableError,
)
from stolentee.storage.base import (
    CHUNK_BYTES,
    DEFAULT_LIST_LIMIT,
    KeyEntry,
    ListPage,
    ObjectInfo,
    PagedStorage,
    Storage,
    check_metadata,
    iter_chunks,
    resolve_content_type,
    resolve_range,
    validate_key,
    validate_prefix,
)
from stolentee.storage.cache_policy import cache_policy_for
from stolentee.storage.s3.requests import (
    ObjectHeaders,
    ObjectStream,
    S3ConnectionError,
    S3Credentials,
    S3Requests,
    S3ResponseError,
    S3StreamError,
    object_headers,
)

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

SHA256_METADATA = "stolentee-sha256"
RESERVED_METADATA_PREFIX = "stolentee-"
MIB = 1024 * 1024
_LIST_HEAD_THREADS = 16
_STREAM_ERRORS = (
    S3StreamError,  # the signed requests' own HTTP client
    ReadTimeoutError,  # botocore and urllib3, below: boto3's streaming bodies
    ResponseStreamingError,
    ConnectionClosedError,
    ProtocolError,
    Urllib3Error,
)
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_AUTH_CODES = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}
_T = TypeVar("_T")


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


@dataclass(frozen=True, slots=True)
class PresignedUpload:
    """A form a browser POSTs straight to the bucket: ``url`` plus the ``fields`` to send."""

    url: str
    fields: dict[str, str]
    key: str
    expires_at: datetime
    max_bytes: int
    content_type: str


class S3Storage(PagedStorage):
    """The storage contract over one bucket of an S3-compatible service."""

    name = "s3"

    def __init__(
        self,
        *,
        client: S3Client | None = None,
        bucket: str,
        public_domain: str = "",
        public_base_url: str = "",
        multipart_threshold_bytes: int = 8 * MIB,
        multipart_chunk_bytes: int = 8 * MIB,
        stream_attempts: int = 4,
        label: str = "s3",
        account: str = "",
        credentials: S3Credentials | None = None,
        requests: S3Requests | None = None,
        connect: Callable[[], S3Client] | None = None,
    ) -> None:
        """``client``, or ``connect`` to build it on first use (with ``requests`` given, a
        migration or the service may never need boto3 at all: building a client costs
        ~0.1-0.4 s)."""
        if multipart_chunk_bytes < 5 * MIB:
            raise ValueError("multipart parts must be at least 5 MiB (S3's minimum)")
        if client is None and (connect is None or requests is None):
            raise ValueError("give a boto3 client, or requests and a way to connect")
        self._client = client
        self._connect = connect
        self._client_lock = threading.Lock()
        self._observers: list[Callable[[str, str], None]] = []
        self.bucket = bucket
        self.public_domain = public_domain
        self.public_base_url = public_base_url
        self.multipart_threshold_bytes = multipart_threshold_bytes
        self.multipart_chunk_bytes = multipart_chunk_bytes
        self.stream_attempts = stream_attempts
        self.label = label
        # Who the credentials are (the access key id): two stores on one endpoint with the same
        # account can copy between each other server-side. Empty: never assumed.
        self.account = account
        self._pool_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        # With the credentials known, GET/HEAD/PUT/CopyObject and listings go through the lean
        # signed requests of :mod:`stolentee.storage.s3.requests` (same endpoint, region,
        # timeouts, retries and pool size as the boto3 client); without, through boto3.
        if requests is None and credentials is not None and client is not None:
            requests = _requests_for(client, credentials)
        self.requests = requests

    @property
    def client(self) -> S3Client:
        """The boto3 client (multipart uploads, presigned forms, buckets; everything without
        ``requests``), built on first use when the store was given a way to connect."""
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                assert self._connect is not None
                self._client = self._connect()
                for observer in self._observers:
                    _observe_client(self._client, observer)
            return self._client

    def observe(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(operation, outcome)`` once per S3 operation, after retries, with
        boto3's operation names and an outcome of ``ok``, ``client_error``, ``server_error``
        or ``connection_error``: both request paths are seen."""
        with self._client_lock:
            self._observers.append(callback)
            if self._client is not None:
                _observe_client(self._client, callback)
        if self.requests is not None:
            self.requests.observers.append(callback)

    @classmethod
    def from_settings(
        cls, settings: StorageSettings, profile_name: str, *, public_base_url: str = ""
    ) -> S3Storage:
        """The bucket of the ``r2`` or ``s3`` profile, client configured from ``settings``."""
        if profile_name not in ("r2", "s3"):
            raise ConfigurationError(f"unknown S3 profile {profile_name!r} (use r2 or s3)")
        profile = settings.s3_profile("r2" if profile_name == "r2" else "s3")
        credentials = S3Credentials(profile.access_key_id, profile.secret_access_key)
        client: S3Client | None = None
        requests: S3Requests | None = None
        # The usual case (R2, Supabase, MinIO): boto3 only when needed. On AWS itself the
        # client resolves the regional endpoint first. An endpoint behind an HTTP(S)_PROXY from
        # the environment (honoured by botocore, not by the signed requests) stays on boto3.
        proxied = bool(profile.endpoint) and _behind_proxy(profile.endpoint)
        if profile.endpoint and not proxied:
            check_profile(profile)
            requests = S3Requests(
                endpoint=profile.endpoint,
                region=profile.region or "us-east-1",
                credentials=credentials,
                connect_timeout_s=settings.s3_connect_timeout_s,
                read_timeout_s=settings.s3_read_timeout_s,
                max_attempts=settings.s3_max_attempts,
                max_connections=settings.s3_max_pool_connections,
            )
        else:
            client = build_client(profile, settings)
        return cls(
            client=client,
            connect=lambda: build_client(profile, settings),
            requests=requests,
            bucket=profile.bucket,
            public_domain=profile.public_domain,
            public_base_url=public_base_url,
            multipart_threshold_bytes=settings.s3_multipart_threshold_mb * MIB,
            multipart_chunk_bytes=settings.s3_multipart_chunk_mb * MIB,
            stream_attempts=settings.s3_max_attempts,
            label=profile_name,
            account=profile.access_key_id,
            credentials=None if proxied else credentials,
        )

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, endpoint={self.endpoint!r})"

    @property
    def endpoint(self) -> str:
        if self.requests is not None:
            return self.requests.endpoint
        return str(self.client.meta.endpoint_url)

    @property
    def location(self) -> str:
        """A human-readable name of the bucket, for logs, health and migration reports."""
        return f"{self.label}:{self.bucket} at {self.endpoint}"

    def close(self) -> None:
        """Release the listing thread pool and the client's connections."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        if self.requests is not None:
            self.requests.close()
        with self._client_lock:
            if self._client is not None:
                self._client.close()

    # --- health ----------------------------------------------------------------------------

    def check(self) -> None:
        """Raise a ``StorageError`` unless the bucket is reachable with these credentials."""
        with self._errors(None):
            if self.requests is not None:
                self.requests.head_bucket(self.bucket)
            else:
                self.client.head_bucket(Bucket=self.bucket)

    def ensure_bucket(self) -> bool:
        """Create the bucket when it does not exist (tests, MinIO set-up); ``True`` if created."""
        try:
            self.check()
            return False
        except ObjectNotFoundError:
            pass
        with self._errors(None):
            self.client.create_bucket(Bucket=self.bucket)
        return True

    # --- writes ----------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload ``data`` (bytes, or a stream spooled to a temporary file while hashing)."""
        validate_key(key)
        content_type = resolve_content_type(key, content_type)
        user_metadata = check_metadata(metadata)
        if any(name.startswith(RESERVED_METADATA_PREFIX) for name in user_metadata):
            raise InvalidKeyError(f"metadata names starting {RESERVED_METADATA_PREFIX!r} are ours")
        with self._spooled(data) as (body, size, sha256):
            extra: dict[str, Any] = {
                "ContentType": content_type,
                "Metadata": {**user_metadata, SHA256_METADATA: sha256},
            }
            policy = cache_policy_for(key)
            if policy is not None:
                extra["CacheControl"] = policy.cache_control
            with self._errors(key):
                if size >= self.multipart_threshold_bytes:
                    etag = self._put_multipart(key, body, extra)
                elif self.requests is not None:
                    headers = {"Content-Type": content_type}
                    if "CacheControl" in extra:
                        headers["Cache-Control"] = extra["CacheControl"]
                    for name, value in extra["Metadata"].items():
                        headers[f"x-amz-meta-{name}"] = value
                    etag = self.requests.put(
                        self.bucket, key, body, size=size, sha256=sha256, headers=headers
                    )
                else:
                    answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
                    etag = answer.get("ETag", "")
        # Everything is known without a HEAD, except the server's Last-Modified: the local
        # clock stands in for it (S3 keeps whole seconds; a HEAD later gives the server's).
        return ObjectInfo(
            key=key,
            size=size,
            content_type=content_type,
            sha256=sha256,
            last_modified=datetime.now(UTC),
            metadata=user_metadata,
            store_etag=_unquoted(etag),
        )

    @contextmanager
    def _spooled(self, data: bytes | BinaryIO) -> Iterator[tuple[IO[bytes], int, str]]:
        """``data`` as a seekable body with its size and sha256, spilling big streams to disk."""
        hasher = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=self.multipart_threshold_bytes) as spool:
            size = 0
            for chunk in iter_chunks(data):
                hasher.update(chunk)
                spool.write(chunk)
                size += len(chunk)
            spool.seek(0)
            yield spool, size, hasher.hexdigest()

    def _put_multipart(self, key: str, body: IO[bytes], extra: dict[str, Any]) -> str:
        """Upload ``body`` in parts; the object's ETag."""
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)[
            "UploadId"
        ]
        try:
            parts = []
            number = 1
            while chunk := body.read(self.multipart_chunk_bytes):
                answer = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                number += 1
            completed = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
            return str(completed.get("ETag", ""))
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (BotoCoreError, ClientError):
                logger.warning("could not abort multipart upload %s of %r", upload_id, key)
            raise

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``False`` when it was not stored."""
        if not self.exists(key):
            return False
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    # --- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """The whole object."""
        return b"".join(self.open_range(key))

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``start``..``end`` inclusive; the first request (and its errors) is eager."""
        validate_key(key)
        if start < 0 or (end is not None and end < start):
            raise RangeNotSatisfiableError(f"byte range {start}-{end} is not valid")
        first_body, first, last = self._open(key, start, end)
        return self._stream(key, first_body, first, last)

    def _open(self, key: str, start: int, end: int | None) -> tuple[Any, int, int]:
        """GET the range, check it against the object's size; ``(body, first, last)``."""
        byte_range = (
            f"bytes={start}-{'' if end is None else end}" if start or end is not None else None
        )
        try:
            with self._errors(key):
                body, headers = self._get_object(key, byte_range)
        except RangeNotSatisfiableError:
            size = self.head(key).size  # S3 says 416; say how big the object is
            resolve_range(size, start, end)
            raise
        size = headers.size
        try:
            first, last = resolve_range(size, start, end)  # S3 clamps an end past the object
        except RangeNotSatisfiableError:
            body.close()
            raise
        return body, first, last

    def _stream(self, key: str, body: Any, first: int, last: int) -> Iterator[bytes]:
        position = first
        attempts = 1
        try:
            while position <= last:
                try:
                    chunk = body.read(min(CHUNK_BYTES, last + 1 - position))
                except _STREAM_ERRORS as exc:
                    body.close()
                    if attempts >= self.stream_attempts:
                        raise StorageUnavailableError(
                            f"reading {key!r} from {self.location} failed at byte {position}: {exc}"
                        ) from exc
                    attempts += 1
                    logger.info("resuming read of %r at byte %d after %s", key, position, exc)
                    body, _, _ = self._open(key, position, last)
                    continue
                if not chunk:
                    raise StorageError(
                        f"{key!r} ended at byte {position}, before byte {last} (changed while "
                        "being read?)"
                    )
                position += len(chunk)
                yield chunk
        finally:
            body.close()

    def _get_object(self, key: str, byte_range: str | None = None) -> tuple[Any, ObjectHeaders]:
        """A GET: its body (``read(n)``, ``close()``) and what its headers say."""
        if self.requests is not None:
            answer = self.requests.get(self.bucket, key, byte_range=byte_range)
            return _PooledBody(answer), object_headers(answer.headers)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range:
            kwargs["Range"] = byte_range
        response = self.client.get_object(**kwargs)
        return response["Body"], _headers_of_boto(response)

    def _head_object(self, key: str) -> ObjectHeaders:
        if self.requests is not None:
            return self.requests.head(self.bucket, key)
        return _headers_of_boto(self.client.head_object(Bucket=self.bucket, Key=key))

    def head(self, key: str) -> ObjectInfo:
        """The object's information; hashes the object once when it lacks our sha256."""
        validate_key(key)
        with self._errors(key):
            headers = self._head_object(key)
        info = _info(key, headers)
        if not info.sha256:
            info = replace(info, sha256=self._hash(key, info.size))
        return info

    def open_object(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """One GET: the object's information from its headers, and its bytes.

        ``sha256`` is ``""`` for an object written without our metadata.
        """
        validate_key(key)
        with self._errors(key):
            body, headers = self._get_object(key)
        info = _info(key, headers)
        size = info.size
        if size == 0:
            body.close()
            return info, iter(())
        return info, self._stream(key, body, 0, size - 1)

    def iterate_keys(self, prefix: str = "") -> Iterator[KeyEntry]:
        """Keys and sizes straight from ``ListObjectsV2`` (no HEAD per object)."""
        validate_prefix(prefix)
        if self.requests is not None:
            yield from self._iterate_keys_signed(prefix)
            return
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            with self._errors(None):
                answer = self.client.list_objects_v2(**kwargs)
            for item in answer.get("Contents", []):
                if "Key" in item:
                    yield KeyEntry(
                        key=item["Key"],
                        size=int(item.get("Size", 0)),
                        store_etag=_unquoted(item.get("ETag", "")),
                    )
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    def _iterate_keys_signed(self, prefix: str) -> Iterator[KeyEntry]:
        assert self.requests is not None
        token: str | None = None
        while True:
            with self._errors(None):
                page = self.requests.list_page(self.bucket, prefix=prefix, token=token)
            for item in page.objects:
                yield KeyEntry(key=item.key, size=item.size, store_etag=item.etag)
            if page.next_token is None:
                return
            token = page.next_token

    def _hash(self, key: str, size: int) -> str:
        hasher = hashlib.sha256()
        if size:
            for chunk in self.open_range(key, 0, size - 1):
                hasher.update(chunk)
        return hasher.hexdigest()

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored (one HEAD request)."""
        validate_key(key)
        try:
            with self._errors(key):
                self._head_object(key)
        except ObjectNotFoundError:
            return False
        return True

    def cache_control(self, key: str) -> str | None:
        """The ``Cache-Control`` stored with the object (what the CDN will send)."""
        validate_key(key)
        with self._errors(key):
            return self._head_object(key).cache_control

    def list(
        self,
        prefix: str = "",
        *,
        start_after: str | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> ListPage:
        """One page of ``ListObjectsV2`` (UTF-8 byte order), each object's HEAD run in parallel."""
        validate_prefix(prefix)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        # One key more than asked for tells whether another page exists (some servers say
        # IsTruncated when the page is merely full).
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        keys: builtins.list[str] = []
        truncated = True
        while truncated and len(keys) <= limit:
            kwargs["MaxKeys"] = min(limit + 1 - len(keys), DEFAULT_LIST_LIMIT)
            with self._errors(None):
                answer = self.client.list_objects_v2(**kwargs)
            keys.extend(item["Key"] for item in answer.get("Contents", []) if "Key" in item)
            truncated = bool(answer.get("IsTruncated"))
            if keys:
                kwargs["StartAfter"] = keys[-1]
        more = len(keys) > limit
        keys = keys[:limit]
        objects = [info for info in self._map(self._head_or_none, keys) if info is not None]
        return ListPage(objects=objects, next_start_after=keys[-1] if more and keys else None)

    def _head_or_none(self, key: str) -> ObjectInfo | None:
        """HEAD of a listed key; ``None`` when it was deleted since (or is not a valid key)."""
        try:
            return self.head(key)
        except (ObjectNotFoundError, InvalidKeyError):
            return None

    def _map(self, function: Callable[[str], _T], keys: Sequence[str]) -> builtins.list[_T]:
        if len(keys) <= 1:
            return [function(key) for key in keys]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=_LIST_HEAD_THREADS, thread_name_prefix="s3-head"
                )
            pool = self._pool
        return list(pool.map(function, keys))

    # --- server-side copy -------------------------------------------------------------------

    def copy_object_from(self, source: Storage, key: str) -> bool:
        """``CopyObject`` from ``source``'s bucket when it is on this endpoint with the same
        account; the object keeps its content type, ``Cache-Control`` and metadata (sha256
        included). ``False`` when not possible (the caller streams the object instead)."""
        validate_key(key)
        if not (
            isinstance(source, S3Storage)
            and self.account
            and source.account == self.account
            and source.endpoint == self.endpoint
        ):
            return False
        try:
            with self._errors(key):
                if self.requests is not None:
                    self.requests.copy(
                        self.bucket, key, source_bucket=source.bucket, source_key=key
                    )
                else:
                    self.client.copy_object(
                        Bucket=self.bucket,
                        Key=key,
                        CopySource={"Bucket": source.bucket, "Key": key},
                        MetadataDirective="COPY",
                    )
        except ObjectNotFoundError:
            raise
        except StorageError as exc:  # e.g. over CopyObject's 5 GB limit: stream it instead
            logger.info("server-side copy of %r failed (%s); streaming it", key, exc.detail)
            return False
        return True

    # --- presigned uploads -----------------------------------------------------------------

    def presign_upload(
        self,
        key: str,
        *,
        content_type: str,
        max_bytes: int,
        expires_s: int,
        metadata: dict[str, str] | None = None,
    ) -> PresignedUpload:
        """A POST policy letting a browser upload ``key`` directly, within the conditions.

        The bucket enforces the size range, the exact content type and the cache header; the
        form expires after ``expires_s``. The object has no sha256 metadata (the browser cannot
        compute it for us), so its first ``head`` hashes it.
        """
        validate_key(key)
        content_type = resolve_content_type(key, content_type)
        user_metadata = check_metadata(metadata)
        fields: dict[str, str] = {"Content-Type": content_type}
        conditions: list[Any] = [
            ["content-length-range", 1, max_bytes],
            {"Content-Type": content_type},
        ]
        policy = cache_policy_for(key)
        if policy is not None:
            fields["Cache-Control"] = policy.cache_control
            conditions.append({"Cache-Control": policy.cache_control})
        for name, value in user_metadata.items():
            fields[f"x-amz-meta-{name}"] = value
            conditions.append({f"x-amz-meta-{name}": value})
        with self._errors(key):
            answer = self.client.generate_presigned_post(
                Bucket=self.bucket,
                Key=key,
                Fields=fields,
                Conditions=conditions,
                ExpiresIn=expires_s,
            )
        return PresignedUpload(
            url=answer["url"],
            fields={name: str(value) for name, value in answer["fields"].items()},
            key=key,
            expires_at=datetime.fromtimestamp(datetime.now(UTC).timestamp() + expires_s, tz=UTC),
            max_bytes=max_bytes,
            content_type=content_type,
        )

    # --- errors ----------------------------------------------------------------------------

    @contextmanager
    def _errors(self, key: str | None) -> Iterator[None]:
        """Translate botocore's and the signed requests' exceptions into the project's errors."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            message = error.get("Message") or code or str(exc)
            raise self._error_for(key, code, status, message) from exc
        except S3ResponseError as exc:
            raise self._error_for(key, exc.code, exc.status, exc.message or exc.code) from exc
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
            raise StorageUnavailableError(f"cannot reach {self.location}: {exc}") from exc
        except S3ConnectionError as exc:
            raise StorageUnavailableError(f"cannot reach {self.location}: {exc}") from exc
        except BotoCoreError as exc:
            what = f"{key!r} in {self.location}" if key is not None else self.location
            raise StorageError(f"{what}: {exc}") from exc

    def _error_for(self, key: str | None, code: str, status: int, message: str) -> StolenteeError:
        """The project's error for an S3 error answer (``code``, HTTP ``status``)."""
        what = f"{key!r} in {self.location}" if key is not None else self.location
        if code == "NoSuchBucket" or (key is None and status == 404):
            return ObjectNotFoundError(f"bucket {self.bucket!r} does not exist")
        if code in _NOT_FOUND_CODES or status == 404:
            return ObjectNotFoundError(f"no object under key {key!r}")
        if code == "InvalidRange" or status == 416:
            return RangeNotSatisfiableError(f"byte range outside {what}")
        if code in _AUTH_CODES or status in (401, 403):
            return StorageAuthenticationError(
                f"{self.location} refused the credentials of the {self.label!r} profile "
                f"({code or status}: {message}); check its access key id and secret"
            )
        if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout"):
            return StorageUnavailableError(
                f"{what}: the storage service kept failing ({code or status}: {message})"
            )
        return StorageError(f"{what}: {code or status}: {message}")


class _PooledBody:
    """The body of a streaming GET made with :class:`S3Requests`: read it, then ``close()``
    hands the connection back to the pool when the body was read to its end (and drops the
    connection when it was abandoned half way)."""

    def __init__(self, response: ObjectStream) -> None:
        self._response = response

    def read(self, amount: int) -> bytes:
        return self._response.read(amount)

    def close(self) -> None:
        response = self._response
        # Unread bytes (an abandoned read, or a body of unknown length) would poison the
        # connection for the next request: drop it instead of pooling it.
        if response.length_remaining != 0:
            response.close()
        response.release_conn()


def _behind_proxy(endpoint: str) -> bool:
    """Whether the environment routes ``endpoint`` through a proxy (as botocore would)."""
    parts = urlsplit(endpoint)
    proxies = urllib.request.getproxies()
    if not proxies.get(parts.scheme):
        return False
    return not urllib.request.proxy_bypass(parts.netloc)


def _observe_client(client: S3Client, callback: Callable[[str, str], None]) -> None:
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


def _requests_for(client: S3Client, credentials: S3Credentials) -> S3Requests:
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


def _headers_of_boto(answer: Any) -> ObjectHeaders:
    """The same view of a boto3 ``get_object``/``head_object`` answer as of wire headers."""
    size = int(answer["ContentLength"])
    first, length = 0, size
    content_range = answer.get("ContentRange")
    if content_range:
        size = int(content_range.rsplit("/", 1)[1])
        first = int(content_range.split(" ", 1)[1].split("-", 1)[0])
    return ObjectHeaders(
        size=size,
        content_type=answer.get("ContentType") or "",
        last_modified=_utc(answer["LastModified"]),
        metadata={name.lower(): value for name, value in answer.get("Metadata", {}).items()},
        etag=answer.get("ETag", ""),
        cache_control=answer.get("CacheControl"),
        range_first=first,
        range_length=length,
    )


def _info(key: str, headers: ObjectHeaders) -> ObjectInfo:
    """An ``ObjectInfo`` from a HEAD's or GET's headers (sha256 ``""`` if not ours)."""
    metadata = dict(headers.metadata)
    sha256 = metadata.pop(SHA256_METADATA, "")
    metadata = {k: v for k, v in metadata.items() if not k.startswith(RESERVED_METADATA_PREFIX)}
    return ObjectInfo(
        key=key,
        size=headers.size,
        content_type=headers.content_type or resolve_content_type(key, None),
        sha256=sha256 if len(sha256) == 64 else "",
        last_modified=headers.last_modified,
        metadata=metadata,
        store_etag=_unquoted(headers.etag),
    )


def _unquoted(etag: str) -> str:
    """An ETag without its quotes (listings and headers do not always agree on them)."""
    return etag.strip().removeprefix("W/").strip('"')


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
