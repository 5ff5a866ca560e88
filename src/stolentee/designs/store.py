"""Designs: a customer's upload, its background-removal job, and the resulting cutout.

The ``designs`` table records what was uploaded and what came out; the job's state (``jobs``
table, the source of truth) says where processing stands. ``DesignStore`` is the only code that
reads or writes designs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from stolentee.db.engine import Database
from stolentee.db.models import Design, Job
from stolentee.db.prepared import PreparedStatement
from stolentee.errors import ClientError, NotFoundError

DESIGN_JOB = "design"  # the kind of the job that processes a design
MAX_PAGE = 100
MAX_IDEMPOTENCY_KEY = 200
# Visible ASCII, spaces inside only: what survives every HTTP stack unchanged (header values lose
# surrounding whitespace on the way; other characters are re-encoded by some clients).
IDEMPOTENCY_KEY_PATTERN = rf"[!-~]([ -~]{{0,{MAX_IDEMPOTENCY_KEY - 2}}}[!-~])?"


class DesignNotFoundError(NotFoundError):
    code = "design_not_found"
    title = "Design not found"


class InvalidCursorError(ClientError):
    code = "invalid_cursor"
    title = "Invalid cursor"


class InvalidIdempotencyKeyError(ClientError):
    code = "invalid_idempotency_key"
    title = "Invalid Idempotency-Key"


@dataclass(frozen=True, slots=True)
class DesignRecord:
    id: str
    owner: str
    original_key: str
    original_content_type: str
    original_width: int
    original_height: int
    kind: str
    output_format: str
    job_id: str | None
    cutout_key: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    # None: served by the configured storage; else the public base URL of the store that holds
    # this design's objects since a storage migration (no trailing '/').
    public_base_url: str | None = None
    # Where the signed notice goes when the design finishes (None: nowhere), and the job that
    # delivers it (None until the design's job is done or failed).
    callback_url: str | None = None
    callback_job_id: str | None = None


class BaseUrlChange(NamedTuple):
    """One design's ``public_base_url`` went from ``before`` to ``after``."""

    design_id: str
    before: str | None
    after: str | None


class BaseUrlRestore(NamedTuple):
    """What undoing base-URL changes did: changes undone, designs left alone because their
    value moved on since (``conflicts``), designs deleted since (``gone``)."""

    restored: int
    conflicts: list[str]
    gone: list[str]


def _record(row: Design) -> DesignRecord:
    return DesignRecord(
        id=row.id,
        owner=row.owner,
        original_key=row.original_key,
        original_content_type=row.original_content_type,
        original_width=row.original_width,
        original_height=row.original_height,
        kind=row.kind,
        output_format=row.output_format,
        job_id=row.job_id,
        cutout_key=row.cutout_key,
        result=row.result,
        created_at=row.created_at,
        updated_at=row.updated_at,
        public_base_url=row.public_base_url,
        callback_url=row.callback_url,
        callback_job_id=row.callback_job_id,
    )


def _is(column: InstrumentedAttribute[str | None], value: str | None) -> ColumnElement[bool]:
    """``column`` holds ``value``, NULL included."""
    return column.is_(None) if value is None else column == value


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


# --- what GET /v1/designs/{id} shows (also the body of a design callback) --------------------


# Run once per design job (stolentee.jobs): compiled once per dialect, run on the driver's cursor.
_DESIGNS = cast(Table, Design.__table__)
_RECORD_FIELDS = tuple(f.name for f in fields(DesignRecord))
_DESIGN_BY_ID = PreparedStatement(
    select(*(_DESIGNS.c[name] for name in _RECORD_FIELDS)).where(
        _DESIGNS.c.id == bindparam("design_id")
    )
)


def design_in(conn: Connection, design_id: str) -> DesignRecord | None:
    """In the caller's transaction: the design, or ``None`` when there is none (a design job's
    lease reads its design this way, in the lease's own transaction)."""
    row = _DESIGN_BY_ID.first(conn, {"design_id": design_id})
    return None if row is None else DesignRecord(*row)


