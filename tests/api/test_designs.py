"""/v1/designs end to end on the embedded default: upload, in-process worker, cutout, delete."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from stolentee.api.app import create_app
from stolentee.api.openapi import CURSOR_PATTERN
from stolentee.designs.store import new_design_id

from ..conftest import SettingsFactory
from ..removal.conftest import composite, draw_logo, encode

KEY = "st_designs_test_key"
HEADERS = {"X-Api-Key": KEY}
LOGO = encode(composite(draw_logo(), (255, 255, 255)))


@pytest.fixture
def client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    settings = make_settings(api={"api_keys": KEY}, queue={"reaper_interval_s": 1.0})
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def upload(client: TestClient, data: bytes = LOGO, **headers: str) -> Any:
    return client.post(
        "/v1/designs", files={"file": ("logo.png", data)}, headers={**HEADERS, **headers}
    )


def wait_for(client: TestClient, design_id: str, *, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/designs/{design_id}", headers=HEADERS).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"design {design_id} did not finish: {body}")


def test_upload_is_processed_by_the_in_process_worker(client: TestClient) -> None:
    response = upload(client)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] in ("queued", "processing")
    assert response.headers["Location"] == f"/v1/designs/{created['id']}"
    assert created["original"]["url"] == f"/uploads/{created['id']}/original.png"

    done = wait_for(client, created["id"])
    assert done["status"] == "done", done
    assert done["kind"] == "graphic" and done["provider"] == "local"
    assert done["attempts"] == 1 and done["error"] is None
    cutout_url = done["cutout"]["url"]
    assert cutout_url.startswith("/assets/cutouts/") and cutout_url.endswith(".png")
    cutout = client.get(cutout_url)
    assert cutout.status_code == 200
    assert cutout.headers["Cache-Control"] == "public, max-age=604800, immutable"
    assert Image.open(io.BytesIO(cutout.content)).mode == "RGBA"
    original = client.get(done["original"]["url"])
    assert original.content == LOGO
    assert original.headers["Cache-Control"].startswith("public, max-age=86400")

    health = client.get("/health/detailed").json()["queue"]
    assert health["backend"] == "sqlite" and health["inProcessWorker"] is True
    assert health["doneTotal"] >= 1 and health["depth"] == 0


def test_idempotency_key_returns_the_same_design(client: TestClient) -> None:
    first = upload(client, **{"Idempotency-Key": "order-42-front"})
    again = upload(client, **{"Idempotency-Key": "order-42-front"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = upload(client, **{"Idempotency-Key": "order-42-back"})
    assert other.json()["id"] != first.json()["id"]


def test_delete_removes_the_design_and_its_files(client: TestClient) -> None:
    design = wait_for(client, upload(client).json()["id"])
    assert client.delete(f"/v1/designs/{design['id']}", headers=HEADERS).status_code == 204
    assert client.get(f"/v1/designs/{design['id']}", headers=HEADERS).status_code == 404
    assert client.get(design["original"]["url"]).status_code == 404
    assert client.get(design["cutout"]["url"]).status_code == 404


def test_shared_cutout_survives_deleting_one_of_two_designs(client: TestClient) -> None:
    one = wait_for(client, upload(client).json()["id"])
    two = wait_for(client, upload(client).json()["id"])
    assert one["cutout"]["url"] == two["cutout"]["url"]  # same bytes, same content address
    client.delete(f"/v1/designs/{one['id']}", headers=HEADERS)
    assert client.get(two["cutout"]["url"]).status_code == 200


def test_listing_pages_newest_first(client: TestClient) -> None:
    ids = [upload(client).json()["id"] for _ in range(3)]
    first = client.get("/v1/designs?limit=2", headers=HEADERS).json()
    assert [item["id"] for item in first["data"]] == ids[::-1][:2]
    second = client.get(
        f"/v1/designs?limit=2&cursor={first['next_cursor']}", headers=HEADERS
    ).json()
    assert [item["id"] for item in second["data"]] == [ids[0]]
    assert second["next_cursor"] is None
    bad = client.get("/v1/designs?cursor=garbage", headers=HEADERS)
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "invalid_cursor"


def test_any_cursor_of_the_documented_shape_is_a_position(client: TestClient) -> None:
    ids = [upload(client).json()["id"] for _ in range(2)]
    assert re.fullmatch(CURSOR_PATTERN, f"0.{'0' * 32}")
    # From the future: the whole list; from before 1970 (0 us): nothing after it.
    future = client.get(f"/v1/designs?cursor={'9' * 17}.{'f' * 32}", headers=HEADERS)
    assert [item["id"] for item in future.json()["data"]] == ids[::-1]
    past = client.get(f"/v1/designs?cursor=0.{'0' * 32}", headers=HEADERS)
    assert past.status_code == 200 and past.json()["data"] == []
    issued = client.get("/v1/designs?limit=1", headers=HEADERS).json()["next_cursor"]
    assert re.fullmatch(CURSOR_PATTERN, issued)


def store_unusable_design(client: TestClient, *, callback_url: str | None = None) -> str:
    """A design whose stored original turns out unusable only when its job runs (replaced in
    the bucket, a direct upload gone bad): uploads themselves are checked whole, so this one
    is stored the way ``POST /v1/designs`` stores a design, with a truncated original."""
    runtime: Any = client.app.state.services.runtime  # type: ignore[attr-defined]
    principal = runtime.keys.authenticate(KEY)
    design_id = new_design_id()
    original_key = f"uploads/{design_id}/original.png"
    runtime.storage.put(original_key, LOGO[: len(LOGO) // 3], content_type="image/png")
    job = runtime.queue.new_job("design", {"design_id": design_id, "premium": False})
    runtime.designs.create(
        design_id=design_id,
        owner=principal.label,
        original_key=original_key,
        original_content_type="image/png",
        original_width=600,
        original_height=400,
        kind="auto",
        output_format="png",
        idempotency_key=None,
        callback_url=runtime.callbacks.check_url(callback_url) if callback_url else None,
        job=job,
    )
    runtime.queue.announce([job])
    return design_id


def test_an_original_that_turns_out_unusable_fails_its_job_without_retrying(
    client: TestClient,
) -> None:
    failed = wait_for(client, store_unusable_design(client))
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert "InvalidImageError" in failed["error"]


@pytest.mark.parametrize(
    ("files", "data", "code"),
    [
        ({"file": ("x.txt", b"plain text")}, {}, "invalid_file_type"),
        ({"file": ("x.png", LOGO)}, {"format": "zip"}, "invalid_format"),
        ({"file": ("x.png", LOGO)}, {"type": "spaceship"}, "invalid_type"),
        (
            {"file": ("x.png", LOGO)},
            {"callback_url": "https://shop.example/hook"},
            "callbacks_disabled",
        ),
    ],
)
def test_bad_uploads(client: TestClient, files: Any, data: Any, code: str) -> None:
    response = client.post("/v1/designs", files=files, data=data, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == code


def test_designs_are_private_to_their_key(make_settings: SettingsFactory) -> None:
    settings = make_settings(api={"api_keys": f"{KEY},st_other_key"}, queue={"run_worker": False})
    with TestClient(create_app(settings)) as client:
        design_id = upload(client).json()["id"]
        other = {"X-Api-Key": "st_other_key"}
        assert client.get(f"/v1/designs/{design_id}", headers=other).status_code == 404
        assert client.delete(f"/v1/designs/{design_id}", headers=other).status_code == 404
        assert client.get("/v1/designs", headers=other).json()["data"] == []
        # Without a worker the design stays queued.
        assert client.get(f"/v1/designs/{design_id}", headers=HEADERS).json()["status"] == "queued"


def test_separate_worker_process_does_the_work(
    make_settings: SettingsFactory, tmp_path: Any
) -> None:
    """The scaled-out shape: `serve --no-worker` plus a `stolentee worker` process."""
    import os
    import signal
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    settings = make_settings(
        service={"data_dir": data_dir}, api={"api_keys": KEY}, queue={"run_worker": False}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOLENTEE_")}
    env.update(STOLENTEE_DATA_DIR=str(data_dir), STOLENTEE_WORKER_CONCURRENCY="1")
    with TestClient(create_app(settings)) as client:
        design_id = upload(client).json()["id"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "stolentee", "worker"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            done = wait_for(client, design_id)
        finally:
            worker.send_signal(signal.SIGTERM)
            output = worker.communicate(timeout=60)[0].decode()
        assert done["status"] == "done", output
        assert worker.returncode == 0, output
        assert "1 at once, queue sqlite" in output


def test_status_never_says_done_without_a_cutout() -> None:
    """The design row is read before the job row: a job finishing in between must not produce
    a `done` design with no cutout."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from stolentee.designs.store import DesignRecord
    from stolentee.designs.views import design_status as _status

    now = datetime.now(UTC)
    record = DesignRecord(
        id="d", owner="o", original_key="uploads/d/original.png", original_content_type="image/png",
        original_width=1, original_height=1, kind="auto", output_format="png", job_id="j",
        cutout_key=None, result=None, created_at=now, updated_at=now,
    )  # fmt: skip
    finished: Any = SimpleNamespace(state="done")
    assert _status(record, finished) == "processing"
    assert _status(record, SimpleNamespace(state="failed")) == "failed"  # type: ignore[arg-type]
    assert _status(record, None) == "queued"


