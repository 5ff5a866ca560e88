"""AWS Signature Version 4 for S3 requests, written from AWS's published specification."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    pass


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


_ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """An access key pair; the secret never appears in ``repr``."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """Percent-encode UTF-8 ``text`` as SigV4 wants: unreserved characters kept (and ``/`` in
    paths), everything else ``%XX`` in upper case."""
    return quote(text, safe="/~" if keep_slash else "~")


class SigV4Signer:
    """Signs requests for one access key, region and service (AWS Signature Version 4)."""

    def __init__(self, credentials: S3Credentials, *, region: str, service: str = "s3") -> None:
        self.credentials = credentials
        self.region = region
        self.service = service
        self._keys: dict[str, bytes] = {}  # date -> signing key (one a day)
        self._lock = threading.Lock()

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)  # the dict is replaced, never changed: no lock to read it
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(day)
            if key is None:
                key = ("AWS4" + self.credentials.secret_access_key).encode()
                for part in (day, self.region, self.service, "aws4_request"):
                    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
                self._keys = {day: key}
            return key

    def sign(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        query: Mapping[str, str] | None = None,
        payload_sha256: str = EMPTY_SHA256,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """``headers`` plus ``x-amz-date``, ``x-amz-content-sha256`` and ``Authorization``.

        ``path`` is the already-encoded request path, sent exactly as signed; every header
        given (``host`` included) is signed.
        """
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        signed = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
        signed["x-amz-date"] = amz_date
        signed["x-amz-content-sha256"] = payload_sha256
        names = sorted(signed)
        canonical_query = query_string(query or {})
        canonical_request = "\n".join(
            (
                method,
                path,
                canonical_query,
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                payload_sha256,
            )
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join(
            (_ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(day), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        result = dict(headers)
        result["x-amz-date"] = amz_date
        result["x-amz-content-sha256"] = payload_sha256
        result["Authorization"] = (
            f"{_ALGORITHM} Credential={self.credentials.access_key_id}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return result


def query_string(query: Mapping[str, str]) -> str:
    """The query as signed: sorted, each name and value encoded the SigV4 way."""
    return "&".join(
        f"{uri_encode(name, keep_slash=False)}={uri_encode(value, keep_slash=False)}"
        for name, value in sorted(query.items())
    )
