"""S3 errors as the project's errors: a missing object or bucket, refused credentials, an
unreachable or failing service, each with its own status code and a message naming the store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from stolentee.errors import (
    ObjectNotFoundError,
    RangeNotSatisfiableError,
    StolenteeError,
    StorageAuthenticationError,
    StorageError,
    StorageUnavailableError,
)
from stolentee.storage.s3.requests import S3ConnectionError, S3ResponseError

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_AUTH_CODES = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}


@contextmanager
def translate_errors(
    *, location: str, bucket: str, profile: str, key: str | None
) -> Iterator[None]:
    """Translate botocore's and the signed requests' exceptions into the project's errors."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message") or code or str(exc)
        raise _error_for(
            location=location,
            bucket=bucket,
            profile=profile,
            key=key,
            code=code,
            status=status,
            message=message,
        ) from exc
    except S3ResponseError as exc:
        raise _error_for(
            location=location,
            bucket=bucket,
            profile=profile,
            key=key,
            code=exc.code,
            status=exc.status,
            message=exc.message or exc.code,
        ) from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise StorageUnavailableError(f"cannot reach {location}: {exc}") from exc
    except S3ConnectionError as exc:
        raise StorageUnavailableError(f"cannot reach {location}: {exc}") from exc
    except BotoCoreError as exc:
        what = f"{key!r} in {location}" if key is not None else location
        raise StorageError(f"{what}: {exc}") from exc


def _error_for(
    *,
    location: str,
    bucket: str,
    profile: str,
    key: str | None,
    code: str,
    status: int,
    message: str,
) -> StolenteeError:
    """The project's error for an S3 error answer (``code``, HTTP ``status``)."""
    what = f"{key!r} in {location}" if key is not None else location
    if code == "NoSuchBucket" or (key is None and status == 404):
        return ObjectNotFoundError(f"bucket {bucket!r} does not exist")
    if code in _NOT_FOUND_CODES or status == 404:
        return ObjectNotFoundError(f"no object under key {key!r}")
    if code == "InvalidRange" or status == 416:
        return RangeNotSatisfiableError(f"byte range outside {what}")
    if code in _AUTH_CODES or status in (401, 403):
        return StorageAuthenticationError(
            f"{location} refused the credentials of the {profile!r} profile "
            f"({code or status}: {message}); check its access key id and secret"
        )
    if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout"):
        return StorageUnavailableError(
            f"{what}: the storage service kept failing ({code or status}: {message})"
        )
    return StorageError(f"{what}: {code or status}: {message}")
