"""The hot path's SQL, prepared once per dialect: lease a job, complete it, read it by id (run on
the driver's cursor, see stolentee.db.prepared)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    or_,
    select,
    update,
)

from stolentee.db.models import Job
from stolentee.db.prepared import PreparedStatement
from stolentee.jobs.states import (
    DONE,
    PROCESSING,
    QUEUED,
)

# The statements every job runs: built once, compiled once per dialect and run on the driver's
# cursor (stolentee.db.prepared); through the ORM each cost 3-5x the CPU of the driver's work.
JOBS_TABLE = cast(Table, Job.__table__)


_c = JOBS_TABLE.c


NOW_PARAM = bindparam("now", type_=_c.started_at.type)


LEASE = PreparedStatement(
    update(JOBS_TABLE)
    .where(
        _c.id == bindparam("job_id"),
        or_(
            and_(_c.state == QUEUED, _c.available_at <= NOW_PARAM),
            and_(_c.state == PROCESSING, _c.lease_expires_at < NOW_PARAM),
        ),
        _c.attempts < _c.max_attempts,
    )
    .values(
        lost=_c.lost + case((_c.state == PROCESSING, 1), else_=0),
        state=PROCESSING,
        attempts=_c.attempts + 1,
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("expires", type_=_c.lease_expires_at.type),
        heartbeat_at=NOW_PARAM,
        started_at=NOW_PARAM,
    )
    .returning(*_c)
)


COMPLETE = PreparedStatement(
    update(JOBS_TABLE)
    .where(
        _c.id == bindparam("job_id"),
        _c.state == PROCESSING,
        _c.lease_owner == bindparam("owner"),
    )
    .values(
        state=DONE,
        result=bindparam("result", type_=_c.result.type),
        error=None,
        finished_at=NOW_PARAM,
        lease_expires_at=None,
    )
    .returning(_c.kind)
)


# complete() reads the row back only for a follow-up hook that must run (in its transaction);
# otherwise RETURNING the kind is enough. The full row costs a JSON decode of the result just
# written and a parse per timestamp on SQLite, most of all right after the pipeline has evicted
# the CPU caches, where the completion runs (benchmarks/decisions.md, "the queue's hot
# path").
JOB_BY_ID = PreparedStatement(select(*_c).where(_c.id == bindparam("job_id")))


def job_from_row(columns: tuple[str, ...], row: tuple[Any, ...]) -> Job:
    """A Job (transient: in no session) from a row of every ``jobs`` column.

    The values go straight into the instance's ``__dict__``, as the ORM's own loading does:
    they read back as loaded attributes, without the per-attribute change events of the
    constructor, a several-fold saving twice per job (benchmarks/decisions.md, "the
    queue's hot path")."""
    job = Job()
    job.__dict__.update(zip(columns, row, strict=True))
    return job
