"""The reaper puts right designs whose row disagrees with their job (issue 23, item 1): rows
of the old three-commit upload (a design and no job, or a job done and no cutout recorded)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from stolentee.db.engine import Database
from stolentee.db.models import Design
from stolentee.designs.repair import REPAIR_AFTER_S, repair_designs
from stolentee.designs.store import DESIGN_JOB, DesignStore, new_design_id
from stolentee.designs.views import design_status
from stolentee.jobs.queue import JobQueue
from stolentee.jobs.states import QUEUED
from stolentee.jobs.transport import Transport
from tests.fakes.clocks import FakeWallClock

from .designs import new_design

OWNER = "host:1:abc/0"


@pytest.fixture
def designs(database: Database) -> DesignStore:
    return DesignStore(database=database)


def drain(transport: Transport) -> list[str]:
    ids = []
    while (job_id := transport.receive(0)) is not None:
        ids.append(job_id)
    return ids


def legacy_design(designs: DesignStore, *, job_id: str | None = None) -> str:
    """A design as the three-commit upload could leave it: stored, with no job attached."""
    design_id = new_design_id()
    new_design(designs, design_id)
    if job_id is not None:
        designs.attach_job(design_id, job_id)
    return design_id


def test_a_design_without_a_job_gets_one_once_it_is_old_enough(
    queue: JobQueue, designs: DesignStore, transport: Transport, wall: FakeWallClock
) -> None:
    wall.now = datetime.now(UTC)
    stuck = legacy_design(designs)
    dangling = legacy_design(designs, job_id="f" * 32)  # names a job that does not exist
    assert design_status(designs.get(stuck), None) == "queued"  # and would stay so
    assert not repair_designs(queue)  # too young: an old upload may be between its commits

    wall.advance(REPAIR_AFTER_S + 1)
    report = repair_designs(queue)
    assert (report.jobs_created, report.results_recorded) == (2, 0)
    jobs = {}
    for design_id in (stuck, dangling):
        record = designs.get(design_id)
        job = queue.get(record.job_id or "")
        assert job is not None and (job.kind, job.state) == (DESIGN_JOB, QUEUED)
        assert job.payload["design_id"] == design_id
        jobs[design_id] = job.id
    assert sorted(drain(transport)) == sorted(jobs.values())
    assert not repair_designs(queue)  # nothing left to repair, nothing created twice


def test_a_done_job_whose_result_the_design_missed_is_recorded(
    queue: JobQueue, designs: DesignStore, database: Database, wall: FakeWallClock
) -> None:
    wall.now = datetime.now(UTC)
    job = queue.enqueue(DESIGN_JOB, {})
    design_id = legacy_design(designs, job_id=job.id)
    assert queue.lease(job.id, OWNER) is not None
    result = {"cutout_key": "assets/cutouts/abc.png", "width": 10, "height": 10}
    assert queue.complete(job.id, OWNER, result)  # without recording it on the design
    done = queue.get(job.id)
    assert design_status(designs.get(design_id), done) == "processing"  # forever, before
    wall.advance(REPAIR_AFTER_S + 1)
    assert repair_designs(queue).results_recorded == 1
    record = designs.get(design_id)
    assert record.cutout_key == "assets/cutouts/abc.png" and record.result == result
    assert design_status(record, done) == "done"


def test_a_deleted_or_finished_design_is_left_alone(
    queue: JobQueue, designs: DesignStore, database: Database, wall: FakeWallClock
) -> None:
    wall.now = datetime.now(UTC)
    finished = legacy_design(designs)
    with database.session() as session:
        session.execute(
            update(Design).where(Design.id == finished).values(cutout_key="assets/cutouts/x.png")
        )
    wall.advance(REPAIR_AFTER_S + 1)
    assert not repair_designs(queue)
