"""A storage migration's URL rewrite and its rollback, on SQLite and the real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import String, event, inspect, select, text

from stolentee.db import migrate
from stolentee.db.engine import Database
from stolentee.db.models import Base, Design
from stolentee.designs.store import DesignRecord, DesignStore
from stolentee.designs.urls import (
    InvalidBaseUrlError,
    InvalidChangeRecordError,
    RollbackReport,
    UrlChange,
    UrlRewriteError,
    normalize_base_url,
    rewrite_urls,
    rollback_urls,
)

# The database fixtures of tests/db, run here over SQLite and PostgreSQL alike.
from ..db.conftest import DatabaseFactory, database_url, make_database

__all__ = ["DatabaseFactory", "database_url", "make_database"]

OWNER = "db:1"
NEW = "https://assets.example.com"
OLD = "https://old-cdn.example.com/bucket"


@pytest.fixture
def database(make_database: DatabaseFactory, database_url: str) -> Database:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    return db


@pytest.fixture
def designs(database: Database) -> DesignStore:
    return DesignStore(database=database)


DesignFactory = Callable[..., DesignRecord]


@pytest.fixture
def add_design(designs: DesignStore) -> DesignFactory:
    """``add_design("a", cutout=True)``: a design ``a`` (id padded to 32 characters) whose
    original is ``uploads/<id>/original.png`` and, with ``cutout``, cutout ``cutouts/<id>.png``."""

    def factory(name: str, *, cutout: bool = True) -> DesignRecord:
        design_id = name.ljust(32, "0")
        _, created = designs.create(
            design_id=design_id,
            owner=OWNER,
            original_key=f"uploads/{design_id}/original.png",
            original_content_type="image/png",
            original_width=10,
            original_height=20,
            kind="auto",
            output_format="png",
            idempotency_key=f"order-{name}",
        )
        assert created
        if cutout:
            cutout_key = f"cutouts/{design_id}.png"
            result = {"content_type": "image/png", "width": 10, "height": 20, "kind": "graphic"}
            assert designs.record_result(design_id, cutout_key=cutout_key, result=result)
        return designs.get(design_id)

    return factory


def verified_for(*records: DesignRecord, cutouts: bool = True) -> dict[str, str]:
    """The verified-object map for these designs' originals (and cutouts)."""
    verified: dict[str, str] = {}
    for index, record in enumerate(records):
        verified[record.original_key] = f"{index:064x}"
        if cutouts and record.cutout_key is not None:
            verified[record.cutout_key] = f"{index + 1000:064x}"
    return verified


def snapshot(database: Database) -> list[dict[str, Any]]:
    """Every column of every design row, as the database returns them."""
    with database.connect() as conn:
        rows = conn.execute(text("SELECT * FROM designs ORDER BY id")).mappings().all()
    return [dict(row) for row in rows]


def base_urls(database: Database) -> dict[str, str | None]:
    with database.session() as session:
        rows = session.execute(select(Design.id, Design.public_base_url))
        return {design_id: base_url for design_id, base_url in rows}


# --- the migration -----------------------------------------------------------------------------


def test_migration_matches_the_model(database: Database) -> None:
    with database.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    assert [d for d in diffs if "designs" in repr(d)] == []
    columns = {column["name"]: column for column in inspect(database.engine).get_columns("designs")}
    assert columns["public_base_url"]["nullable"] is True
    column_type = columns["public_base_url"]["type"]
    assert isinstance(column_type, String) and column_type.length == 1024


def test_downgrade_drops_only_the_column(make_database: DatabaseFactory, database_url: str) -> None:
    db = make_database(url=database_url)
    migrate.upgrade(db)
    db_designs = DesignStore(database=db)
    db_designs.create(
        design_id="k" * 32, owner=OWNER, original_key="uploads/k.png",
        original_content_type="image/png", original_width=1, original_height=1, kind="auto",
        output_format="png", idempotency_key="kept",
    )  # fmt: skip
    assert migrate.downgrade(db, "0004_designs") == "0004_designs"
    inspector = inspect(db.engine)
    assert "public_base_url" not in {c["name"] for c in inspector.get_columns("designs")}
    assert {ix["name"] for ix in inspector.get_indexes("designs")} >= {
        "ix_designs_owner",
        "ix_designs_cutout_key",
        "ix_designs_created_at",
    }
    with db.connect() as conn:
        assert conn.execute(text("SELECT id FROM designs")).scalars().all() == ["k" * 32]
    assert migrate.upgrade(db, "0005_design_urls") == "0005_design_urls"
    migrate.upgrade(db)  # the ORM model has the later revisions' columns too
    assert db_designs.get("k" * 32).public_base_url is None