def test_design_moved_to_a_new_store_serves_its_cdn_urls(client: TestClient) -> None:
    """After a storage migration's URL rewrite, a design's original and cutout URLs point at
    the new store's public base URL; a design left behind keeps this service's URLs."""
    from stolentee.designs.urls import rewrite_urls

    moved = wait_for(client, upload(client).json()["id"])
    stayed = wait_for(client, upload(client).json()["id"])  # same cutout, original not copied
    assert moved["status"] == stayed["status"] == "done"
    services: Any = client.app.state.services.runtime  # type: ignore[attr-defined]
    record = services.designs.get(moved["id"])
    assert record.public_base_url is None and record.cutout_key is not None
    verified = {
        key: services.storage.head(key).sha256 for key in (record.original_key, record.cutout_key)
    }

    changes = rewrite_urls(
        services.database, verified=verified, new_base_url="https://cdn.example.com/shop/"
    )

    assert [change.design_id for change in changes] == [moved["id"]]
    body = client.get(f"/v1/designs/{moved['id']}", headers=HEADERS).json()
    assert body["original"]["url"] == f"https://cdn.example.com/shop/{record.original_key}"
    assert body["cutout"]["url"] == f"https://cdn.example.com/shop/{record.cutout_key}"
    listed = {
        item["id"]: item for item in client.get("/v1/designs", headers=HEADERS).json()["data"]
    }
    assert listed[moved["id"]]["cutout"]["url"] == body["cutout"]["url"]
    assert listed[stayed["id"]]["original"]["url"] == stayed["original"]["url"]
    assert listed[stayed["id"]]["cutout"]["url"] == stayed["cutout"]["url"]
    assert stayed["cutout"]["url"].startswith("/assets/cutouts/")