def claim_callback(session: Session, design_id: str, callback_job_id: str) -> str | None:
    """In the caller's transaction: record ``callback_job_id`` as the job delivering the
    design's callback, unless it has no callback URL or already has such a job. Returns the
    callback URL when the claim was made (the caller then adds that job), else ``None``.
    ``updated_at`` is not touched: the design itself did not change."""
    stmt = (
        update(Design)
        .where(
            Design.id == design_id,
            Design.callback_url.is_not(None),
            Design.callback_job_id.is_(None),
        )
        .values(callback_job_id=callback_job_id)
        .returning(Design.callback_url)
        .execution_options(synchronize_session=False)
    )
    url: str | None = session.scalars(stmt).first()
    return url


_RECORD_RESULT = PreparedStatement(
    update(_DESIGNS)
    .where(_DESIGNS.c.id == bindparam("design_id"))
    .values(
        cutout_key=bindparam("cutout_key"),
        result=bindparam("result", type_=_DESIGNS.c.result.type),
        updated_at=bindparam("updated_at", type_=_DESIGNS.c.updated_at.type),
    )
    .returning(_DESIGNS.c.callback_url, _DESIGNS.c.callback_job_id)
)


class RecordedResult(NamedTuple):
    """What :func:`record_result_in` found on the design it updated."""

    callback_url: str | None
    callback_job_id: str | None

    @property
    def callback_due(self) -> bool:
        """A callback must still be queued: a URL and no callback job yet."""
        return self.callback_url is not None and self.callback_job_id is None


def record_result_in(
    conn: Connection, design_id: str, *, cutout_key: str, result: dict[str, Any]
) -> RecordedResult | None:
    """In the caller's transaction: store the design's outcome. Returns the design's callback
    state as of this write (one statement, ``RETURNING``), or ``None`` when the design was
    deleted meanwhile."""
    params = {
        "design_id": design_id,
        "cutout_key": cutout_key,
        "result": result,
        "updated_at": datetime.now(UTC),
    }
    row = _RECORD_RESULT.first(conn, params)
    return None if row is None else RecordedResult(row[0], row[1])


def new_design_id() -> str:
    return uuid.uuid4().hex


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, value, re.ASCII):
        raise InvalidIdempotencyKeyError(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters "
            "(spaces inside only)"
        )
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ``<microseconds since 1970>.<design id>``: the position after that design in the newest-first
# list. Every string of this shape is a position (the page after it), so a cursor needs no
# signature or opaque encoding, and the API schema can say exactly what one looks like.
_CURSOR = re.compile(r"([0-9]{1,17})\.([0-9a-f]{32})", re.ASCII)


def encode_cursor(created_at: datetime, design_id: str) -> str:
    moment = created_at if created_at.tzinfo is not None else created_at.replace(tzinfo=UTC)
    return f"{(moment - _EPOCH) // timedelta(microseconds=1)}.{design_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise InvalidCursorError("the cursor is not one this API returned")
    return _EPOCH + timedelta(microseconds=int(match[1])), match[2]