# --- rewrite -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 2, 500])
def test_only_designs_with_every_object_verified_are_rewritten(
    database: Database, add_design: DesignFactory, designs: DesignStore, batch_size: int
) -> None:
    both = add_design("a")
    no_cutout = add_design("b", cutout=False)
    cutout_missing = add_design("c")
    original_missing = add_design("d")
    nothing = add_design("e")
    verified = verified_for(both, no_cutout)
    verified |= verified_for(cutout_missing, cutouts=False)
    assert original_missing.cutout_key is not None
    verified[original_missing.cutout_key] = "f" * 64

    changes = rewrite_urls(
        database, verified=verified, new_base_url=f"{NEW}/", batch_size=batch_size
    )

    assert changes == [UrlChange(both.id, None, NEW), UrlChange(no_cutout.id, None, NEW)]
    assert base_urls(database) == {
        both.id: NEW,
        no_cutout.id: NEW,
        cutout_missing.id: None,
        original_missing.id: None,
        nothing.id: None,
    }
    assert designs.get(both.id).public_base_url == NEW


def test_a_design_processed_after_the_copy_needs_its_cutout_verified(
    database: Database, add_design: DesignFactory, designs: DesignStore
) -> None:
    """The original was copied while the design had no cutout; the cutout came later."""
    record = add_design("a", cutout=False)
    verified = verified_for(record)
    designs.record_result(record.id, cutout_key="cutouts/late.png", result={})
    assert rewrite_urls(database, verified=verified, new_base_url=NEW) == []
    verified["cutouts/late.png"] = "0" * 64
    assert rewrite_urls(database, verified=verified, new_base_url=NEW) == [
        UrlChange(record.id, None, NEW)
    ]