def test_object_url_quotes_keys_under_the_design_base_url() -> None:
    import dataclasses
    from datetime import UTC, datetime

    from stolentee.designs.store import DesignRecord
    from stolentee.designs.views import object_url
    from stolentee.storage.backends.memory import MemoryStorage

    now = datetime.now(UTC)
    record = DesignRecord(
        id="d", owner="o", original_key="uploads/d/a b?.png", original_content_type="image/png",
        original_width=1, original_height=1, kind="auto", output_format="png", job_id="j",
        cutout_key=None, result=None, created_at=now, updated_at=now,
        public_base_url="https://assets.example.com",
    )  # fmt: skip
    storage = MemoryStorage(public_domain="", public_base_url="")
    assert object_url(storage, record, record.original_key) == (
        "https://assets.example.com/uploads/d/a%20b%3F.png"
    )
    unmoved = dataclasses.replace(record, public_base_url=None)
    assert object_url(storage, unmoved, record.original_key) == "/uploads/d/a%20b%3F.png"


@pytest.mark.parametrize("write", ["jobs", "designs", "commit"])
def test_a_failed_insert_leaves_no_stuck_design_and_no_orphaned_original(
    make_settings: SettingsFactory, write: str
) -> None:
    """The design, its job and its message are one transaction: when either row cannot be
    stored, or the transaction cannot commit, the request fails and nothing of it stays (no
    design ``queued`` forever, no original in storage); the same Idempotency-Key then creates
    the design for real."""
    from sqlalchemy import event, text
    from sqlalchemy.exc import OperationalError

    settings = make_settings(api={"api_keys": KEY}, queue={"reaper_interval_s": 1.0})
    storage_dir = settings.storage_dir
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        database = client.app.state.services.runtime.database  # type: ignore[attr-defined]

        def refuse_commit(conn: Any) -> None:
            if conn.info.pop("wrote_a_design", False):
                raise OperationalError("COMMIT", {}, Exception("injected: commit refused"))

        def note_design(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO DESIGNS"):
                conn.info["wrote_a_design"] = True

        if write == "commit":
            event.listen(database.engine, "before_cursor_execute", note_design)
            event.listen(database.engine, "commit", refuse_commit)
        else:
            with database.engine.begin() as conn:
                conn.execute(
                    text(
                        f"CREATE TRIGGER refuse_rows BEFORE INSERT ON {write} "
                        "BEGIN SELECT RAISE(ABORT, 'injected: rows are refused'); END"
                    )
                )
        failed = upload(client, **{"Idempotency-Key": "order-7-front"})
        assert failed.status_code == 500, failed.text
        listed = client.get("/v1/designs", headers=HEADERS).json()["data"]
        assert listed == []  # no design without its job
        assert not list((storage_dir / "uploads").rglob("*.png"))  # the original was removed

        if write == "commit":
            event.remove(database.engine, "commit", refuse_commit)
            event.remove(database.engine, "before_cursor_execute", note_design)
        else:
            with database.engine.begin() as conn:
                conn.execute(text("DROP TRIGGER refuse_rows"))
        retried = upload(client, **{"Idempotency-Key": "order-7-front"})
        assert retried.status_code == 202, retried.text  # created now, not a stuck replay
        assert "Idempotent-Replayed" not in retried.headers
        assert wait_for(client, retried.json()["id"])["status"] == "done"


def test_a_failed_storage_write_or_message_send_loses_nothing(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other writes of an upload: the original's (507/502, no design stored) and the queue
    message's (the committed job row is the outbox: the reaper sends it, the design is done)."""
    from stolentee.errors import InsufficientStorageError

    settings = make_settings(
        api={"api_keys": KEY}, queue={"reaper_interval_s": 0.5, "resend_check_s": 0.2}
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        runtime: Any = client.app.state.services.runtime  # type: ignore[attr-defined]

        def full(*args: Any, **kwargs: Any) -> None:
            raise InsufficientStorageError("cannot write: not enough disk space on the server")

        monkeypatch.setattr(runtime.storage, "put", full)
        refused = upload(client)
        assert refused.status_code == 507
        assert client.get("/v1/designs", headers=HEADERS).json()["data"] == []
        monkeypatch.undo()

        def down(job_id: str, delay_s: float = 0) -> None:
            raise ConnectionError("redis is restarting")

        monkeypatch.setattr(runtime.queue.transport, "send", down)
        accepted = upload(client)
        assert accepted.status_code == 202, accepted.text
        monkeypatch.undo()
        assert wait_for(client, accepted.json()["id"])["status"] == "done"


def test_an_oversize_chunked_upload_is_413_like_the_removal_api(
    make_settings: SettingsFactory,
) -> None:
    """A body without Content-Length over the limit: 413 ``file_too_large`` on /v1/designs too
    (the form parser must not turn it into a 400)."""
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(10):
            yield bytes(10_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    settings = make_settings(api={"api_keys": KEY, "max_body_bytes": 50_000})
    with TestClient(create_app(settings)) as client:
        for path in ("/v1/designs", "/v1.0/removebg"):
            response = client.post(
                path,
                content=chunks(),
                headers={**HEADERS, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            assert response.status_code == 413, (path, response.text)
            assert response.json()["errors"][0]["code"] == "file_too_large"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_upload_is_refused_at_once_like_the_removal_api(
    client: TestClient, fmt: str
) -> None:
    """The whole image is checked at upload: a cut-off PNG or JPEG is 400 with the same error
    code as the removal API gives for the same bytes, not a 202 whose job fails later."""
    image = Image.open(io.BytesIO(LOGO)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    truncated = buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3]
    design = upload(client, truncated)
    removal = client.post(
        "/v1.0/removebg", files={"image_file": ("cut", truncated)}, headers=HEADERS
    )
    assert design.status_code == removal.status_code == 400, design.text
    assert design.json()["errors"][0]["code"] == removal.json()["errors"][0]["code"]
    assert client.get("/v1/designs", headers=HEADERS).json()["data"] == []


def test_a_failed_design_is_retried_and_then_done(client: TestClient) -> None:
    design_id = store_unusable_design(client)
    assert wait_for(client, design_id)["status"] == "failed"
    runtime: Any = client.app.state.services.runtime  # type: ignore[attr-defined]
    # The cause is fixed (the original replaced), then the shop owner retries it.
    runtime.storage.put(f"uploads/{design_id}/original.png", LOGO, content_type="image/png")
    retried = client.post(f"/v1/designs/{design_id}/retry", headers=HEADERS)
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] in ("queued", "processing")
    assert retried.json()["error"] is None
    done = wait_for(client, design_id)
    assert done["status"] == "done", done
    assert done["attempts"] == 1  # attempts started over
    again = client.post(f"/v1/designs/{design_id}/retry", headers=HEADERS)
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "design_not_failed"
    assert "is done" in again.json()["errors"][0]["detail"]


def test_retry_is_for_failed_designs_of_ones_own_key(make_settings: SettingsFactory) -> None:
    settings = make_settings(api={"api_keys": f"{KEY},st_other_key"}, queue={"run_worker": False})
    with TestClient(create_app(settings)) as client:
        design_id = upload(client).json()["id"]
        queued = client.post(f"/v1/designs/{design_id}/retry", headers=HEADERS)
        assert queued.status_code == 409
        assert "is queued" in queued.json()["errors"][0]["detail"]
        other = client.post(f"/v1/designs/{design_id}/retry", headers={"X-Api-Key": "st_other_key"})
        assert other.status_code == 404
        missing = client.post(f"/v1/designs/{new_design_id()}/retry", headers=HEADERS)
        assert missing.status_code == 404
