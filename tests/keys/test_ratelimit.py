"""The megapixel token bucket, driven by a fake clock."""

from __future__ import annotations

import threading

import pytest
import redis

from stolentee.keys.ratelimit import (
    KEY_PREFIX,
    PRUNE_THRESHOLD,
    MegapixelRateLimiter,
    RateDecision,
    build_rate_limiter,
)

from .conftest import FakeClock


@pytest.fixture
def limiter(clock: FakeClock) -> MegapixelRateLimiter:
    return MegapixelRateLimiter(60.0, clock=clock)  # 60 MP a minute: 1 MP a second


def test_consumes_until_the_limit_then_refuses_with_retry_after(
    limiter: MegapixelRateLimiter,
) -> None:
    first = limiter.check_and_consume("a", 50.0)
    assert first == RateDecision(
        allowed=True, limit=60.0, remaining=10.0, reset_s=50.0, retry_after_s=0.0
    )
    refused = limiter.check_and_consume("a", 20.0)
    assert not refused.allowed
    assert refused.remaining == 10.0 and refused.retry_after_s == pytest.approx(10.0)
    assert refused.reset_s == pytest.approx(50.0)


def test_refills_continuously_up_to_one_minute(
    limiter: MegapixelRateLimiter, clock: FakeClock
) -> None:
    limiter.check_and_consume("a", 60.0)
    clock.advance(10.0)
    assert not limiter.check_and_consume("a", 10.5).allowed
    after = limiter.check_and_consume("a", 10.0)
    assert after.allowed and after.remaining == pytest.approx(0.0)
    clock.advance(3600.0)
    full = limiter.check_and_consume("a", 0.0)
    assert full.remaining == 60.0 and full.reset_s == 0.0


def test_callers_have_separate_buckets(limiter: MegapixelRateLimiter) -> None:
    assert limiter.check_and_consume("a", 60.0).allowed
    assert not limiter.check_and_consume("a", 1.0).allowed
    assert limiter.check_and_consume("b", 60.0).allowed


def test_oversize_request_is_allowed_on_a_full_bucket_and_empties_it(
    limiter: MegapixelRateLimiter, clock: FakeClock
) -> None:
    huge = limiter.check_and_consume("a", 100.0)
    assert huge.allowed and huge.remaining == 0.0 and huge.reset_s == pytest.approx(60.0)
    again = limiter.check_and_consume("a", 100.0)
    assert not again.allowed and again.retry_after_s == pytest.approx(60.0)
    clock.advance(59.0)
    assert not limiter.check_and_consume("a", 100.0).allowed
    clock.advance(1.0)
    assert limiter.check_and_consume("a", 100.0).allowed


def test_headers_follow_remove_bg() -> None:
    allowed = RateDecision(True, limit=500.0, remaining=12.7, reset_s=0.4, retry_after_s=0.0)
    assert allowed.headers(now_unix=1_700_000_000.5) == {
        "X-RateLimit-Limit": "500",
        "X-RateLimit-Remaining": "12",
        "X-RateLimit-Reset": "1700000001",
    }
    refused = RateDecision(False, limit=500.0, remaining=0.2, reset_s=59.9, retry_after_s=0.01)
    headers = refused.headers(now_unix=1_700_000_000.0)
    assert headers["Retry-After"] == "1" and headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == "1700000060"
    assert int(RateDecision(True, 500.0, 500.0, 0.0, 0.0).headers()["X-RateLimit-Reset"]) > 0


def test_bad_arguments_are_refused(limiter: MegapixelRateLimiter) -> None:
    with pytest.raises(ValueError, match="positive"):
        MegapixelRateLimiter(0.0)
    with pytest.raises(ValueError, match="non-negative"):
        limiter.check_and_consume("a", -1.0)
    with pytest.raises(ValueError, match="non-negative"):
        limiter.check_and_consume("a", float("nan"))


def test_concurrent_callers_never_exceed_the_limit(clock: FakeClock) -> None:
    limiter = MegapixelRateLimiter(500.0, clock=clock)  # the clock stands still: no refill
    allowed: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(100):
            decision = limiter.check_and_consume("shared", 1.0)
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 500 and len(allowed) == 800


def test_full_buckets_are_forgotten(limiter: MegapixelRateLimiter, clock: FakeClock) -> None:
    for n in range(PRUNE_THRESHOLD):
        limiter.check_and_consume(f"caller-{n}", 1.0)
    clock.advance(60.0)
    limiter.check_and_consume("late", 1.0)
    assert set(limiter._buckets) == {"late"}


# --- shared through Redis (issue 23, item 6): N processes, one limit --------------------------


def test_the_limit_is_shared_by_every_process_that_uses_one_redis(redis_url: str) -> None:
    """Four limiters stand for four API processes: together they allow the limit once."""
    processes = [build_rate_limiter(60.0, redis_url) for _ in range(4)]
    try:
        allowed = sum(processes[n % 4].check_and_consume("shop", 10.0).allowed for n in range(24))
        assert allowed == 6  # 60 MP a minute at 10 MP each (refill in this short run < 1 MP)
        other = processes[0].check_and_consume("other-shop", 10.0)
        assert other.allowed and other.remaining == pytest.approx(50.0, abs=0.5)
        refused = processes[1].check_and_consume("shop", 10.0)
        assert not refused.allowed and 5.0 < refused.retry_after_s <= 10.0
        assert refused.headers()["Retry-After"] in {str(n) for n in range(6, 11)}
    finally:
        for limiter in processes:
            limiter.close()


def test_the_redis_bucket_behaves_like_the_in_memory_one(redis_url: str) -> None:
    shared = build_rate_limiter(60.0, redis_url)
    try:
        first = shared.check_and_consume("a", 50.0)
        assert first.allowed and first.remaining == pytest.approx(10.0, abs=0.1)
        assert first.reset_s == pytest.approx(50.0, abs=0.1)
        assert not shared.check_and_consume("a", 20.0).allowed
        big = shared.check_and_consume("b", 100.0)  # larger than the bucket: allowed when full
        assert big.allowed and big.remaining == 0.0
        with pytest.raises(ValueError, match="non-negative"):
            shared.check_and_consume("a", -1.0)
        keys = redis.Redis.from_url(redis_url).keys(f"{KEY_PREFIX}*")
        ttl = redis.Redis.from_url(redis_url).pttl(f"{KEY_PREFIX}a")
        assert len(keys) == 2 and 0 < ttl <= 51_000  # gone once the bucket would be full
    finally:
        shared.close()


def test_without_redis_each_process_decides_alone() -> None:
    unreachable = build_rate_limiter(60.0, "redis://127.0.0.1:1/0")  # nothing listens there
    try:
        assert unreachable.check_and_consume("a", 50.0).allowed  # the local fallback
        assert not unreachable.check_and_consume("a", 20.0).allowed  # and it counts
    finally:
        unreachable.close()
    assert isinstance(build_rate_limiter(60.0, ""), MegapixelRateLimiter)