def test_designs_changed_during_the_rewrite_are_left_alone(
    database: Database, add_design: DesignFactory, designs: DesignStore
) -> None:
    """Between reading a batch and updating it, a worker gives one design an unverified cutout
    and another run moves a second design elsewhere: the guarded UPDATE skips both."""
    gains_cutout = add_design("a", cutout=False)
    moved_meanwhile = add_design("b")
    steady = add_design("c")
    verified = verified_for(gains_cutout, moved_meanwhile, steady)
    elsewhere = "https://elsewhere.example.com"
    meddled: list[str] = []

    def meddle(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if meddled or not statement.lstrip().upper().startswith("UPDATE DESIGNS"):
            return
        meddled.append(statement)  # first: the nested rewrite below comes back through here
        designs.record_result(gains_cutout.id, cutout_key="cutouts/unverified.png", result={})
        rewrite_urls(database, verified=verified_for(moved_meanwhile), new_base_url=elsewhere)

    event.listen(database.engine, "before_cursor_execute", meddle)
    try:
        changes = rewrite_urls(database, verified=verified, new_base_url=NEW)
    finally:
        event.remove(database.engine, "before_cursor_execute", meddle)

    assert meddled
    assert changes == [UrlChange(steady.id, None, NEW)]
    assert base_urls(database) == {
        gains_cutout.id: None,
        moved_meanwhile.id: elsewhere,
        steady.id: NEW,
    }


def test_a_second_rewrite_records_no_changes(database: Database, add_design: DesignFactory) -> None:
    records = [add_design(name) for name in "abc"]
    verified = verified_for(*records)
    first = rewrite_urls(database, verified=verified, new_base_url=NEW)
    assert len(first) == 3
    after_first = snapshot(database)

    assert rewrite_urls(database, verified=verified, new_base_url=f"{NEW}/") == []
    assert snapshot(database) == after_first


def test_a_design_at_another_base_moves_and_remembers_it(
    database: Database, add_design: DesignFactory
) -> None:
    record = add_design("a")
    verified = verified_for(record)
    rewrite_urls(database, verified=verified, new_base_url=OLD)
    assert rewrite_urls(database, verified=verified, new_base_url=NEW) == [
        UrlChange(record.id, OLD, NEW)
    ]


def test_rewrite_leaves_every_other_column_alone(
    database: Database, add_design: DesignFactory
) -> None:
    records = [add_design("a"), add_design("b", cutout=False)]
    before = snapshot(database)
    rewrite_urls(database, verified=verified_for(*records), new_base_url=NEW)
    after = snapshot(database)
    assert [row.pop("public_base_url") for row in before] == [None, None]
    assert [row.pop("public_base_url") for row in after] == [NEW, NEW]
    assert after == before  # updated_at included


def test_no_designs_no_changes(database: Database) -> None:
    assert rewrite_urls(database, verified={}, new_base_url=NEW) == []


# --- rollback ----------------------------------------------------------------------------------


def test_rewrite_then_rollback_restores_the_table_exactly(
    database: Database, add_design: DesignFactory
) -> None:
    records = [add_design(name, cutout=name != "c") for name in "abcdef"]
    # Some designs already live elsewhere from an earlier migration; one is never verified.
    rewrite_urls(database, verified=verified_for(*records[:2]), new_base_url=OLD)
    original = snapshot(database)
    assert {row["public_base_url"] for row in original} == {OLD, None}

    changes = rewrite_urls(database, verified=verified_for(*records[:5]), new_base_url=NEW)
    assert len(changes) == 5
    assert {change.before for change in changes} == {OLD, None}
    assert snapshot(database) != original

    report = rollback_urls(database, changes)

    assert report == RollbackReport(restored=5, conflicts=[], gone=0, gone_ids=[])
    assert snapshot(database) == original


def test_rollback_from_log_records(database: Database, add_design: DesignFactory) -> None:
    records = [add_design(name) for name in "ab"]
    original = snapshot(database)
    changes = rewrite_urls(database, verified=verified_for(*records), new_base_url=NEW)
    log = [json.dumps(change.to_record()) for change in changes]
    read_back = [UrlChange.from_record(json.loads(line)) for line in log]
    assert rollback_urls(database, read_back).restored == 2
    assert snapshot(database) == original


def test_a_design_changed_since_is_a_conflict_left_untouched(
    database: Database, add_design: DesignFactory
) -> None:
    records = [add_design(name) for name in "abc"]
    changes = rewrite_urls(database, verified=verified_for(*records), new_base_url=NEW)
    moved_again = rewrite_urls(
        database, verified=verified_for(records[1]), new_base_url="https://third.example.com"
    )
    assert moved_again == [UrlChange(records[1].id, NEW, "https://third.example.com")]

    report = rollback_urls(database, changes)

    assert report.restored == 2 and report.gone == 0
    assert report.conflicts == [records[1].id]
    assert base_urls(database) == {
        records[0].id: None,
        records[1].id: "https://third.example.com",
        records[2].id: None,
    }


def test_a_deleted_design_is_counted_as_gone(
    database: Database, add_design: DesignFactory, designs: DesignStore
) -> None:
    records = [add_design(name) for name in "abc"]
    changes = rewrite_urls(database, verified=verified_for(*records), new_base_url=NEW)
    designs.delete(records[0].id, owner=OWNER)
    remaining = snapshot(database)

    report = rollback_urls(database, changes, batch_size=2)

    assert report == RollbackReport(restored=2, conflicts=[], gone=1, gone_ids=[records[0].id])
    for row in remaining:
        row["public_base_url"] = None
    assert snapshot(database) == remaining


def test_rolling_back_two_rewrites_at_once_goes_back_to_the_start(
    database: Database, add_design: DesignFactory
) -> None:
    records = [add_design(name) for name in "ab"]
    original = snapshot(database)
    first = rewrite_urls(database, verified=verified_for(*records), new_base_url=OLD)
    second = rewrite_urls(database, verified=verified_for(records[0]), new_base_url=NEW)
    report = rollback_urls(database, [*first, *second])
    assert report.restored == 3 and report.conflicts == [] and report.gone == 0
    assert snapshot(database) == original


def test_a_second_rollback_reports_conflicts_and_changes_nothing(
    database: Database, add_design: DesignFactory
) -> None:
    records = [add_design(name) for name in "ab"]
    changes = rewrite_urls(database, verified=verified_for(*records), new_base_url=NEW)
    rollback_urls(database, changes)
    restored = snapshot(database)
    report = rollback_urls(database, changes)
    assert report.restored == 0 and sorted(report.conflicts) == sorted(r.id for r in records)
    assert snapshot(database) == restored


def test_rollback_of_nothing(database: Database) -> None:
    assert rollback_urls(database, []) == RollbackReport(restored=0, conflicts=[], gone=0)


# --- input checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "assets.example.com",
        "/assets",
        "ftp://assets.example.com",
        "javascript:alert(1)",
        "https://",
        "https:///path",
        "https://:443",
        "https://assets.example.com/?v=1",
        "https://assets.example.com?",
        "https://assets.example.com/#top",
        "https://assets.example.com/a b",
        " https://assets.example.com",
        "https://assets.example.com/\n",
        "https://assets.example.com\t",
        "https://assets.example.com/\x00",
        "https://user:secret@assets.example.com",
        "https://assets.example.com:99999",
        "https://assets.example.com:port",
        "https://assets.example.com/../x",
        "https://assets.example.com/a//b",
        "https://assets\\example.com",
        "https://ünïcödé.example.com",
        "https://exa_mple.com",
        "https://[::1",
        "https://" + "a" * 1100 + ".com",
    ],
)
def test_invalid_base_urls_are_refused(
    database: Database, add_design: DesignFactory, url: str
) -> None:
    record = add_design("a")
    before = snapshot(database)
    with pytest.raises(InvalidBaseUrlError):
        rewrite_urls(database, verified=verified_for(record), new_base_url=url)
    assert snapshot(database) == before


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://assets.example.com", "https://assets.example.com"),
        ("https://assets.example.com/", "https://assets.example.com"),
        ("https://assets.example.com//", "https://assets.example.com"),
        ("HTTPS://Assets.Example.COM/Bucket/", "https://assets.example.com/Bucket"),
        ("http://127.0.0.1:9000/bucket/", "http://127.0.0.1:9000/bucket"),
        ("https://[::1]:8443/x", "https://[::1]:8443/x"),
        ("https://xn--nxasmq6b.example.com/%7Euser", "https://xn--nxasmq6b.example.com/%7Euser"),
    ],
)
def test_base_urls_are_normalized(url: str, normalized: str) -> None:
    assert normalize_base_url(url) == normalized


