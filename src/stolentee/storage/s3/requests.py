"""Signed HTTP requests for the per-object S3 operations: GET, HEAD, PUT and CopyObject.

A migration makes two or three of these per object and the service one per upload or download,
so their cost in the client decides how fast both are. Through boto3 each costs a good deal of
CPU in the client (request model, event hooks, response parsing; benchmarks/decisions.md, "S3
requests"); here a request is signed with AWS
Signature Version 4 (written from AWS's published specification) and sent on a pooled
keep-alive connection of :mod:`stolentee.storage.s3.http_wire` (a lean HTTP/1.1 client: urllib3 and
http.client cost more CPU than the signing), for a fraction of that. boto3 keeps every other
operation (listings, multipart uploads, presigned forms, buckets), where its cost does not
matter.

Behaviour matches the boto3 client of :mod:`stolentee.storage.s3.store`: path-style addressing,
connect and read timeouts, and retries with exponential backoff and full jitter (on connection
errors, timeouts, 5xx, 429 and throttling codes) up to ``max_attempts`` attempts in all. A PUT
signs the sha256 of its body (the service checks it) instead of ``UNSIGNED-PAYLOAD``. Error
answers become :class:`S3ResponseError` with S3's code and message, which
:meth:`stolentee.storage.s3.store.S3Storage._errors` maps onto the project's errors as it does
botocore's.
"""

from __future__ import annotations

import random
import re
import ssl
import time
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

from stolentee.storage.s3.answers import ListedPage, ObjectHeaders, object_headers, parse_listing
from stolentee.storage.s3.http_errors import WireError
from stolentee.storage.s3.http_response import Headers, Response
from stolentee.storage.s3.http_wire import ConnectionPool
from stolentee.storage.s3.signing import (
    EMPTY_SHA256,
    S3Credentials,
    SigV4Signer,
    query_string,
    uri_encode,
)

if TYPE_CHECKING:
    pass

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError"}
)
_BACKOFF_BASE_S = 0.05
_BACKOFF_CAP_S = 20.0
_ERROR_FIELD = re.compile(rb"<(Code|Message)>([^<]*)</\1>")
_USER_AGENT = "stolentee-s3"


class S3ResponseError(Exception):
    """The service answered with an error status (or a 200 carrying an ``<Error>``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if message else f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message


class S3ConnectionError(Exception):
    """The service could not be reached, or stopped answering, on every attempt."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class S3StreamError(Exception):
    """Reading the body of a streaming GET failed (connection broken or timed out).

    :class:`stolentee.storage.s3.store.S3Storage` resumes an interrupted read on it (with a ranged
    GET); ``timed_out`` says whether a read timeout caused it.
    """

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class ObjectStream:
    """The answer to a streaming GET: ``status``, ``headers``, and the body read with
    ``read(amount)``; ``release_conn()`` (or ``close()``) when done. The connection returns to
    the pool by itself once the body has been read to its end, and is dropped when it was not.
    """

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: Response) -> None:
        self._response = response
        self.status = response.status
        self.headers: Headers = response.headers

    def read(self, amount: int | None = None) -> bytes:
        try:
            return self._response.read(amount)
        except WireError as exc:
            raise S3StreamError(str(exc), timed_out=exc.timed_out) from exc

    @property
    def data(self) -> bytes:
        try:
            return self._response.data
        except WireError as exc:
            raise S3StreamError(str(exc), timed_out=exc.timed_out) from exc

    @property
    def length_remaining(self) -> int | None:
        """Bytes of the body not read yet: 0 once read to its end, None when unknown."""
        return self._response.length_remaining

    def release_conn(self) -> None:
        self._response.release_conn()

    def close(self) -> None:
        self._response.close()


