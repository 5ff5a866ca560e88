"""The last step of a storage migration: point designs at the new store, and undo that.

After every object of a design (its original and, once processed, its cutout) was copied to the
new store and verified there, :func:`rewrite_urls` sets the design's ``public_base_url`` to the
new store's public base URL (``https://assets.example.com``), so the API serves
``https://assets.example.com/<key>`` for it. Designs with any object not verified keep their
current value. All designs change in one transaction; the returned :class:`UrlChange` list is
what :func:`rollback_urls` needs to put every value back (write it to the migration log with
:meth:`UrlChange.to_record`, read it back with :meth:`UrlChange.from_record`).

The designs table itself is only written by :class:`stolentee.designs.store.DesignStore`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from stolentee.db.engine import Database
from stolentee.designs.store import BaseUrlChange, DesignNotFoundError, DesignStore
from stolentee.errors import ClientError
from stolentee.storage.base import Storage, public_url_for

RECORD_TYPE = "rewrite"
MAX_BASE_URL = 1024  # designs.public_base_url is String(1024)
MAX_DESIGN_ID = 32  # designs.id is String(32)
MAX_BATCH_SIZE = 5000  # keeps each statement's parameters well under SQLite's limit
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


class UrlRewriteError(ClientError):
    """A URL rewrite or its rollback was asked for with unusable input."""

    code = "invalid_url_rewrite"
    title = "Invalid URL rewrite"


class InvalidBaseUrlError(UrlRewriteError):
    """The new public base URL is not an absolute http(s) URL without query or fragment."""

    code = "invalid_base_url"
    title = "Invalid public base URL"


class InvalidChangeRecordError(UrlRewriteError):
    """A record read back from a migration log is not one :meth:`UrlChange.to_record` wrote."""

    code = "invalid_change_record"
    title = "Invalid URL change record"


@dataclass(frozen=True, slots=True)
class UrlChange:
    """One design's ``public_base_url`` went from ``before`` to ``after`` (None: the configured
    storage serves it)."""

    design_id: str
    before: str | None
    after: str | None

    def to_record(self) -> dict[str, Any]:
        """The change as a JSON-ready migration-log record."""
        return {
            "type": RECORD_TYPE,
            "design_id": self.design_id,
            "before": self.before,
            "after": self.after,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> UrlChange:
        """The change a :meth:`to_record` record describes; ``InvalidChangeRecordError`` for
        anything else. Keys other than those it writes are ignored."""
        if not isinstance(record, Mapping):
            raise InvalidChangeRecordError(
                f"a URL change record is a JSON object, not {type(record).__name__}"
            )
        missing = [name for name in ("type", "design_id", "before", "after") if name not in record]
        if missing:
            raise InvalidChangeRecordError(f"URL change record lacks {', '.join(missing)}")
        if record["type"] != RECORD_TYPE:
            raise InvalidChangeRecordError(
                f"record type is {record['type']!r}, not {RECORD_TYPE!r}"
            )
        design_id = record["design_id"]
        if (
            not isinstance(design_id, str)
            or not 0 < len(design_id) <= MAX_DESIGN_ID
            or not design_id.isascii()
            or not design_id.isprintable()
        ):
            raise InvalidChangeRecordError(
                f"design_id must be 1-{MAX_DESIGN_ID} printable ASCII characters, not {design_id!r}"
            )
        values: dict[str, str | None] = {}
        for name in ("before", "after"):
            value = record[name]
            if value is not None and (not isinstance(value, str) or len(value) > MAX_BASE_URL):
                raise InvalidChangeRecordError(
                    f"{name} of design {design_id} must be null or a URL of at most "
                    f"{MAX_BASE_URL} characters, not {value!r}"
                )
            values[name] = value
        return cls(design_id=design_id, before=values["before"], after=values["after"])


@dataclass(frozen=True, slots=True)
class RollbackReport:
    """What :func:`rollback_urls` did.

    ``restored``: changes undone. ``conflicts``: designs whose value is no longer the one the
    rewrite set (changed since), left untouched. ``gone``: designs deleted since
    (``gone_ids`` names them).
    """

    restored: int
    conflicts: list[str]
    gone: int
    gone_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "conflicts": list(self.conflicts),
            "gone": self.gone,
            "gone_ids": list(self.gone_ids),
        }


def normalize_base_url(url: str) -> str:
    """``url`` checked as a public base URL, with scheme and host lower-cased and trailing
    ``/`` removed: ``HTTPS://Assets.Example.com/`` → ``https://assets.example.com``.

    Refused (``InvalidBaseUrlError``): anything but an absolute http or https URL, user info,
    a query or fragment (even empty), whitespace, control or non-ASCII characters (give an
    internationalised host in its ``xn--`` form), empty, ``.`` or ``..`` path segments, and
    URLs over 1024 characters.
    """
    if not isinstance(url, str) or not url:
        raise InvalidBaseUrlError("the public base URL must be a non-empty string")
    if not all(0x21 <= ord(char) < 0x7F for char in url):
        raise InvalidBaseUrlError(
            f"public base URL {url!r} must be ASCII without whitespace or control characters"
        )
    if "?" in url or "#" in url:
        raise InvalidBaseUrlError(f"public base URL {url!r} must not have a query or fragment")
    if "\\" in url:
        raise InvalidBaseUrlError(f"public base URL {url!r} must not contain backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidBaseUrlError(f"public base URL {url!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidBaseUrlError(
            f"public base URL {url!r} must be an absolute http:// or https:// URL"
        )
    if "@" in parts.netloc:
        raise InvalidBaseUrlError(f"public base URL {url!r} must not carry user info")
    host = (parts.hostname or "").lower()
    bracketed = parts.netloc.startswith("[")
    if not host or (not bracketed and not _HOST.fullmatch(host)):
        raise InvalidBaseUrlError(f"public base URL {url!r} has no valid host name")
    path = parts.path.rstrip("/")
    if any(segment in ("", ".", "..") for segment in path.split("/")[1:]):
        raise InvalidBaseUrlError(
            f"public base URL {url!r} must not have empty, '.' or '..' path segments"
        )
    netloc = f"[{host}]" if bracketed else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    normalized = f"{scheme}://{netloc}{path}"
    if len(normalized) > MAX_BASE_URL:
        raise InvalidBaseUrlError(f"public base URL is longer than {MAX_BASE_URL} characters")
    return normalized


def _check_batch_size(batch_size: int) -> None:
    if (
        not isinstance(batch_size, int)
        or isinstance(batch_size, bool)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise UrlRewriteError(f"batch_size must be an integer from 1 to {MAX_BATCH_SIZE}")


def _check_verified(verified: Mapping[str, str]) -> None:
    if not isinstance(verified, Mapping):
        raise UrlRewriteError("verified must map object keys to their sha256")
    for key, digest in verified.items():
        if not isinstance(key, str) or not key:
            raise UrlRewriteError(f"verified object key {key!r} is not a non-empty string")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise UrlRewriteError(
                f"verified object {key!r} has {digest!r} where a lower-case hex sha256 belongs"
            )


def rewrite_urls(
    database: Database,
    *,
    verified: Mapping[str, str],
    new_base_url: str,
    batch_size: int = 500,
) -> list[UrlChange]:
    """Point each design whose objects are all verified in the new store at ``new_base_url``.

    ``verified`` maps object key → sha256 of each object verified in the new store. A design is
    rewritten when its ``original_key`` and its ``cutout_key`` (unless it has none) are both in
    ``verified``; designs already at ``new_base_url`` are left alone and recorded nowhere. All
    updates happen in one transaction, reading ``batch_size`` designs at a time. Returns the
    changes made, by design id; an empty list when there was nothing to do.
    """
    base_url = normalize_base_url(new_base_url)
    _check_batch_size(batch_size)
    _check_verified(verified)
    store = DesignStore(database=database)
    changes = store.rewrite_public_base_url(
        verified_keys=verified, new_base_url=base_url, batch_size=batch_size
    )
    return [UrlChange(c.design_id, c.before, c.after) for c in changes]


def rollback_urls(
    database: Database, changes: Sequence[UrlChange], *, batch_size: int = 500
) -> RollbackReport:
    """Undo ``changes`` (as :func:`rewrite_urls` returned them, oldest first) in one transaction.

    Each design still at ``after`` goes back to ``before``. A design whose value is no longer
    ``after`` is a conflict: left untouched and reported. A design deleted since is counted as
    gone. Nothing else in the table changes.
    """
    _check_batch_size(batch_size)
    for change in changes:
        if not isinstance(change, UrlChange):
            raise UrlRewriteError(f"expected UrlChange, got {type(change).__name__}")
    store = DesignStore(database=database)
    outcome = store.restore_public_base_urls(
        [BaseUrlChange(c.design_id, c.before, c.after) for c in changes], batch_size=batch_size
    )
    return RollbackReport(
        restored=outcome.restored,
        conflicts=outcome.conflicts,
        gone=len(outcome.gone),
        gone_ids=outcome.gone,
    )


def abandoned_urls(
    store: DesignStore, storage: Storage, changes: Sequence[UrlChange], *, undone: bool = False
) -> list[str]:
    """The object URLs the API stopped handing out with ``changes``: each design's original and
    cutout under ``before`` (a rewrite), or under ``after`` when the changes were ``undone`` (a
    rollback). The CDN is told to forget them (``stolentee.cdn.jobs``). Deleted designs are
    skipped: their delete purged them."""
    urls: list[str] = []
    for change in changes:
        try:
            record = store.get(change.design_id)
        except DesignNotFoundError:
            continue
        base = change.after if undone else change.before
        for key in (record.original_key, record.cutout_key):
            if key is None:
                continue
            if base:
                urls.append(public_url_for(key, public_domain=base, public_base_url=""))
            else:
                urls.append(storage.public_url(key))
    return urls
