"""The one exception tree of stolentee.

Every error the service can report to a client derives from :class:`StolenteeError` and carries
its HTTP status, a stable machine-readable ``code`` and a short human ``title``. The web layer
(``api/errors.py``) is the only place that turns these into HTTP responses; domain packages raise
them without knowing about HTTP frameworks.
"""

from __future__ import annotations

from typing import Any, ClassVar


class StolenteeError(Exception):
    """Root of every error stolentee raises on purpose."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        self.detail = detail or self.title
        self.headers = headers or {}  # HTTP headers the response must carry (Retry-After...)
        self.extra = extra
        super().__init__(self.detail)

    def to_dict(self) -> dict[str, Any]:
        """The error as one entry of the ``{"errors": [...]}`` response body."""
        entry: dict[str, Any] = {"title": self.title, "code": self.code, "detail": self.detail}
        if self.extra:
            entry["meta"] = self.extra
        return entry


# --- configuration ---------------------------------------------------------------------------


class ConfigurationError(StolenteeError):
    """The settings are invalid or inconsistent (raised at start-up, not per request)."""

    code = "invalid_configuration"
    title = "Invalid configuration"


# --- client errors (4xx) -----------------------------------------------------------------------


class ClientError(StolenteeError):
    """Something the client sent is wrong; never a server fault."""

    status_code = 400
    code = "invalid_request"
    title = "Invalid request"


class InvalidKeyError(ClientError):
    """A storage key is malformed or tries to escape the storage root."""

    code = "invalid_key"
    title = "Invalid storage key"


class NotFoundError(ClientError):
    status_code = 404
    code = "not_found"
    title = "Not found"


class ObjectNotFoundError(NotFoundError):
    """No stored object under that key."""

    code = "object_not_found"
    title = "Object not found"


class RangeNotSatisfiableError(ClientError):
    status_code = 416
    code = "range_not_satisfiable"
    title = "Requested range not satisfiable"


class AuthenticationError(ClientError):
    """No API key, or one we do not know (Remove.bg answers 403 for both)."""

    status_code = 403
    code = "auth_failed"
    title = "Authentication failed"


class ApiKeyRequiredError(AuthenticationError):
    """A route that names the missing key apart from a wrong one (401, not Remove.bg's 403)."""

    status_code = 401
    code = "auth_required"
    title = "API key required"


class RateLimitedError(ClientError):
    status_code = 429
    code = "rate_limit_exceeded"
    title = "Rate limit exceeded"


class ServerBusyError(RateLimitedError):
    """Every removal slot is taken and the queue is full, or stayed so past the queue wait.

    A load condition the client resolves by retrying later, hence 429 with ``Retry-After``.
    """

    code = "server_busy"
    title = "Server busy"


class ConflictError(ClientError):
    status_code = 409
    code = "conflict"
    title = "Conflict"


class StorageConflictError(ConflictError):
    """The key cannot be stored beside an existing key (for example ``a`` and ``a/b`` on disk)."""

    code = "storage_key_conflict"
    title = "Storage key conflict"


# --- server-side failures (5xx) ----------------------------------------------------------------


class ServiceUnavailableError(StolenteeError):
    status_code = 503
    code = "service_unavailable"
    title = "Service unavailable"


class DeadlineExceededError(ServiceUnavailableError):
    """The request did not finish within its deadline."""

    code = "deadline_exceeded"
    title = "Deadline exceeded"


class DatabaseUnavailableError(ServiceUnavailableError):
    code = "database_unavailable"
    title = "Database unavailable"


class DatabaseBusyError(ServiceUnavailableError):
    """No pooled connection became free in time."""

    code = "database_busy"
    title = "Database busy"


class QueryTimeoutError(StolenteeError):
    """A query ran longer than the application-level query timeout and was cancelled."""

    status_code = 504
    code = "query_timeout"
    title = "Database query timed out"


class StorageError(StolenteeError):
    """The storage backend failed (disk full, permission denied, remote error)."""

    status_code = 502
    code = "storage_error"
    title = "Storage error"


class InsufficientStorageError(StorageError):
    """No space left: a full disk or quota under the data directory or the database, or a
    free-space floor (``STOLENTEE_MIN_FREE_DISK_MB``) reached. Retrying later can work."""

    status_code = 507
    code = "insufficient_storage"
    title = "Insufficient storage"


class StorageAuthenticationError(StorageError):
    """The storage service refused the configured credentials (wrong key, no permission)."""

    code = "storage_credentials_rejected"
    title = "Storage credentials rejected"


class StorageUnavailableError(StorageError):
    """The storage service could not be reached or kept timing out after retries."""

    status_code = 503
    code = "storage_unavailable"
    title = "Storage unavailable"


# --- images (codes follow Remove.bg's API where it has one) ------------------------------------


class ImageError(ClientError):
    """An uploaded image cannot be used."""

    code = "failed_to_read_image"
    title = "Failed to read image"


class InvalidImageError(ImageError):
    """Empty, corrupt or truncated image data."""


class UnsupportedImageTypeError(ImageError):
    code = "invalid_file_type"
    title = "Invalid file type"


class ResolutionTooHighError(ImageError):
    code = "resolution_too_high"
    title = "Resolution too high"


class FileTooLargeError(ClientError):
    status_code = 413
    code = "file_too_large"
    title = "File too large"


class InvalidOptionError(ClientError):
    """A processing option has a value we do not accept; subclasses name the option."""

    code = "invalid_option"
    title = "Invalid option"


class InvalidSizeError(InvalidOptionError):
    code = "invalid_size"
    title = "Invalid size"


class InvalidTypeError(InvalidOptionError):
    code = "invalid_type"
    title = "Invalid type"


class InvalidFormatError(InvalidOptionError):
    code = "invalid_format"
    title = "Invalid format"


class InvalidChannelsError(InvalidOptionError):
    code = "invalid_channels"
    title = "Invalid channels"


class InvalidRoiError(InvalidOptionError):
    code = "invalid_roi"
    title = "Invalid region of interest"


class InvalidCropMarginError(InvalidOptionError):
    code = "invalid_crop_margin"
    title = "Invalid crop margin"


class InvalidScaleError(InvalidOptionError):
    code = "invalid_scale"
    title = "Invalid scale"


class InvalidPositionError(InvalidOptionError):
    code = "invalid_position"
    title = "Invalid position"


class InvalidBgColorError(InvalidOptionError):
    code = "invalid_bg_color"
    title = "Invalid background color"


class UnknownForegroundError(ClientError):
    """Nothing in the image was recognised as a subject."""

    code = "unknown_foreground"
    title = "Could not identify foreground in image"


# --- image URLs (netsafe.py) -------------------------------------------------------------------


class ImageUrlError(ClientError):
    """The image URL is refused by policy: scheme, host, allow-list or address."""

    code = "invalid_image_url"
    title = "Invalid image URL"


class TooManyRedirectsError(ImageUrlError):
    """The URL redirected more often than ``STOLENTEE_IMAGE_URL_MAX_REDIRECTS`` allows."""


class ImageUrlDisabledError(ClientError):
    """Image URLs are not accepted by this server (``STOLENTEE_IMAGE_URL_ENABLED`` is off)."""

    code = "image_url_disabled"
    title = "Image URLs are disabled"


class ImageDownloadError(ClientError):
    """The URL was acceptable but fetching it failed (network error, non-2xx answer, …)."""

    code = "failed_to_download_image"
    title = "Failed to download image"


class ImageDownloadTimeoutError(ImageDownloadError):
    """Fetching the URL (redirects and DNS included) took longer than the time allowed."""
