"""Load traces: one row per minute (arrivals, job cost), and the shipped day at 1,000 users.

A trace is a CSV file with the columns ``minute`` (0, 1, 2, ... without gaps), ``arrivals``
(design jobs submitted during that minute), ``job_cost_s`` (seconds a worker slot spends on one
of them) and, optionally, ``active_users`` (users online; informative). Lines starting with
``#`` are comments.

**The shipped trace** (``data/trace_1000_users.csv``, made by :func:`day_at_1000_users`) is
derived from the seed report's figures and a few stated assumptions:

* the seed plans for **1,000 users** and **10,000 jobs a month** ("Can process 10,000
  jobs/month"; Remove.bg priced "10k images"): 10 designs per user a month, **333 a day** on
  average;
* the traced day is a busy one, **3x the average: 1,000 jobs** (one design per user), as a
  weekend or promotion day would be (assumption);
* **775** of them follow a diurnal curve with an **evening peak** (hourly weights below: night
  0.5-2, working day 3-6, evening 7-10, highest 20:00-21:00; assumption);
* **225** come in a five-minute **burst at 20:00-20:05** (45 a minute): the evening newsletter
  or drop that puts all 1,000 users online at once, the seed's "1,000 concurrent users", and
  makes about one in four of them upload a design (assumption);
* every job costs **4 s** of a worker slot, the middle of the seed's "3-5 seconds" for the
  self-hosted rembg service;
* ``active_users`` is 1,000 at the burst and proportional to the arrival rate otherwise.

Minute counts are the expected rates rounded with a running remainder (no randomness), so
the daily totals are exact and the file is reproducible.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from stolentee.scaling.errors import TraceError

SHIPPED_TRACE = "trace_1000_users.csv"
COLUMNS = ("minute", "arrivals", "job_cost_s", "active_users")
MINUTES_PER_DAY = 24 * 60

# The derivation above, as numbers.
SEED_USERS = 1000
SEED_JOBS_PER_MONTH = 10_000
DAYS_PER_MONTH = 30
BUSY_DAY_FACTOR = 3
BURST_START_MINUTE = 20 * 60
BURST_MINUTES = 5
BURST_JOBS_PER_MINUTE = 45
JOB_COST_S = 4.0
HOURLY_WEIGHTS = (
    2, 1, 1, 0.5, 0.5, 0.5, 1, 2, 3, 4, 4, 5,  # 00:00-11:59
    6, 5, 4, 4, 4, 5, 7, 9, 10, 9, 6, 3,  # 12:00-23:59
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TraceMinute:
    minute: int
    arrivals: int
    job_cost_s: float
    active_users: int | None = None


def day_at_1000_users() -> list[TraceMinute]:
    """The shipped trace (see the module docstring for the derivation)."""
    day_jobs = SEED_JOBS_PER_MONTH * BUSY_DAY_FACTOR // DAYS_PER_MONTH  # 1,000
    burst_jobs = BURST_MINUTES * BURST_JOBS_PER_MINUTE  # 225
    base_jobs = day_jobs - burst_jobs  # 775
    total_weight = sum(HOURLY_WEIGHTS)
    rates = [base_jobs * HOURLY_WEIGHTS[m // 60] / total_weight / 60 for m in range(1440)]
    for m in range(BURST_START_MINUTE, BURST_START_MINUTE + BURST_MINUTES):
        rates[m] += BURST_JOBS_PER_MINUTE
    peak = max(rates)
    rows: list[TraceMinute] = []
    expected = 0.0
    given = 0
    for minute, rate in enumerate(rates):
        expected += rate
        arrivals = math.floor(expected + 1e-9) - given
        given += arrivals
        rows.append(
            TraceMinute(
                minute=minute,
                arrivals=arrivals,
                job_cost_s=JOB_COST_S,
                active_users=round(SEED_USERS * rate / peak),
            )
        )
    return rows


def trace_csv(rows: Sequence[TraceMinute], *, comment: str = "") -> str:
    out = io.StringIO()
    for line in comment.splitlines():
        out.write(f"# {line}\n" if line else "#\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        users = "" if row.active_users is None else row.active_users
        writer.writerow([row.minute, row.arrivals, f"{row.job_cost_s:g}", users])
    return out.getvalue()


SHIPPED_COMMENT = """\
A day at 1,000 users with an evening peak: stolentee autoscale simulate's shipped trace.
Made by stolentee.scaling.trace.day_at_1000_users(); the derivation is in that module:
seed: 1,000 users, 10,000 jobs/month = 333/day; a busy day at 3x = 1,000 jobs;
775 on a diurnal curve peaking 20:00-21:00, 225 in a burst 20:00-20:05 (all 1,000 users
online); 4 s per job (the seed's 3-5 s for self-hosted rembg)."""


def shipped_trace_text() -> str:
    return resources.files("stolentee.scaling").joinpath("data", SHIPPED_TRACE).read_text("utf-8")


def read_trace(path: str | Path | None = None) -> list[TraceMinute]:
    """Rows of the trace at ``path`` (the shipped one when ``None``)."""
    if path is None:
        return parse_trace(shipped_trace_text(), label=f"stolentee/scaling/data/{SHIPPED_TRACE}")
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{target}: cannot read the trace: {exc.strerror or exc}") from exc
    return parse_trace(text, label=str(target))


def parse_trace(text: str, *, label: str = "trace") -> list[TraceMinute]:
    lines = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise TraceError(f"{label}: empty trace")
    header_number, header_line = lines[0]
    header = [name.strip() for name in next(csv.reader([header_line]))]
    for needed in ("minute", "arrivals", "job_cost_s"):
        if needed not in header:
            raise TraceError(
                f"{label}:{header_number}: the header needs the column {needed!r} "
                f"(columns: minute, arrivals, job_cost_s[, active_users])"
            )
    rows: list[TraceMinute] = []
    for number, line in lines[1:]:
        values = next(csv.reader([line]))
        if len(values) != len(header):
            raise TraceError(f"{label}:{number}: {len(values)} values for {len(header)} columns")
        record = dict(zip(header, (value.strip() for value in values), strict=True))
        try:
            minute = int(record["minute"])
            arrivals = int(record["arrivals"])
            cost = float(record["job_cost_s"])
            users_text = record.get("active_users", "")
            users = int(users_text) if users_text else None
        except ValueError as exc:
            raise TraceError(f"{label}:{number}: {exc}") from None
        if minute != len(rows):
            raise TraceError(f"{label}:{number}: minute {minute} where {len(rows)} was expected")
        if arrivals < 0:
            raise TraceError(f"{label}:{number}: arrivals must be >= 0; got {arrivals}")
        if not (math.isfinite(cost) and cost > 0):
            raise TraceError(f"{label}:{number}: job_cost_s must be > 0; got {cost}")
        rows.append(TraceMinute(minute, arrivals, cost, users))
    if not rows:
        raise TraceError(f"{label}: the trace has a header but no minutes")
    return rows
