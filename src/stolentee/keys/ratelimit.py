"""Per-caller rate limit in input megapixels per minute, as Remove.bg counts it.

Each caller (a :class:`~stolentee.keys.principals.Principal` label) has a token bucket holding up to
one minute's worth of megapixels (``limit_per_minute``), refilled continuously at
``limit_per_minute / 60`` per second. A request takes its megapixels from the bucket or is
refused with the time after which it would fit. A request larger than the whole bucket would
never fit, so it is allowed when the bucket is full, and empties it.

Where the buckets live: with ``REDIS_URL`` set (:func:`build_rate_limiter`), in Redis, shared by
every API process and machine (:class:`RedisMegapixelRateLimiter`: the same bucket, refilled and
taken from in one Lua script, atomic, on the Redis server's clock, so N processes give a caller
the limit once, not N times). Without Redis, in this process's memory
(:class:`MegapixelRateLimiter`: one process is the embedded default). When Redis cannot be
reached, a request is decided by the in-memory buckets of this process instead (logged): a
Redis outage must not stop removals.

Response headers follow Remove.bg: ``X-RateLimit-Limit`` and ``X-RateLimit-Remaining`` in whole
megapixels, ``X-RateLimit-Reset`` as the Unix time at which the bucket is full again, and
``Retry-After`` in whole seconds on refusals.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

SECONDS_PER_MINUTE = 60.0
PRUNE_THRESHOLD = 1024  # buckets kept before full (hence forgettable) ones are dropped


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one check: whether to serve, and the figures for the headers."""

    allowed: bool
    limit: float  # megapixels per minute, also the bucket's capacity
    remaining: float  # megapixels left in the bucket after this decision
    reset_s: float  # seconds until the bucket is full again
    retry_after_s: float  # seconds until this request would fit; 0 when allowed

    def headers(self, *, now_unix: float | None = None) -> dict[str, str]:
        """``X-RateLimit-*`` headers, plus ``Retry-After`` when the request was refused."""
        now = time.time() if now_unix is None else now_unix
        headers = {
            "X-RateLimit-Limit": str(int(self.limit)),
            "X-RateLimit-Remaining": str(max(0, math.floor(self.remaining))),
            "X-RateLimit-Reset": str(math.ceil(now + self.reset_s)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


class RateLimiter(Protocol):
    """Decides whether a caller's request of ``megapixels`` fits its per-minute limit."""

    limit: float

    def check_and_consume(self, label: str, megapixels: float) -> RateDecision: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class MegapixelRateLimiter:
    """Token buckets of megapixels per caller label; thread-safe, in-memory, per process."""

    def __init__(
        self, limit_per_minute: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit_per_minute <= 0:
            raise ValueError("limit_per_minute must be positive")
        self.limit = float(limit_per_minute)
        self._rate_per_s = self.limit / SECONDS_PER_MINUTE
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def check_and_consume(self, label: str, megapixels: float) -> RateDecision:
        """Take ``megapixels`` from ``label``'s bucket if they fit; say when to retry if not."""
        if megapixels < 0 or math.isnan(megapixels):
            raise ValueError("megapixels must be a non-negative number")
        with self._lock:
            now = self._clock()
            bucket = self._refilled(label, now)
            allowed = self._fits(bucket, megapixels)
            if allowed:
                bucket.tokens = max(0.0, bucket.tokens - megapixels)
            retry_after_s = 0.0 if allowed else self._seconds_to(bucket, megapixels)
            return RateDecision(
                allowed=allowed,
                limit=self.limit,
                remaining=bucket.tokens,
                reset_s=self._seconds_to(bucket, self.limit),
                retry_after_s=retry_after_s,
            )

    def close(self) -> None:
        """Nothing to release: the buckets are this process's memory."""

    def _refilled(self, label: str, now: float) -> _Bucket:
        bucket = self._buckets.get(label)
        if bucket is None:
            if len(self._buckets) >= PRUNE_THRESHOLD:
                self._prune(now)
            bucket = self._buckets[label] = _Bucket(self.limit, now)
            return bucket
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.limit, bucket.tokens + elapsed * self._rate_per_s)
        bucket.updated = now
        return bucket

    def _fits(self, bucket: _Bucket, megapixels: float) -> bool:
        if megapixels <= bucket.tokens:
            return True
        return megapixels > self.limit and bucket.tokens >= self.limit

    def _seconds_to(self, bucket: _Bucket, megapixels: float) -> float:
        """Seconds until the bucket holds ``megapixels`` (capped at the capacity)."""
        missing = min(megapixels, self.limit) - bucket.tokens
        return max(0.0, missing / self._rate_per_s)

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely: a full bucket equals a new one."""
        full_after_s = self.limit / self._rate_per_s
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after_s]
        for label in stale:
            del self._buckets[label]


# KEYS[1]: the bucket's hash; ARGV: capacity, refill per second, megapixels requested.
# Returns {allowed (0/1), tokens left as a string (Lua numbers become integers on the way out)}.
# TIME is the Redis server's clock: every process agrees on it. The key expires once the bucket
# would be full again, since a full bucket equals a missing one.
_TAKE_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - updated) * rate)
end
local allowed = 0
if wanted <= tokens or (wanted > capacity and tokens >= capacity) then
  allowed = 1
  tokens = math.max(0, tokens - wanted)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""
KEY_PREFIX = "stolentee:ratelimit:"


class RedisMegapixelRateLimiter:
    """The same token buckets in Redis, shared by every process that uses this Redis."""

    def __init__(
        self, limit_per_minute: float, *, redis: Redis, fallback: MegapixelRateLimiter
    ) -> None:
        if limit_per_minute <= 0:
            raise ValueError("limit_per_minute must be positive")
        self.limit = float(limit_per_minute)
        self._rate_per_s = self.limit / SECONDS_PER_MINUTE
        self._redis = redis
        self._take = redis.register_script(_TAKE_SCRIPT)
        self._fallback = fallback

    def check_and_consume(self, label: str, megapixels: float) -> RateDecision:
        if megapixels < 0 or math.isnan(megapixels):
            raise ValueError("megapixels must be a non-negative number")
        try:
            allowed, left = self._take(
                keys=[KEY_PREFIX + label], args=[self.limit, self._rate_per_s, megapixels]
            )
        except RedisError as exc:
            log.warning("rate limit: Redis unavailable (%s); this process decides alone", exc)
            return self._fallback.check_and_consume(label, megapixels)
        tokens = float(left)
        ok = bool(int(allowed))
        missing = min(megapixels, self.limit) - tokens
        return RateDecision(
            allowed=ok,
            limit=self.limit,
            remaining=tokens,
            reset_s=max(0.0, (self.limit - tokens) / self._rate_per_s),
            retry_after_s=0.0 if ok else max(0.0, missing / self._rate_per_s),
        )

    def close(self) -> None:
        self._redis.close()


def build_rate_limiter(limit_per_minute: float, redis_url: str = "") -> RateLimiter:
    """Shared through Redis when ``redis_url`` is set, else in this process's memory."""
    local = MegapixelRateLimiter(limit_per_minute)
    if not redis_url:
        return local
    client = Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    return RedisMegapixelRateLimiter(limit_per_minute, redis=client, fallback=local)
