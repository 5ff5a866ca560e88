"""``stolentee migrate-storage`` end to end against the real SeaweedFS: killed, resumed, verified.

The command runs as a subprocess, as an operator runs it, so a SIGKILL really kills it mid-copy
(torn manifest line, half-done objects and all).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from stolentee.db import migrate as migrate_schema
from stolentee.db.engine import Database
from stolentee.designs.store import DesignStore
from stolentee.storage.backends.local import LocalStorage
from stolentee.storage.migration.manifest import Manifest
from stolentee.storage.s3.objects import SHA256_METADATA
from stolentee.storage.s3.store import MIB
from tests.conftest import SettingsFactory
from tests.fakes.seaweedfs import REGION, SeaweedFS

STOLENTEE = str(Path(sys.executable).with_name("stolentee"))
OBJECT_COUNT = 2000
KILLS = 3


def _env(server: SeaweedFS, data_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("STOLENTEE_", "S3_", "R2_", "AWS_"))
    }
    env.update(
        S3_ENDPOINT=server.endpoint,
        S3_ACCESS_KEY_ID=server.access_key_id,
        S3_SECRET_ACCESS_KEY=server.secret_access_key,
        S3_REGION=REGION,
        STOLENTEE_DATA_DIR=str(data_dir),
        STOLENTEE_S3_MAX_ATTEMPTS="3",
        COLUMNS="120",
    )
    return env


def _run(
    env: dict[str, str], *args: str, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STOLENTEE, "migrate-storage", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _object_lines(manifest: Path) -> int:
    try:
        return manifest.read_bytes().count(b'"type":"object"')
    except FileNotFoundError:
        return 0


def _fill_source(client: Any, bucket: str, rng: random.Random) -> dict[str, bytes]:
    """2,000 objects: mostly small, some 100 KiB-1 MiB, unicode keys, one 11 MiB multipart."""
    objects: dict[str, bytes] = {}
    for n in range(OBJECT_COUNT - 1):
        size = rng.choice([0, 10, 700, 4096, 30_000]) if n % 20 else rng.randint(100_000, MIB)
        key = f"uploads/{n % 7}/{n:05d}.png" if n % 9 else f"assets/ünïcödé/日本-{n:05d}.png"
        objects[key] = rng.randbytes(size)
    objects["assets/big/multipart.bin"] = rng.randbytes(11 * MIB)
    for key, data in objects.items():
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType="image/png",
            Metadata={SHA256_METADATA: hashlib.sha256(data).hexdigest(), "owner": "shop"},
        )
    return objects


def _assert_destination_holds(client: Any, bucket: str, objects: dict[str, bytes]) -> None:
    listed: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        listed.update(item["Key"] for item in page.get("Contents", []))
    assert listed == set(objects)
    for key in [*random.Random(7).sample(sorted(objects), 200), "assets/big/multipart.bin"]:
        answer = client.get_object(Bucket=bucket, Key=key)
        assert answer["Body"].read() == objects[key], key
        assert answer["ContentType"] == "image/png"
        assert answer["Metadata"]["owner"] == "shop"


def test_killed_three_times_then_resumed_ends_verified_and_complete(
    seaweedfs: SeaweedFS, s3_buckets: Callable[[], str], tmp_path: Path
) -> None:
    rng = random.Random(2026)
    client: Any = seaweedfs.client()
    source, dest = s3_buckets(), s3_buckets()
    objects = _fill_source(client, source, rng)
    env = _env(seaweedfs, tmp_path / "data")
    manifest = tmp_path / "manifest.jsonl"
    args = ["--from", f"s3:{source}", "--to", f"s3:{dest}", "--manifest", str(manifest)]

    dry = _run(env, *args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert len(dry.stdout.splitlines()) == OBJECT_COUNT
    assert f"Would copy {OBJECT_COUNT} objects" in dry.stderr

    # Each run appends a record per object it gets through (skipped ones too): kill each one at
    # a random point of its own pass over the 2,000 objects.
    for kill_after in rng.sample(range(50, OBJECT_COUNT - 200), KILLS):
        kill_after += _object_lines(manifest)
        process = subprocess.Popen(
            [STOLENTEE, "migrate-storage", *args, "--concurrency", "8"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 240
        while _object_lines(manifest) < kill_after and process.poll() is None:
            assert time.monotonic() < deadline, "the migration made no progress"
            time.sleep(rng.uniform(0.005, 0.05))
        assert process.poll() is None, "the migration finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    records = Manifest.open(manifest)
    runs_killed = len(records.records("run"))
    assert runs_killed == KILLS
    assert len(records.records("run_end")) == 0  # every one of them died mid-copy
    assert 0 < len(records.verified_keys()) < OBJECT_COUNT
    records.close()

    final = _run(env, *args, "--concurrency", "8")
    assert final.returncode == 0, final.stdout + final.stderr
    assert "Every object is in the destination and verified." in final.stdout

    with Manifest.open(manifest) as done:
        verified = done.verified_keys()
        run_ends = done.records("run_end")
    assert verified == {key: hashlib.sha256(data).hexdigest() for key, data in objects.items()}
    assert len(run_ends) == 1
    assert run_ends[0]["failed"] == run_ends[0]["missing"] == 0
    assert run_ends[0]["skipped"] > 0  # the killed runs' work was kept, not redone
    assert run_ends[0]["copied"] + run_ends[0]["skipped"] == OBJECT_COUNT
    _assert_destination_holds(client, dest, objects)

    # A copy corrupted in place (same size, different bytes, stale sha256) is found and redone.
    victim = next(key for key, data in objects.items() if len(data) == 30_000)
    original = objects[victim]
    client.put_object(
        Bucket=dest,
        Key=victim,
        Body=bytes(b ^ 0xFF for b in original),
        ContentType="image/png",
        Metadata={SHA256_METADATA: hashlib.sha256(original).hexdigest(), "owner": "shop"},
    )
    again = _run(env, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    with Manifest.open(manifest) as done:
        last = done.latest_objects()[victim]
        run_end = done.records("run_end")[-1]
    assert (last.status, last.verified, last.note) == (
        "copied",
        True,
        "replaced corrupt destination object",
    )
    assert (run_end["copied"], run_end["skipped"]) == (1, OBJECT_COUNT - 1)
    assert client.get_object(Bucket=dest, Key=victim)["Body"].read() == original
    assert client.head_object(Bucket=source, Key=victim)["ContentLength"] == len(original)


def test_local_to_s3_and_back_then_delete_source_only_when_verified(
    seaweedfs: SeaweedFS, s3_buckets: Callable[[], str], tmp_path: Path
) -> None:
    env = _env(seaweedfs, tmp_path / "data")
    local = LocalStorage(root=tmp_path / "local")
    contents = {f"uploads/{n}.png": os.urandom(n * 100) for n in range(30)}
    for key, data in contents.items():
        local.put(key, data, metadata={"design": str(len(data))})
    bucket = s3_buckets()
    to_s3 = ["--from", f"local:{tmp_path / 'local'}", "--to", f"s3:{bucket}"]

    # Deleting before anything was copied is refused, and deletes nothing.
    refused = _run(env, *to_s3, "--delete-source", "--yes")
    assert refused.returncode == 1
    assert "no manifest" in refused.stderr
    copied = _run(env, *to_s3)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    manifest_file = tmp_path / "data" / "migrations"
    assert len(list(manifest_file.glob("*.jsonl"))) == 1

    local.put("uploads/late.png", b"arrived after the copy")
    refused = _run(env, *to_s3, "--delete-source", "--yes")
    assert refused.returncode == 1
    assert "delete_source_refused" in refused.stderr
    assert len(list(local.iterate())) == 31

    backup = tmp_path / "backup"
    back = _run(env, "--from", f"s3:{bucket}", "--to", f"local:{backup}")
    assert back.returncode == 0, back.stdout + back.stderr
    restored = LocalStorage(root=backup)
    for key, data in contents.items():
        assert restored.get(key) == data
        assert restored.head(key).metadata == {"design": str(len(data))}

    assert _run(env, *to_s3).returncode == 0  # copies the late object too
    deleted = _run(env, *to_s3, "--delete-source", "--yes")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert list(local.iterate()) == []
    lines = [
        json.loads(line)
        for line in next(manifest_file.glob("local_*.jsonl")).read_text().splitlines()
    ]
    assert lines[-1] == {"type": "delete_source", "deleted": 31, "prefix": ""}


def test_bad_arguments_are_clear_errors(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    env = _env(seaweedfs, tmp_path / "data")
    unknown = _run(env, "--from", "ftp:x", "--to", "local")
    assert unknown.returncode == 1
    assert "unknown storage 'ftp:x'" in unknown.stderr
    both = _run(env, "--from", "local", "--to", "s3:x", "--dry-run", "--delete-source")
    assert both.returncode == 1
    assert "choose one of" in both.stderr
    missing = _run(env, "--from", "local", "--to", "s3:no-such-bucket-anywhere")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr


@pytest.mark.parametrize("secret", ["wrong-secret"])
def test_wrong_credentials_fail_before_copying(
    seaweedfs: SeaweedFS, s3_buckets: Callable[[], str], tmp_path: Path, secret: str
) -> None:
    env = _env(seaweedfs, tmp_path / "data") | {"S3_SECRET_ACCESS_KEY": secret}
    LocalStorage(root=tmp_path / "local").put("uploads/a.png", b"a")
    result = _run(env, "--from", f"local:{tmp_path / 'local'}", "--to", f"s3:{s3_buckets()}")
    assert result.returncode == 1
    assert "storage_credentials_rejected" in result.stderr


def _designs_snapshot(database: Database) -> list[dict[str, Any]]:
    with database.connect() as conn:
        rows = conn.execute(text("SELECT * FROM designs ORDER BY id")).mappings().all()
    return [dict(row) for row in rows]


def _purged(database: Database) -> list[list[str]]:
    """The URLs of every queued CDN purge, oldest first."""
    with database.connect() as conn:
        rows = conn.execute(
            text("SELECT payload FROM jobs WHERE kind = 'cdn_purge' ORDER BY created_at")
        ).all()
    return [list((json.loads(p) if isinstance(p, str) else p)["urls"]) for (p,) in rows]


def test_rewrite_then_rollback_urls_restores_the_database_exactly(
    seaweedfs: SeaweedFS,
    s3_buckets: Callable[[], str],
    tmp_path: Path,
    make_settings: SettingsFactory,
) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(service={"data_dir": data_dir})
    database = Database(settings=settings.database)
    migrate_schema.upgrade(database)
    designs = DesignStore(database=database)
    local = LocalStorage(root=tmp_path / "local")
    ids = [f"{n:032x}" for n in range(6)]
    for n, design_id in enumerate(ids):
        original = f"uploads/{design_id}.png"
        local.put(original, os.urandom(100 + n))
        designs.create(
            design_id=design_id,
            owner="shop",
            original_key=original,
            original_content_type="image/png",
            original_width=10,
            original_height=10,
            kind="auto",
            output_format="png",
            idempotency_key=None,
        )
        if n % 2:
            cutout = f"assets/cutouts/{n:064x}.png"
            local.put(cutout, os.urandom(50))
            designs.record_result(design_id, cutout_key=cutout, result={"width": 10})
    env = _env(seaweedfs, data_dir)
    args = ["--from", f"local:{tmp_path / 'local'}", "--to", f"s3:{s3_buckets()}"]
    assert _run(env, *args).returncode == 0
    # Uploaded after the copy: not in the destination, so its design must not move.
    late_id = f"{99:032x}"
    local.put(f"uploads/{late_id}.png", b"late")
    designs.create(
        design_id=late_id,
        owner="shop",
        original_key=f"uploads/{late_id}.png",
        original_content_type="image/png",
        original_width=1,
        original_height=1,
        kind="auto",
        output_format="png",
        idempotency_key=None,
    )
    before = _designs_snapshot(database)

    no_domain = _run(env, *args, "--rewrite-urls")
    assert no_domain.returncode == 1
    assert "has no public URL" in no_domain.stderr
    assert _designs_snapshot(database) == before

    env |= {"STOLENTEE_CDN_PURGE_BACKEND": "varnish", "STOLENTEE_CDN_PURGE_URL": "http://cdn:6081"}
    rewritten = _run(env, *args, "--rewrite-urls", "--public-base-url", "https://cdn.example.com/")
    assert rewritten.returncode == 0, rewritten.stdout + rewritten.stderr
    assert "6 designs now served from https://cdn.example.com" in rewritten.stdout
    # The URLs the API no longer hands out (6 originals, 3 cutouts) go to the CDN's purge.
    assert "The CDN is told to forget 9 URLs" in rewritten.stdout
    (old_urls,) = _purged(database)
    assert sorted(old_urls) == sorted(
        [f"/uploads/{i}.png" for i in ids] + [f"/assets/cutouts/{n:064x}.png" for n in (1, 3, 5)]
    )
    after = {row["id"]: row["public_base_url"] for row in _designs_snapshot(database)}
    assert after == {**dict.fromkeys(ids, "https://cdn.example.com"), late_id: None}
    record = designs.get(ids[1])
    assert record.public_base_url == "https://cdn.example.com"

    rolled_back = _run(env, *args, "--rollback-urls")
    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    assert "Restored 6 designs" in rolled_back.stdout
    _, new_urls = _purged(database)  # and back: the CDN URLs are forgotten
    assert sorted(new_urls) == sorted(f"https://cdn.example.com{url}" for url in old_urls)
    assert _designs_snapshot(database) == before
    again = _run(env, *args, "--rollback-urls")
    assert "No URL rewrite to roll back" in again.stdout
    database.dispose()
