"""KeyStore on SQLite and PostgreSQL: keys, authentication, revocation, caching and usage."""

from __future__ import annotations

import hashlib
import string
import threading

import pytest
from sqlalchemy import select, text

from stolentee.db.engine import Database
from stolentee.db.models import ApiKey
from stolentee.errors import ConflictError, InvalidOptionError
from stolentee.keys.principals import LOOPBACK, Principal, UsageTotals

from .conftest import FakeClock, FakeWallClock, StoreFactory

URL_SAFE = set(string.ascii_letters + string.digits + "-_")


# --- keys ----------------------------------------------------------------------------------------


def test_create_returns_a_key_that_authenticates(make_store: StoreFactory) -> None:
    store = make_store()
    record, key = store.create("shop-frontend", premium=True)
    assert key.startswith("st_") and len(key) == 43 and set(key[3:]) <= URL_SAFE
    assert record.prefix == key[:8] and record.name == "shop-frontend" and record.active
    assert store.authenticate(key) == Principal(
        label=f"db:{record.id}", name="shop-frontend", premium=True, source="db"
    )
    other, other_key = store.create("  batch job  ")
    assert other.name == "batch job" and not other.premium and other_key != key


def test_only_the_hash_of_a_key_is_stored(make_store: StoreFactory, database: Database) -> None:
    _, key = make_store().create("n")
    with database.connect() as conn:
        row = conn.execute(text("SELECT * FROM api_keys")).mappings().one()
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key in str(value) for value in row.values())


@pytest.mark.parametrize("presented", [None, "", "st_unknown", "x" * 10_000])
def test_missing_or_unknown_keys_are_refused(
    make_store: StoreFactory, presented: str | None
) -> None:
    store = make_store()
    store.create("n")
    assert store.authenticate(presented) is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_bad_names_are_refused(make_store: StoreFactory, name: str) -> None:
    with pytest.raises(InvalidOptionError):
        make_store().create(name)


def test_list_shows_every_key_oldest_first(make_store: StoreFactory) -> None:
    store = make_store()
    first, _ = store.create("a")
    second, _ = store.create("b", premium=True)
    assert store.revoke(str(first.id))
    listed = store.list()
    assert [r.id for r in listed] == [first.id, second.id]
    assert listed[0].revoked_at is not None and not listed[0].active
    assert listed[1].premium and listed[1].revoked_at is None and listed[1].last_used_at is None
    assert listed[0].created_at.tzinfo is not None


@pytest.mark.parametrize("by", ["id", "prefix", "key"])
def test_revoke_by_id_prefix_or_key(make_store: StoreFactory, by: str) -> None:
    store = make_store()
    record, key = store.create("n")
    kept, kept_key = store.create("other")
    ident = {"id": str(record.id), "prefix": record.prefix, "key": key}[by]
    assert store.authenticate(key) is not None  # cached now: revocation must evict it
    assert store.revoke(ident) is True
    assert store.authenticate(key) is None
    assert store.revoke(ident) is False  # already revoked
    assert store.authenticate(kept_key) is not None and kept.active


def test_revoke_unknown_returns_false(make_store: StoreFactory) -> None:
    store = make_store()
    store.create("n")
    assert store.revoke("999999") is False
    assert store.revoke("st_nope") is False
    assert store.revoke("") is False


def test_ambiguous_prefix_is_refused(make_store: StoreFactory, database: Database) -> None:
    store = make_store()
    record, _ = store.create("a")
    with database.session() as session:
        twin = session.get(ApiKey, record.id)
        assert twin is not None
        session.add(
            ApiKey(name="b", prefix=record.prefix, key_hash="f" * 64, created_at=twin.created_at)
        )
    with pytest.raises(ConflictError, match="2 active keys"):
        store.revoke(record.prefix)
    assert store.revoke(str(record.id)) is True
    assert store.revoke(record.prefix) is True  # now only the twin matches


def test_static_keys_authenticate_without_exposing_the_key(make_store: StoreFactory) -> None:
    store = make_store(static_keys=("alpha-key", "beta"))
    alpha = store.authenticate("alpha-key")
    beta = store.authenticate("beta")
    assert alpha is not None and beta is not None
    assert alpha.source == "env" and not alpha.premium and alpha.label.startswith("env:")
    assert "alpha" not in alpha.label + alpha.name and alpha.label != beta.label
    assert store.authenticate("alpha") is None and store.authenticate("alpha-key ") is None
    assert store.static_key_count == 2 and store.keys_configured()


def test_keys_configured_follows_the_database_keys(make_store: StoreFactory) -> None:
    store = make_store()
    assert not store.keys_configured()
    record, _ = store.create("n")
    assert store.keys_configured()
    store.revoke(record.prefix)
    assert not store.keys_configured()


def test_revocation_elsewhere_takes_effect_within_the_cache_ttl(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    server = make_store(cache_ttl_s=5.0)
    operator = make_store()  # another process, e.g. `stolentee keys revoke`
    record, key = operator.create("n")
    assert server.authenticate(key) is not None
    assert operator.revoke(str(record.id))
    clock.advance(4.9)
    assert server.authenticate(key) is not None  # still cached
    clock.advance(0.2)
    assert server.authenticate(key) is None


def test_last_used_is_written_at_most_once_a_minute(
    make_store: StoreFactory, clock: FakeClock, wall: FakeWallClock, database: Database
) -> None:
    store = make_store()
    _, key = store.create("n")

    def last_used() -> object:
        with database.session() as session:
            return session.scalars(select(ApiKey.last_used_at)).one()

    first = wall.now
    store.authenticate(key)
    assert last_used() == first
    clock.advance(30)
    wall.advance(30)
    store.authenticate(key)
    assert last_used() == first
    clock.advance(31)
    wall.advance(31)
    store.authenticate(key)
    assert last_used() == wall.now
    assert store.list()[0].last_used_at == wall.now


# --- usage ---------------------------------------------------------------------------------------


def test_usage_today_and_all_time(make_store: StoreFactory, wall: FakeWallClock) -> None:
    store = make_store()
    record, _ = store.create("n")
    caller = record.principal()
    store.record_usage(caller, megapixels=4.0, credits=1.0)
    store.record_usage(caller, images=2, megapixels=0.5, credits=0.25)
    wall.advance(120)  # past midnight UTC: a new day
    store.record_usage(caller, megapixels=1.0, credits=1.0)
    usage = store.usage(caller)
    assert usage.today == UsageTotals(images=1, megapixels=1.0, credits=1.0)
    assert usage.all_time == UsageTotals(images=4, megapixels=5.5, credits=2.25)
    assert store.usage(LOOPBACK).all_time == UsageTotals()
    store.record_usage(LOOPBACK, megapixels=2.0, credits=0.25)
    assert store.usage_by_label() == {
        caller.label: UsageTotals(4, 5.5, 2.25),
        "loopback": UsageTotals(1, 2.0, 0.25),
    }


def test_negative_usage_is_refused(make_store: StoreFactory) -> None:
    with pytest.raises(ValueError, match="negative"):
        make_store().record_usage(LOOPBACK, megapixels=-1.0)


def test_concurrent_usage_increments_add_up_exactly(make_store: StoreFactory) -> None:
    store = make_store()
    threads, calls = 8, 25
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(calls):
                store.record_usage(LOOPBACK, megapixels=0.5, credits=0.25)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    total = threads * calls
    assert store.usage(LOOPBACK).today == UsageTotals(total, total * 0.5, total * 0.25)
