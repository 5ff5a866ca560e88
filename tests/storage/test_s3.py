"""What only the S3 backend does, against the real SeaweedFS the session starts.

The shared behaviour (put/get/head/list/delete, unicode keys, large objects, ranges) is in the
contract suite, which runs against S3 too.
"""

from __future__ import annotations

import hashlib
import socket
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from typing import Any, cast

import httpx
import pytest
from botocore.exceptions import ResponseStreamingError

from stolentee.errors import (
    ConfigurationError,
    InvalidKeyError,
    ObjectNotFoundError,
    StorageAuthenticationError,
    StorageUnavailableError,
)
from stolentee.storage.backends.local import LocalStorage
from stolentee.storage.base import CHUNK_BYTES
from stolentee.storage.cache_policy import ASSETS_CACHE, UPLOADS_CACHE
from stolentee.storage.factory import build_named_storage, build_storage
from stolentee.storage.migration.copier import migrate
from stolentee.storage.migration.manifest import Manifest
from stolentee.storage.s3.objects import SHA256_METADATA
from stolentee.storage.s3.store import MIB, S3Storage
from tests.conftest import SettingsFactory
from tests.fakes.seaweedfs import SeaweedFS


@pytest.fixture
def bucket(s3_buckets: Callable[[], str]) -> str:
    return s3_buckets()


@pytest.fixture(params=["signed-requests", "boto3"])
def s3(seaweedfs: SeaweedFS, bucket: str, request: pytest.FixtureRequest) -> Iterator[S3Storage]:
    """The store with its per-object operations on signed requests, then on boto3 alone."""
    storage = S3Storage(
        client=cast(Any, seaweedfs.client()),
        bucket=bucket,
        multipart_threshold_bytes=5 * MIB,
        multipart_chunk_bytes=5 * MIB,
        credentials=seaweedfs.credentials() if request.param == "signed-requests" else None,
    )
    yield storage
    storage.close()


def _raw_head(storage: S3Storage, key: str) -> dict[str, Any]:
    return cast(dict[str, Any], storage.client.head_object(Bucket=storage.bucket, Key=key))


def _account_store(seaweedfs: SeaweedFS, bucket: str, *, signed: bool = True) -> S3Storage:
    """A store as the CLI builds one (account known: server-side copies), on signed requests
    or on boto3 alone."""
    return S3Storage(
        client=cast(Any, seaweedfs.client()),
        bucket=bucket,
        account=seaweedfs.access_key_id,
        credentials=seaweedfs.credentials() if signed else None,
    )


def _count_requests(storage: S3Storage, calls: Counter[str], prefix: str = "") -> None:
    """Count ``storage``'s signed GET/HEAD/PUT/copy calls in ``calls`` (as ``prefix + name``)."""
    assert storage.requests is not None
    for name in ("copy", "put", "get", "head"):
        real = getattr(storage.requests, name)

        def counted(*args: Any, _real: Any = real, _name: str = prefix + name, **kw: Any) -> Any:
            calls.update([_name])
            return _real(*args, **kw)

        setattr(storage.requests, name, counted)


def test_objects_carry_cache_headers_content_type_and_sha256(s3: S3Storage) -> None:
    s3.put("uploads/u.png", b"upload", metadata={"owner": "a1"})
    s3.put("assets/cutouts/c.png", b"asset")
    s3.put("originals/o.jpg", b"private")

    upload = _raw_head(s3, "uploads/u.png")
    assert upload["CacheControl"] == UPLOADS_CACHE.cache_control
    assert upload["ContentType"] == "image/png"
    assert upload["Metadata"] == {
        "owner": "a1",
        SHA256_METADATA: hashlib.sha256(b"upload").hexdigest(),
    }
    assert _raw_head(s3, "assets/cutouts/c.png")["CacheControl"] == ASSETS_CACHE.cache_control
    assert "CacheControl" not in _raw_head(s3, "originals/o.jpg")  # not served publicly
    assert s3.head("uploads/u.png").metadata == {"owner": "a1"}  # our own entry is hidden


