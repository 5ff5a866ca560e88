"""S3-compatible storage (Cloudflare R2, Supabase Storage's S3 API, MinIO, SeaweedFS, AWS S3).

Every object carries its content type, its prefix's CDN ``Cache-Control`` and its sha256 in user
metadata (ETags are never trusted as content hashes); reads that fail mid-stream resume with a
ranged GET; large objects go up in parts, aborted on failure. How and why: ``docs/storage.md``.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from botocore.exceptions import (
    ConnectionClosedError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError

from stolentee.config import StorageSettings
from stolentee.errors import (
    ConfigurationError,
    InvalidKeyError,
    ObjectNotFoundError,
    RangeNotSatisfiableError,
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
    resolve_content_type,
    resolve_range,
    validate_key,
    validate_prefix,
)
from stolentee.storage.cache_policy import cache_policy_for
from stolentee.storage.s3.answers import ObjectHeaders, object_headers
from stolentee.storage.s3.client import (
    behind_proxy,
    build_client,
    check_profile,
    observe_client,
    requests_for,
    signed_requests,
)
from stolentee.storage.s3.errors import translate_errors
from stolentee.storage.s3.multipart import put_multipart, spooled
from stolentee.storage.s3.objects import (
    RESERVED_METADATA_PREFIX,
    SHA256_METADATA,
    headers_of_boto,
    object_info,
    unquoted_etag,
)
from stolentee.storage.s3.presign import PresignedUpload, presign_post
from stolentee.storage.s3.requests import PooledBody, S3Requests, S3StreamError
from stolentee.storage.s3.signing import S3Credentials

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

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
_T = TypeVar("_T")


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
            requests = requests_for(client, credentials)
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
                    observe_client(self._client, observer)
            return self._client

    def observe(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(operation, outcome)`` once per S3 operation, after retries, with
        boto3's operation names and an outcome of ``ok``, ``client_error``, ``server_error``
        or ``connection_error``: both request paths are seen."""
        with self._client_lock:
            self._observers.append(callback)
            if self._client is not None:
                observe_client(self._client, callback)
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
        proxied = bool(profile.endpoint) and behind_proxy(profile.endpoint)
        if profile.endpoint and not proxied:
            check_profile(profile)
            requests = signed_requests(profile, settings, credentials)
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
        with spooled(data, max_memory_bytes=self.multipart_threshold_bytes) as (body, size, sha256):
            extra: dict[str, Any] = {
                "ContentType": content_type,
                "Metadata": {**user_metadata, SHA256_METADATA: sha256},
            }
            policy = cache_policy_for(key)
            if policy is not None:
                extra["CacheControl"] = policy.cache_control
            with self._errors(key):
                if size >= self.multipart_threshold_bytes:
                    etag = put_multipart(
                        self.client,
                        bucket=self.bucket,
                        key=key,
                        body=body,
                        part_bytes=self.multipart_chunk_bytes,
                        extra=extra,
                    )
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
            store_etag=unquoted_etag(etag),
        )

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
            return PooledBody(answer), object_headers(answer.headers)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range:
            kwargs["Range"] = byte_range
        response = self.client.get_object(**kwargs)
        return response["Body"], headers_of_boto(response)

    def _head_object(self, key: str) -> ObjectHeaders:
        if self.requests is not None:
            return self.requests.head(self.bucket, key)
        return headers_of_boto(self.client.head_object(Bucket=self.bucket, Key=key))

    def head(self, key: str) -> ObjectInfo:
        """The object's information; hashes the object once when it lacks our sha256."""
        validate_key(key)
        with self._errors(key):
            headers = self._head_object(key)
        info = object_info(key, headers)
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
        info = object_info(key, headers)
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
                        store_etag=unquoted_etag(item.get("ETag", "")),
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
        """A POST policy letting a browser upload ``key`` directly (see :mod:`.presign`)."""
        with self._errors(key):
            return presign_post(
                self.client,
                bucket=self.bucket,
                key=key,
                content_type=content_type,
                max_bytes=max_bytes,
                expires_s=expires_s,
                metadata=metadata,
            )

    def _errors(self, key: str | None) -> AbstractContextManager[None]:
        """botocore's and the signed requests' exceptions as the project's errors."""
        return translate_errors(
            location=self.location, bucket=self.bucket, profile=self.label, key=key
        )
