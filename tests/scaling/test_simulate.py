"""Simulation: the shipped trace, the queue model, the cost from the price book, trace errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from stolentee.costs.pricebook_files import load_pricebook
from stolentee.scaling.errors import TraceError
from stolentee.scaling.policy import ServiceRules
from stolentee.scaling.simulate import (
    SimulationConfig,
    SimulationResult,
    hourly,
    percentile,
    simulate,
)
from stolentee.scaling.trace import (
    SHIPPED_COMMENT,
    TraceMinute,
    day_at_1000_users,
    parse_trace,
    read_trace,
    shipped_trace_text,
    trace_csv,
)

WORKER = ServiceRules(queue_per_replica=20, concurrency_per_replica=2)
MINUTES_PER_MONTH = Decimal(30 * 24 * 60)


@pytest.fixture(scope="module")
def shipped_run() -> SimulationResult:
    return simulate(read_trace(), WORKER, SimulationConfig(), load_pricebook())


def test_the_shipped_file_is_what_the_documented_derivation_makes() -> None:
    assert shipped_trace_text() == trace_csv(day_at_1000_users(), comment=SHIPPED_COMMENT)


def test_the_shipped_trace_is_a_day_at_1000_users_with_an_evening_peak() -> None:
    rows = read_trace()
    assert len(rows) == 24 * 60
    assert sum(row.arrivals for row in rows) == 1000  # 10,000 jobs/month x 3 / 30 days
    by_hour = [sum(row.arrivals for row in rows[h * 60 : (h + 1) * 60]) for h in range(24)]
    assert by_hour.index(max(by_hour)) == 20
    assert max(row.active_users or 0 for row in rows) == 1000
    assert min(by_hour) < max(by_hour) / 10  # the night is quiet
    assert {row.job_cost_s for row in rows} == {4.0}


def test_shipped_day_every_job_done_and_sensible_figures(shipped_run: SimulationResult) -> None:
    result = shipped_run
    assert (result.jobs_total, result.jobs_done) == (1000, 1000)
    assert result.drain_minutes == 0
    # the 20:00 burst is more than one worker can take: the queue adds workers, then they go
    ups = [c for c in result.changes if c.direction == "up"]
    downs = [c for c in result.changes if c.direction == "down"]
    assert ups and all(c.reason.startswith("queue depth") for c in ups)
    assert all(20 * 60 <= c.at_s / 60 <= 20 * 60 + 10 for c in ups)
    assert 2 <= result.peak_replicas <= WORKER.max_replicas
    assert result.minutes[-1].replicas == 1
    assert len(downs) == result.peak_replicas - 1
    waits = result.wait_percentiles()
    assert waits[50] == 0.0  # most of the day nobody waits
    assert 0 < waits[95] <= waits[99] <= max(result.waits_s) < 120
    assert result.job_time_percentiles()[95] < 5 * 60  # the seed's "< 5 minutes"
    hours = hourly(result)
    assert hours[20].max_replicas == result.peak_replicas and hours[3].max_replicas == 1


def test_cost_is_railway_prices_per_replica_minute(shipped_run: SimulationResult) -> None:
    book = load_pricebook()
    ram = book.provider("railway").figure("ram_usd_per_gb_month").value
    vcpu = book.provider("railway").figure("vcpu_usd_per_month").value
    cost = shipped_run.cost
    minutes = sum(record.replicas for record in shipped_run.minutes)
    assert cost.replica_minutes == minutes > 1440
    assert cost.total_usd == minutes * (ram + vcpu) / MINUTES_PER_MONTH
    static = shipped_run.static_cost
    assert static.replica_minutes == shipped_run.peak_replicas * len(shipped_run.minutes)
    assert static.total_usd > cost.total_usd


def test_a_user_price_book_changes_the_cost(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        "[providers.railway.figures]\n"
        "ram_usd_per_gb_month = { value = 0, as_of = 2026-12-01 }\n"
        "vcpu_usd_per_month = { value = 43.2, as_of = 2026-12-01 }\n",
        encoding="utf-8",
    )
    trace = [TraceMinute(minute=m, arrivals=0, job_cost_s=1.0) for m in range(10)]
    config = SimulationConfig(vcpus=2.0)
    result = simulate(trace, WORKER, config, load_pricebook(prices))
    # 10 replica-minutes x 2 vCPUs x $43.20 / 43,200 minutes
    assert result.cost.total_usd == Decimal("0.02")


def test_cpu_pressure_without_a_queue_scales_after_the_window_and_does_not_flap() -> None:
    # 12 jobs a minute of 8 s on 2 slots: 80% busy, never 20 queued
    trace = [TraceMinute(minute=m, arrivals=12, job_cost_s=8.0) for m in range(60)]
    result = simulate(trace, WORKER, SimulationConfig(startup_s=0), load_pricebook())
    (up,) = result.changes
    # the first sample is at the end of minute 0, so 15 minutes of it end with minute 15
    assert (up.current, up.desired, up.at_s / 60) == (1, 2, 16)
    assert up.reason.startswith("CPU 80% > 70% for 15m")
    # on 2 replicas the load is 40%, which one replica could not carry: no way back down
    assert result.minutes[-1].replicas == 2
    assert max(record.queue_depth for record in result.minutes) < 20


def test_an_overload_reaches_the_maximum_and_drains_after_the_trace() -> None:
    trace = [TraceMinute(minute=m, arrivals=90, job_cost_s=10.0) for m in range(30)]
    result = simulate(trace, WORKER, SimulationConfig(startup_s=30), load_pricebook())
    assert result.peak_replicas == 5
    assert result.drain_minutes > 0  # 5 x 2 slots / 10 s = 60 a minute < 90 arriving
    assert (result.jobs_total, result.jobs_done) == (2700, 2700)
    assert result.wait_percentiles()[99] > 60


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([], 95) == 0.0
    assert percentile([3.0], 50) == 3.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty trace"),
        ("minute,arrivals\n0,1\n", "needs the column 'job_cost_s'"),
        ("minute,arrivals,job_cost_s\n0,1,4\n2,1,4\n", "x.csv:3: minute 2 where 1 was expected"),
        ("minute,arrivals,job_cost_s\n0,-1,4\n", "x.csv:2: arrivals must be >= 0"),
        ("minute,arrivals,job_cost_s\n0,1,0\n", "job_cost_s must be > 0"),
        ("minute,arrivals,job_cost_s\n0,one,4\n", "x.csv:2: invalid literal"),
        ("minute,arrivals,job_cost_s\n0,1\n", "x.csv:2: 2 values for 3 columns"),
        ("# only a comment\nminute,arrivals,job_cost_s\n", "a header but no minutes"),
    ],
)
def test_bad_traces_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message.replace("(", r"\(")):
        parse_trace(text, label="x.csv")


def test_a_trace_file_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read the trace"):
        read_trace(tmp_path / "missing.csv")


def test_optional_users_column_and_comments() -> None:
    rows = parse_trace("# made by hand\nminute,job_cost_s,arrivals\n0,2.5,3\n1,2.5,0\n")
    assert rows == [TraceMinute(0, 3, 2.5, None), TraceMinute(1, 0, 2.5, None)]