def test_large_objects_are_uploaded_in_parts(s3: S3Storage) -> None:
    data = bytes(range(256)) * (11 * MIB // 256) + b"tail"
    info = s3.put("assets/big.bin", data)
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    etag = _raw_head(s3, "assets/big.bin")["ETag"]
    assert etag.strip('"').endswith("-3"), f"expected a 3-part upload, ETag {etag}"
    assert s3.get("assets/big.bin") == data
    assert _raw_head(s3, "assets/big.bin")["CacheControl"] == ASSETS_CACHE.cache_control


def test_a_failed_multipart_upload_is_aborted(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_upload_part = s3.client.upload_part
    calls = 0

    def failing_second_part(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionResetError("network went away")
        return real_upload_part(**kwargs)

    monkeypatch.setattr(s3.client, "upload_part", failing_second_part)
    with pytest.raises(ConnectionResetError):
        s3.put("assets/broken.bin", b"x" * (11 * MIB))
    monkeypatch.undo()
    uploads = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert uploads == []
    assert not s3.exists("assets/broken.bin")


def test_an_object_written_by_another_tool_is_hashed_on_head(s3: S3Storage) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key="uploads/foreign.png", Body=b"from elsewhere")
    info = s3.head("uploads/foreign.png")
    assert info.sha256 == hashlib.sha256(b"from elsewhere").hexdigest()
    assert info.content_type  # whatever the server recorded, never empty


def test_our_metadata_names_are_reserved(s3: S3Storage) -> None:
    with pytest.raises(InvalidKeyError, match="stolentee-"):
        s3.put("uploads/x.png", b"x", metadata={"stolentee-sha256": "0" * 64})


def test_a_read_broken_mid_stream_resumes_where_it_stopped(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * (3 * CHUNK_BYTES // 256)
    s3.put("assets/resume.bin", data)
    real_open = s3._open
    opened: list[int] = []

    def open_then_break_once(key: str, start: int, end: int | None) -> tuple[Any, int, int]:
        body, first, last = real_open(key, start, end)
        opened.append(start)
        if len(opened) > 1:
            return body, first, last
        real_read = body.read
        reads = 0

        def read(amount: int) -> bytes:
            nonlocal reads
            reads += 1
            if reads == 2:
                raise ResponseStreamingError(error="connection reset by peer")
            return cast(bytes, real_read(amount))

        body.read = read
        return body, first, last

    monkeypatch.setattr(s3, "_open", open_then_break_once)
    assert s3.get("assets/resume.bin") == data
    assert opened == [0, CHUNK_BYTES]  # the second request starts at the byte reached


@pytest.mark.parametrize("signed_requests", [True, False])
def test_wrong_credentials_are_a_clear_error(
    seaweedfs: SeaweedFS, bucket: str, signed_requests: bool
) -> None:
    wrong = S3Storage(
        client=cast(Any, seaweedfs.client(secret_access_key="not-the-secret")),
        bucket=bucket,
        credentials=seaweedfs.credentials(secret_access_key="not-the-secret")
        if signed_requests
        else None,
    )
    for call in (
        wrong.check,
        lambda: wrong.put("uploads/x.png", b"x"),
        lambda: wrong.head("uploads/x.png"),
        lambda: wrong.get("uploads/x.png"),
        lambda: wrong.exists("uploads/x.png"),
        lambda: wrong.list(),
    ):
        with pytest.raises(StorageAuthenticationError, match="refused the credentials"):
            call()


def test_a_missing_bucket_is_named(seaweedfs: SeaweedFS) -> None:
    storage = S3Storage(client=cast(Any, seaweedfs.client()), bucket="no-such-bucket-here")
    with pytest.raises(ObjectNotFoundError, match="bucket 'no-such-bucket-here' does not exist"):
        storage.check()


def test_an_unreachable_endpoint_is_unavailable(
    make_settings: SettingsFactory, s3_storage_settings: Callable[..., dict[str, Any]]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    overrides = s3_storage_settings(
        "some-bucket", s3_endpoint=f"http://127.0.0.1:{closed_port}", s3_connect_timeout_s=0.5
    )
    storage = build_named_storage(make_settings(storage=overrides), "s3")
    assert isinstance(storage, S3Storage)
    with pytest.raises(StorageUnavailableError, match="cannot reach"):
        storage.check()


def test_built_from_settings(
    make_settings: SettingsFactory,
    s3_storage_settings: Callable[..., dict[str, Any]],
    bucket: str,
    s3_buckets: Callable[[], str],
) -> None:
    settings = make_settings(
        storage={
            "backend": "s3",
            **s3_storage_settings(bucket, s3_public_domain="cdn.example.com"),
        }
    )
    storage = build_storage(settings)
    assert isinstance(storage, S3Storage)
    storage.check()
    storage.put("assets/a.png", b"a")
    assert storage.public_url("assets/a.png") == "https://cdn.example.com/assets/a.png"

    other_bucket = s3_buckets()
    other = build_named_storage(settings, f"s3:{other_bucket}")
    assert isinstance(other, S3Storage)
    assert other.bucket == other_bucket
    assert not other.exists("assets/a.png")


def test_from_settings_boto3_is_built_only_when_needed(
    make_settings: SettingsFactory, s3_storage_settings: Callable[..., dict[str, Any]], bucket: str
) -> None:
    """Per-object work, listings and health go through the signed requests; the boto3 client
    (0.1-0.4 s to build) appears with the first multipart upload, and is observed too."""
    settings = make_settings(storage={"backend": "s3", **s3_storage_settings(bucket)})
    storage = build_storage(settings)
    assert isinstance(storage, S3Storage)
    seen: Counter[tuple[str, str]] = Counter()
    storage.observe(lambda operation, outcome: seen.update([(operation, outcome)]))
    storage.check()
    storage.put("assets/a.png", b"a")
    assert storage.get("assets/a.png") == b"a"
    assert not storage.exists("assets/missing.png")
    assert [entry.key for entry in storage.iterate_keys()] == ["assets/a.png"]
    assert storage._client is None
    assert seen == Counter(
        {
            ("HeadBucket", "ok"): 1,
            ("PutObject", "ok"): 1,
            ("GetObject", "ok"): 1,
            ("HeadObject", "client_error"): 1,
            ("ListObjectsV2", "ok"): 1,
        }
    )
    big = bytes(9 * MIB)  # over the default 8 MiB multipart threshold
    storage.put("assets/big.bin", big)
    assert storage._client is not None
    assert seen[("CompleteMultipartUpload", "ok")] == 1
    assert storage.get("assets/big.bin") == big
    storage.close()


def test_missing_settings_are_named(make_settings: SettingsFactory) -> None:
    with pytest.raises(ConfigurationError, match="R2_ENDPOINT, R2_BUCKET_NAME"):
        build_named_storage(make_settings(), "r2")
    with pytest.raises(ConfigurationError, match="unknown storage"):
        build_named_storage(make_settings(), "ftp:somewhere")


def test_presigned_post_enforces_its_conditions(s3: S3Storage) -> None:
    form = s3.presign_upload(
        "uploads/direct.png", content_type="image/png", max_bytes=1000, expires_s=600
    )

    def post(fields: dict[str, str], body: bytes) -> httpx.Response:
        return httpx.post(form.url, data=fields, files={"file": ("d.png", body, "image/png")})

    assert post(form.fields, b"p" * 2000).status_code == 400  # too large
    assert post({**form.fields, "Content-Type": "text/html"}, b"p").status_code == 403
    assert post({**form.fields, "key": "uploads/elsewhere.png"}, b"p").status_code == 403
    assert not s3.exists("uploads/direct.png")
    assert not s3.exists("uploads/elsewhere.png")

    assert post(form.fields, b"p" * 500).status_code in (200, 201, 204)
    info = s3.head("uploads/direct.png")
    assert (info.size, info.content_type) == (500, "image/png")
    assert info.sha256 == hashlib.sha256(b"p" * 500).hexdigest()
    assert s3.cache_control("uploads/direct.png") == UPLOADS_CACHE.cache_control


def test_server_side_copy_between_buckets_of_one_account(
    seaweedfs: SeaweedFS, s3_buckets: Callable[[], str], tmp_path: Any
) -> None:
    def store(bucket: str, account: str) -> S3Storage:
        return S3Storage(client=cast(Any, seaweedfs.client()), bucket=bucket, account=account)

    source = store(s3_buckets(), seaweedfs.access_key_id)
    dest = store(s3_buckets(), seaweedfs.access_key_id)
    source.put("assets/a.png", b"server side", metadata={"design": "d1"})
    assert dest.copy_object_from(source, "assets/a.png") is True
    copied = dest.head("assets/a.png")
    original = source.head("assets/a.png")
    assert (copied.sha256, copied.content_type, copied.metadata) == (
        original.sha256,
        original.content_type,
        original.metadata,
    )
    assert dest.cache_control("assets/a.png") == ASSETS_CACHE.cache_control
    with pytest.raises(ObjectNotFoundError):
        dest.copy_object_from(source, "assets/missing.png")

    elsewhere = store(s3_buckets(), "another-account")
    assert elsewhere.copy_object_from(source, "assets/a.png") is False
    assert store(s3_buckets(), "").copy_object_from(source, "assets/a.png") is False
    local = LocalStorage(root=tmp_path / "local")
    assert dest.copy_object_from(local, "assets/a.png") is False


def test_migration_copies_server_side_and_streams_what_it_cannot_verify(
    seaweedfs: SeaweedFS, s3_buckets: Callable[[], str], tmp_path: Any
) -> None:
    source = S3Storage(
        client=cast(Any, seaweedfs.client()), bucket=s3_buckets(), account=seaweedfs.access_key_id
    )
    dest = S3Storage(
        client=cast(Any, seaweedfs.client()), bucket=s3_buckets(), account=seaweedfs.access_key_id
    )
    for n in range(5):
        source.put(f"uploads/{n}.png", bytes([n]) * 1000)
    # Written by another tool: no sha256 to verify a server-side copy against.
    source.client.put_object(Bucket=source.bucket, Key="uploads/foreign.png", Body=b"foreign")
    calls: Counter[str] = Counter()
    dest.client.meta.events.register(
        "before-call.s3.*", lambda model, **_: calls.update([model.name])
    )
    with Manifest.open(tmp_path / "m.jsonl") as manifest:
        report = migrate(source, dest, manifest=manifest, concurrency=2)
        verified = manifest.verified_keys()
    assert report.ok and report.copied == 6
    assert calls["CopyObject"] == 6  # tried for every object ...
    assert calls["PutObject"] == 1  # ... and streamed for the one it could not verify
    assert verified["uploads/foreign.png"] == hashlib.sha256(b"foreign").hexdigest()
    for n in range(5):
        assert dest.get(f"uploads/{n}.png") == bytes([n]) * 1000


def test_migration_on_signed_requests_copies_server_side(
    seaweedfs: SeaweedFS, s3_buckets: Callable[[], str], tmp_path: Any
) -> None:
    """The same as above with the stores built as in production (credentials known): the copy
    and the read-back go through the signed requests, and never through boto3."""
    source, dest = (_account_store(seaweedfs, s3_buckets()) for _ in range(2))
    for n in range(5):
        source.put(f"uploads/{n}.png", bytes([n]) * 1000)
    source.client.put_object(Bucket=source.bucket, Key="uploads/foreign.png", Body=b"foreign")
    boto_calls: Counter[str] = Counter()
    dest.client.meta.events.register(
        "before-call.s3.*", lambda model, **_: boto_calls.update([model.name])
    )
    wire_calls: Counter[str] = Counter()
    _count_requests(dest, wire_calls)
    with Manifest.open(tmp_path / "m.jsonl") as manifest:
        report = migrate(source, dest, manifest=manifest, concurrency=2)
    assert report.ok and report.copied == 6
    # The foreign object: copied, read back without a sha256 to check, so streamed and read back.
    assert wire_calls == Counter(copy=6, get=7, put=1)
    assert not boto_calls  # listings too go through the signed requests
    for n in range(5):
        assert dest.get(f"uploads/{n}.png") == bytes([n]) * 1000
    assert dest.get("uploads/foreign.png") == b"foreign"


def test_a_rerun_without_read_back_trusts_the_manifest_and_the_listings(
    seaweedfs: SeaweedFS, s3_buckets: Callable[[], str], tmp_path: Any
) -> None:
    """--no-verify-existing: objects verified before and unchanged in both listings (same
    ETags as recorded) cost no request; a source rewritten or a copy replaced since is looked
    at again and copied."""
    source, dest = (_account_store(seaweedfs, s3_buckets()) for _ in range(2))
    for n in range(6):
        source.put(f"assets/{n}.png", bytes([n]) * 2000)
    with Manifest.open(tmp_path / "m.jsonl") as manifest:
        first = migrate(source, dest, manifest=manifest, concurrency=2)
        assert first.ok and first.copied == 6
        recorded = manifest.latest_objects()
        assert all(r.source_etag and r.dest_etag for r in recorded.values())

        calls: Counter[str] = Counter()
        _count_requests(source, calls, "source.")
        _count_requests(dest, calls, "dest.")

        second = migrate(source, dest, manifest=manifest, concurrency=2, verify_existing=False)
        assert second.ok and (second.copied, second.skipped) == (0, 6)
        assert calls == Counter()  # listings only
        assert set(manifest.verified_keys()) == {f"assets/{n}.png" for n in range(6)}

        source.put("assets/1.png", b"new bytes" * 200)  # rewritten in the source
        # replaced in the destination behind our back (same size, other bytes, no metadata)
        dest.client.put_object(Bucket=dest.bucket, Key="assets/2.png", Body=b"\xff" * 2000)
        third = migrate(source, dest, manifest=manifest, concurrency=2, verify_existing=False)
        assert third.ok and (third.copied, third.skipped) == (2, 4)
        verified = manifest.verified_keys()
    assert dest.get("assets/1.png") == b"new bytes" * 200
    assert dest.get("assets/2.png") == bytes([2]) * 2000
    assert verified["assets/1.png"] == hashlib.sha256(b"new bytes" * 200).hexdigest()


@pytest.mark.parametrize("signed_requests", [True, False])
@pytest.mark.parametrize(
    "key",
    [
        "assets/sp ace.bin",
        "assets/pl+us.bin",
        "assets/été 2024 + — résumé.bin",
        "assets/👕 +~=&%20.bin",
    ],
)
def test_server_side_copy_of_awkward_keys(
    seaweedfs: SeaweedFS, s3_buckets: Callable[[], str], key: str, signed_requests: bool
) -> None:
    source, dest = (
        _account_store(seaweedfs, s3_buckets(), signed=signed_requests) for _ in range(2)
    )
    source.put(key, b"awkward")
    assert [entry.key for entry in source.iterate_keys()] == [key]
    assert dest.copy_object_from(source, key) is True
    assert dest.get(key) == b"awkward"
    assert [(entry.key, entry.size) for entry in dest.iterate_keys("assets/")] == [(key, 7)]


def test_signed_requests_keep_connections_alive_and_survive_abandoned_reads(
    seaweedfs: SeaweedFS, bucket: str
) -> None:
    storage = S3Storage(
        client=cast(Any, seaweedfs.client()), bucket=bucket, credentials=seaweedfs.credentials()
    )
    assert storage.requests is not None
    data = bytes(range(256)) * (3 * CHUNK_BYTES // 256)
    storage.put("assets/keep.bin", data)
    for _ in range(10):
        assert storage.get("assets/keep.bin") == data
        assert storage.head("assets/keep.bin").size == len(data)
    assert storage.requests.pool.num_connections == 1  # one connection, reused throughout

    chunks = cast(Generator[bytes, None, None], storage.open_range("assets/keep.bin"))
    assert next(chunks) == data[:CHUNK_BYTES]
    chunks.close()  # abandoned half way: its connection is dropped, not reused mid-body
    assert storage.get("assets/keep.bin") == data
    assert storage.head("assets/keep.bin").size == len(data)
    storage.close()


def test_endpoints_behind_an_environment_proxy_stay_on_boto3(
    make_settings: SettingsFactory,
    s3_storage_settings: Callable[..., dict[str, Any]],
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore honours HTTP(S)_PROXY; the signed requests do not, so such stores use boto3."""
    settings = make_settings(storage={"backend": "s3", **s3_storage_settings(bucket)})
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    proxied = build_storage(settings)
    assert isinstance(proxied, S3Storage) and proxied.requests is None
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    direct = build_storage(settings)
    assert isinstance(direct, S3Storage) and direct.requests is not None
    direct.check()
