"""Settings of the job queue and its workers."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from stolentee.config.base import (
    SECTION_CONFIG,
)


class QueueSettings(BaseSettings):
    """Job queue transport."""

    model_config = SECTION_CONFIG

    redis_url: SecretStr = Field(
        SecretStr(""),
        validation_alias="REDIS_URL",
        description="Redis URL for the job queue at scale (`redis://host:6379/0`). Empty: the "
        "embedded SQLite queue in `$STOLENTEE_DATA_DIR/queue.db`.",
    )
    run_worker: bool = Field(
        True,
        validation_alias="STOLENTEE_RUN_WORKER",
        description="`stolentee serve` also runs an in-process worker (threads). Turn off when "
        "separate `stolentee worker` processes do the work (`serve --no-worker` does too).",
    )
    worker_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        validation_alias="STOLENTEE_WORKER_CONCURRENCY",
        description="Jobs one worker process runs at once (seed: 2, then 4-6).",
    )
    lease_s: float = Field(
        120.0,
        gt=0,
        validation_alias="STOLENTEE_JOB_LEASE_S",
        description="A job's lease: a worker that stops heartbeating for this long is presumed "
        "dead and the job is handed to another.",
    )
    heartbeat_s: float = Field(
        10.0,
        gt=0,
        validation_alias="STOLENTEE_JOB_HEARTBEAT_S",
        description="How often a worker renews the lease of a job it is processing.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=20,
        validation_alias="STOLENTEE_JOB_MAX_ATTEMPTS",
        description="Attempts per job (failures and worker deaths both count) before `failed`.",
    )
    retry_backoff_s: float = Field(
        5.0,
        ge=0,
        validation_alias="STOLENTEE_JOB_RETRY_BACKOFF_S",
        description="Delay before the first retry; doubled for each further attempt.",
    )
    reaper_interval_s: float = Field(
        15.0,
        gt=0,
        validation_alias="STOLENTEE_JOB_REAPER_INTERVAL_S",
        description="How often expired leases are reclaimed and lost queue messages re-sent.",
    )
    resend_check_s: float = Field(
        2.0,
        gt=0,
        validation_alias="STOLENTEE_JOB_RESEND_CHECK_S",
        description="How often each worker compares the queue's messages with its queued jobs "
        "and re-sends the jobs whose messages are missing (Redis restarted empty, a send "
        "failed), instead of waiting a whole lease for them.",
    )
    stall_retry_s: float = Field(
        1800.0,
        ge=0,
        validation_alias="STOLENTEE_JOB_STALL_RETRY_S",
        description="How long a job that fails because of storage or the database (a full "
        "disk, a restarting server) keeps being retried without using up its attempts, from "
        "the first such failure. 0: such failures count as attempts like any other.",
    )
    stall_backoff_max_s: float = Field(
        60.0,
        gt=0,
        validation_alias="STOLENTEE_JOB_STALL_BACKOFF_MAX_S",
        description="Longest wait between two retries of a job held up by storage or the "
        "database (the wait starts at the retry backoff and doubles).",
    )