class DesignStore:
    """Designs in the database. Every query is scoped to one owner (the API key's label)."""

    def __init__(self, *, database: Database) -> None:
        self._database = database

    def create(
        self,
        *,
        design_id: str,
        owner: str,
        original_key: str,
        original_content_type: str,
        original_width: int,
        original_height: int,
        kind: str,
        output_format: str,
        idempotency_key: str | None,
        callback_url: str | None = None,
        job: Job | None = None,
    ) -> tuple[DesignRecord, bool]:
        """Insert a design, and its ``job`` (a row from ``JobQueue.new_job``) in the same
        transaction: a design never exists without its job, nor a job without its design. With
        an idempotency key already used by this owner, nothing is stored and that design is
        returned instead. The flag says whether a new design was created."""
        now = datetime.now(UTC)
        row = Design(
            id=design_id,
            owner=owner,
            idempotency_key=idempotency_key,
            original_key=original_key,
            original_content_type=original_content_type,
            original_width=original_width,
            original_height=original_height,
            kind=kind,
            output_format=output_format,
            callback_url=callback_url,
            job_id=None if job is None else job.id,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._database.session() as session:
                if job is not None:
                    session.add(job)
                    session.flush()  # the job first: the design's job_id refers to it
                session.add(row)
                session.flush()
                record = _record(row)
        except IntegrityError:
            existing = self.by_idempotency_key(owner, idempotency_key)
            if existing is None:
                raise
            return existing, False
        return record, True

    def by_idempotency_key(self, owner: str, key: str | None) -> DesignRecord | None:
        if key is None:
            return None
        stmt = select(Design).where(Design.owner == owner, Design.idempotency_key == key)
        with self._database.session() as session:
            row = session.scalars(stmt).first()
            return None if row is None else _record(row)

    def get(self, design_id: str, *, owner: str | None = None) -> DesignRecord:
        with self._database.session() as session:
            row = session.get(Design, design_id)
            if row is None or (owner is not None and row.owner != owner):
                raise DesignNotFoundError(f"no design {design_id!r}")
            return _record(row)

    def attach_job(self, design_id: str, job_id: str) -> None:
        with self._database.session() as session:
            session.execute(
                update(Design)
                .where(Design.id == design_id)
                .values(job_id=job_id, updated_at=datetime.now(UTC))
            )

    def record_result(self, design_id: str, *, cutout_key: str, result: dict[str, Any]) -> bool:
        """Store the outcome; False when the design was deleted meanwhile."""
        with self._database.session() as session:
            recorded = record_result_in(
                session.connection(), design_id, cutout_key=cutout_key, result=result
            )
        return recorded is not None

    def page(
        self, *, owner: str, limit: int, cursor: str | None
    ) -> tuple[list[DesignRecord], str | None]:
        """Newest first; pass the returned cursor back for the next page."""
        limit = max(1, min(limit, MAX_PAGE))
        stmt = select(Design).where(Design.owner == owner)
        if cursor is not None:
            created_at, design_id = decode_cursor(cursor)
            stmt = stmt.where(
                or_(
                    Design.created_at < created_at,
                    and_(Design.created_at == created_at, Design.id < design_id),
                )
            )
        stmt = stmt.order_by(Design.created_at.desc(), Design.id.desc()).limit(limit + 1)
        with self._database.session() as session:
            rows = [_record(row) for row in session.scalars(stmt)]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return rows, next_cursor

    def delete(
        self,
        design_id: str,
        *,
        owner: str,
        within: Callable[[Session, DesignRecord, bool], None] | None = None,
    ) -> DesignRecord:
        """Remove the design row; returns it so the caller can remove its files. ``within``
        runs in the same transaction, told whether the design's cutout has no design left."""
        record = self.get(design_id, owner=owner)
        with self._database.session() as session:
            session.execute(delete(Design).where(Design.id == design_id))
            if within is not None:
                orphaned = record.cutout_key is not None and not session.scalar(
                    select(func.count())
                    .select_from(Design)
                    .where(Design.cutout_key == record.cutout_key)
                )
                within(session, record, orphaned)
        return record

    def cutout_in_use(self, cutout_key: str) -> bool:
        """Whether any design still points at this (content-addressed, shareable) cutout."""
        stmt = select(func.count()).select_from(Design).where(Design.cutout_key == cutout_key)
        with self._database.session() as session:
            return bool(session.scalar(stmt))

    # --- storage migration: where a design's objects are served from --------------------------

    def rewrite_public_base_url(
        self, *, verified_keys: Container[str], new_base_url: str, batch_size: int = 500
    ) -> list[BaseUrlChange]:
        """Point every design whose ``original_key`` and ``cutout_key`` (when set) are all in
        ``verified_keys`` at ``new_base_url``, in one transaction; returns the changes, by id.

        ``new_base_url`` must already be checked and normalised (``stolentee.designs.urls``).
        Designs already at ``new_base_url`` are left alone. Designs are read ``batch_size`` at a
        time, and each UPDATE re-checks the keys and the previous value, so a design whose
        cutout appears meanwhile is rewritten only if that cutout is verified too. ``updated_at``
        is not touched: the design did not change, only where its bytes are served from, and
        :meth:`restore_public_base_urls` can then put the table back exactly as it was.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        changes: list[BaseUrlChange] = []
        columns = (Design.id, Design.original_key, Design.cutout_key, Design.public_base_url)
        with self._database.session() as session:
            last_id: str | None = None
            while True:
                stmt = select(*columns).order_by(Design.id).limit(batch_size)
                if last_id is not None:
                    stmt = stmt.where(Design.id > last_id)
                rows = session.execute(stmt).all()
                if not rows:
                    break
                last_id = rows[-1].id
                by_before: dict[str | None, list[tuple[str, str, str | None]]] = {}
                for design_id, original_key, cutout_key, before in rows:
                    if before == new_base_url or original_key not in verified_keys:
                        continue
                    if cutout_key is not None and cutout_key not in verified_keys:
                        continue
                    by_before.setdefault(before, []).append((design_id, original_key, cutout_key))
                for before, group in by_before.items():
                    keys = {original for _, original, _ in group}
                    keys |= {cutout for _, _, cutout in group if cutout is not None}
                    guarded = (
                        update(Design)
                        .where(
                            Design.id.in_([design_id for design_id, _, _ in group]),
                            _is(Design.public_base_url, before),
                            Design.original_key.in_(keys),
                            or_(Design.cutout_key.is_(None), Design.cutout_key.in_(keys)),
                        )
                        .values(public_base_url=new_base_url)
                        .returning(Design.id)
                        .execution_options(synchronize_session=False)
                    )
                    done = set(session.scalars(guarded))
                    changes.extend(
                        BaseUrlChange(design_id, before, new_base_url)
                        for design_id, _, _ in group
                        if design_id in done
                    )
                if len(rows) < batch_size:
                    break
        changes.sort(key=lambda change: change.design_id)
        return changes

    def restore_public_base_urls(
        self, changes: Sequence[BaseUrlChange], *, batch_size: int = 500
    ) -> BaseUrlRestore:
        """Undo ``changes`` (newest last) in one transaction: each design still at ``after``
        goes back to ``before``. A design whose value is no longer ``after`` is left untouched
        and reported in ``conflicts``; one deleted since is reported in ``gone``. A design
        changed several times is undone newest first, and stops at its first conflict.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        # Layers of changes with distinct designs, newest first: a design changed twice is
        # restored to its middle value by one layer, then to its first by the next.
        layers: list[dict[str, BaseUrlChange]] = []
        for change in reversed(changes):
            if not layers or change.design_id in layers[-1]:
                layers.append({})
            layers[-1][change.design_id] = change
        restored = 0
        conflicts: dict[str, None] = {}
        gone: dict[str, None] = {}
        with self._database.session() as session:
            for layer in layers:
                groups: dict[tuple[str | None, str | None], list[str]] = {}
                for change in layer.values():
                    if change.design_id in conflicts or change.design_id in gone:
                        continue
                    groups.setdefault((change.before, change.after), []).append(change.design_id)
                for (before, after), ids in groups.items():
                    for chunk in _chunks(ids, batch_size):
                        guarded = (
                            update(Design)
                            .where(Design.id.in_(chunk), _is(Design.public_base_url, after))
                            .values(public_base_url=before)
                            .returning(Design.id)
                            .execution_options(synchronize_session=False)
                        )
                        done = set(session.scalars(guarded))
                        restored += len(done)
                        missed = [design_id for design_id in chunk if design_id not in done]
                        if not missed:
                            continue
                        present = set(
                            session.scalars(select(Design.id).where(Design.id.in_(missed)))
                        )
                        for design_id in missed:
                            (conflicts if design_id in present else gone)[design_id] = None
        return BaseUrlRestore(restored, list(conflicts), list(gone))
