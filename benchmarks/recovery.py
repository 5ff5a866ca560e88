"""Recovery after a fault, measured: upload-to-done times of designs uploaded around one fault.

The scenarios of ``tests/jobs/test_faults.py``, each on a fresh private PostgreSQL and Redis, an
API process and a ``stolentee worker`` (2 threads): PostgreSQL restarted immediately (1 s down),
Redis killed and restarted empty, the worker SIGKILLed and started again (lease 6 s there, 10 min
in the others). Uploads every 0.1 s for 6 s, the fault after 2 s. Reports, per scenario and
repetition, accepted / refused uploads, done / failed designs, and upload-to-done p50 / p90 /
max (server times: ``created_at`` to ``updated_at``).

    PYTHONPATH=. .venv/bin/python benchmarks/recovery.py --repeat 3

The peer is the issue's own measurement before the change (p90 136 s, max 148 s after a 1 s
PostgreSQL restart or an emptied Redis) and its goal (p90 <= 15 s).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tests.jobs.test_faults import (
    Figures,
    Stack,
    build_stack,
    postgres_restart,
    redis_empty_restart,
    tear_down,
    worker_sigkill,
)

SCENARIOS: dict[str, tuple[Callable[[Stack], Figures], float]] = {
    "postgres-restart": (postgres_restart, 600.0),
    "redis-empty-restart": (redis_empty_restart, 600.0),
    "worker-sigkill": (worker_sigkill, 6.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {platform.processor()}")
    print("| fault | run | accepted | refused | done | failed | p50 s | p90 s | max s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.only or list(SCENARIOS):
        scenario, lease_s = SCENARIOS[name]
        for run in range(1, args.repeat + 1):
            with tempfile.TemporaryDirectory(prefix="stolentee-recovery-") as directory:
                stack = build_stack(Path(directory), lease_s=lease_s)
                try:
                    f = scenario(stack)
                finally:
                    tear_down(stack)
            print(
                f"| {f.fault} | {run} | {f.accepted} | {f.refused} | {f.done} | {f.failed} | "
                f"{f.p50_s:.2f} | {f.p90_s:.2f} | {f.max_s:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