class S3Requests:
    """GET, HEAD, PUT and CopyObject on one S3 endpoint, signed and retried (see module doc)."""

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        credentials: S3Credentials,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_attempts: int,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context``: for https endpoints, what to trust (default: the system's trust
        store, certificates and host names verified); up to ``max_connections`` connections are
        kept open for reuse."""
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
        self.endpoint = endpoint
        self.base_path = parts.path.rstrip("/")
        self.host_header = parts.netloc.rpartition("@")[2]
        default_port = 443 if parts.scheme == "https" else 80
        if parts.port == default_port:
            self.host_header = (
                parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
            )
        self.signer = SigV4Signer(credentials, region=region)
        self.max_attempts = max(1, max_attempts)
        # Called once per operation, after retries: (boto3's operation name, outcome).
        self.observers: list[Callable[[str, str], None]] = []
        self.pool = ConnectionPool(
            parts.hostname,
            parts.port or default_port,
            tls=parts.scheme == "https",
            ssl_context=ssl_context,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            max_idle=max(1, max_connections),
        )

    def close(self) -> None:
        self.pool.close()

    def path(self, bucket: str, key: str) -> str:
        """The encoded path of ``key`` in ``bucket`` (path-style addressing)."""
        return f"{self.base_path}/{uri_encode(bucket, keep_slash=False)}/" + uri_encode(
            key, keep_slash=True
        )

    # --- operations ----------------------------------------------------------------------

    def get(self, bucket: str, key: str, *, byte_range: str | None = None) -> ObjectStream:
        """A streaming GET (the caller reads and releases the body); ``byte_range`` as in a
        ``Range`` header value."""
        headers = {"Range": byte_range} if byte_range else {}
        return ObjectStream(
            self._send("GetObject", "GET", self.path(bucket, key), headers, stream=True)
        )

    def head(self, bucket: str, key: str) -> ObjectHeaders:
        answer = self._send("HeadObject", "HEAD", self.path(bucket, key), {})
        return object_headers(answer.headers)

    def head_bucket(self, bucket: str) -> None:
        """Succeeds when ``bucket`` exists and these credentials may use it."""
        self._send("HeadBucket", "HEAD", self.bucket_path(bucket), {})

    def bucket_path(self, bucket: str) -> str:
        return f"{self.base_path}/{uri_encode(bucket, keep_slash=False)}"

    def list_page(self, bucket: str, *, prefix: str = "", token: str | None = None) -> ListedPage:
        """One page (up to 1,000 keys) of ``ListObjectsV2`` under ``prefix``."""
        query = {"list-type": "2", "encoding-type": "url"}
        if prefix:
            query["prefix"] = prefix
        if token:
            query["continuation-token"] = token
        answer = self._send("ListObjectsV2", "GET", self.bucket_path(bucket), {}, query=query)
        return parse_listing(answer.data)

    def put(
        self,
        bucket: str,
        key: str,
        body: IO[bytes] | bytes,
        *,
        size: int,
        sha256: str,
        headers: Mapping[str, str],
    ) -> str:
        """Upload ``size`` bytes of ``body`` (a rewindable stream from its current position, or
        bytes) whose sha256 is ``sha256``; returns the new object's ETag."""
        sent = {**headers, "Content-Length": str(size)}
        answer = self._send(
            "PutObject", "PUT", self.path(bucket, key), sent, body=body, payload_sha256=sha256
        )
        return answer.headers.get("etag", "")

    def copy(self, bucket: str, key: str, *, source_bucket: str, source_key: str) -> str:
        """Server-side copy keeping the source's headers and metadata; the copy's ETag."""
        source = f"/{uri_encode(source_bucket, keep_slash=False)}/" + uri_encode(
            source_key, keep_slash=True
        )
        headers = {"x-amz-copy-source": source, "x-amz-metadata-directive": "COPY"}
        answer = self._send("CopyObject", "PUT", self.path(bucket, key), headers)
        match = re.search(rb"<ETag>([^<]*)</ETag>", answer.data)
        return match.group(1).decode("utf-8", "replace").replace("&quot;", '"') if match else ""

    # --- sending -------------------------------------------------------------------------

    def _send(
        self,
        operation: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        body: IO[bytes] | bytes | None = None,
        payload_sha256: str = EMPTY_SHA256,
        stream: bool = False,
        query: Mapping[str, str] | None = None,
    ) -> Response:
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        attempt = 1
        while True:
            if body is not None and not isinstance(body, bytes):
                body.seek(start)
            signed = self.signer.sign(
                method,
                path,
                {"host": self.host_header, **headers},
                query=query,
                payload_sha256=payload_sha256,
            )
            signed["User-Agent"] = _USER_AGENT
            try:
                answer = self.pool.request(
                    method,
                    path + (f"?{query_string(query)}" if query else ""),
                    signed,
                    body=body,
                    preload=not stream,
                )
            except WireError as exc:
                if attempt >= self.max_attempts:
                    self._observed(operation, "connection_error")
                    raise S3ConnectionError(
                        f"{method} {self.endpoint}: {exc}", timed_out=exc.timed_out
                    ) from exc
                attempt = self._back_off(attempt)
                continue
            if answer.status < 300:
                embedded = _embedded_error(answer) if "x-amz-copy-source" in headers else None
                if embedded is None:
                    self._observed(operation, "ok")
                    return answer
                error = embedded
            else:
                error = _error_of(method, answer)
            if attempt >= self.max_attempts or not _retryable(error):
                self._observed(operation, "client_error" if error.status < 500 else "server_error")
                raise error
            attempt = self._back_off(attempt, answer.headers.get("retry-after"))

    def _observed(self, operation: str, outcome: str) -> None:
        for observer in self.observers:
            observer(operation, outcome)

    @staticmethod
    def _back_off(attempt: int, retry_after: str | None = None) -> int:
        """Sleep before the next attempt (full jitter, capped; at least a Retry-After)."""
        delay = random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt))  # noqa: S311
        if retry_after and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), _BACKOFF_CAP_S))
        time.sleep(delay)
        return attempt + 1


def _error_of(method: str, answer: Response) -> S3ResponseError:
    """The error an error answer carries (a HEAD's has no body: the status says it all)."""
    try:
        data = b"" if method == "HEAD" else answer.data
    except WireError:
        data = b""
    finally:
        answer.release_conn()
    fields = _error_fields(data)
    code = fields.get("Code") or {404: "NotFound", 403: "Forbidden"}.get(answer.status, "")
    return S3ResponseError(answer.status, code or str(answer.status), fields.get("Message", ""))


def _embedded_error(answer: Response) -> S3ResponseError | None:
    """S3 may answer a CopyObject with 200 and an ``<Error>`` body (it failed mid-copy)."""
    data: bytes = answer.data
    if b"<Error>" not in data:
        return None
    fields = _error_fields(data)
    return S3ResponseError(500, fields.get("Code", "InternalError"), fields.get("Message", ""))


def _error_fields(data: bytes) -> dict[str, str]:
    return {
        name.decode(): value.decode("utf-8", "replace")
        for name, value in _ERROR_FIELD.findall(data)
    }


def _retryable(error: S3ResponseError) -> bool:
    return error.status in _RETRY_STATUSES or error.code in _RETRY_CODES


class PooledBody:
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
