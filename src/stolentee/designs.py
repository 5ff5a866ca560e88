"""Designs: a customer's upload, its background-removal job, and the resulting cutout.

The ``designs`` table records what was uploaded and what came out; the job's state (``jobs``
table, the source of truth) says where processing stands. ``DesignStore`` is the only code that
reads or writes designs.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from stolentee.db.engine import Database
from stolentee.db.models import Design
from stolentee.errors import ClientError, NotFoundError

MAX_PAGE = 100
MAX_IDEMPOTENCY_KEY = 200


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
    )


def new_design_id() -> str:
    return uuid.uuid4().hex


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidIdempotencyKeyError(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters"
        )
    return key


def encode_cursor(created_at: datetime, design_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), design_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, design_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None or not isinstance(design_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidCursorError("the cursor is not one this API returned") from None
    return moment, design_id


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
    ) -> tuple[DesignRecord, bool]:
        """Insert a design; with an idempotency key already used by this owner, return that
        design instead. The flag says whether a new design was created."""
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
            created_at=now,
            updated_at=now,
        )
        try:
            with self._database.session() as session:
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
        stmt = (
            update(Design)
            .where(Design.id == design_id)
            .values(cutout_key=cutout_key, result=result, updated_at=datetime.now(UTC))
            .returning(Design.id)
        )
        with self._database.session() as session:
            changed = session.scalars(stmt).first()
        return changed is not None

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

    def delete(self, design_id: str, *, owner: str) -> DesignRecord:
        """Remove the design row; returns it so the caller can remove its files."""
        record = self.get(design_id, owner=owner)
        with self._database.session() as session:
            session.execute(delete(Design).where(Design.id == design_id))
        return record

    def cutout_in_use(self, cutout_key: str) -> bool:
        """Whether any design still points at this (content-addressed, shareable) cutout."""
        stmt = select(func.count()).select_from(Design).where(Design.cutout_key == cutout_key)
        with self._database.session() as session:
            return bool(session.scalar(stmt))