def test_invalid_base_url_is_a_client_error_with_a_code() -> None:
    with pytest.raises(InvalidBaseUrlError) as caught:
        normalize_base_url("ftp://x")
    assert caught.value.status_code == 400
    assert caught.value.to_dict()["code"] == "invalid_base_url"
    assert "http" in caught.value.detail


@pytest.mark.parametrize(
    "verified",
    [{"uploads/a.png": "not-a-sha"}, {"uploads/a.png": "A" * 64}, {"": "0" * 64}, {1: "0" * 64}],
)
def test_malformed_verified_maps_are_refused(database: Database, verified: Any) -> None:
    with pytest.raises(UrlRewriteError, match="verified"):
        rewrite_urls(database, verified=verified, new_base_url=NEW)


@pytest.mark.parametrize("batch_size", [0, -1, 5001, True])
def test_batch_size_is_checked(database: Database, batch_size: int) -> None:
    with pytest.raises(UrlRewriteError, match="batch_size"):
        rewrite_urls(database, verified={}, new_base_url=NEW, batch_size=batch_size)
    with pytest.raises(UrlRewriteError, match="batch_size"):
        rollback_urls(database, [], batch_size=batch_size)


# --- records -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        UrlChange("a" * 32, None, NEW),
        UrlChange("b" * 32, OLD, NEW),
        UrlChange("c", NEW, None),
    ],
)
def test_records_round_trip(change: UrlChange) -> None:
    record = change.to_record()
    assert record == {
        "type": "rewrite",
        "design_id": change.design_id,
        "before": change.before,
        "after": change.after,
    }
    assert UrlChange.from_record(json.loads(json.dumps(record))) == change


def test_unknown_record_fields_are_ignored() -> None:
    record = {**UrlChange("a", None, NEW).to_record(), "at": "2026-12-02T10:00:00Z"}
    assert UrlChange.from_record(record) == UrlChange("a", None, NEW)


GOOD = {"type": "rewrite", "design_id": "a" * 32, "before": None, "after": NEW}


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (["rewrite", "a", None, NEW], "JSON object"),
        (None, "JSON object"),
        ({k: v for k, v in GOOD.items() if k != "before"}, "lacks before"),
        ({"type": "rewrite"}, "lacks design_id, before, after"),
        ({**GOOD, "type": "copy"}, "record type"),
        ({**GOOD, "design_id": 7}, "design_id"),
        ({**GOOD, "design_id": ""}, "design_id"),
        ({**GOOD, "design_id": "a" * 33}, "design_id"),
        ({**GOOD, "design_id": "a\nb"}, "design_id"),
        ({**GOOD, "before": 3}, "before"),
        ({**GOOD, "after": ["x"]}, "after"),
        ({**GOOD, "after": "x" * 1025}, "after"),
    ],
)
def test_malformed_records_are_refused(record: Any, match: str) -> None:
    with pytest.raises(InvalidChangeRecordError, match=match):
        UrlChange.from_record(record)
