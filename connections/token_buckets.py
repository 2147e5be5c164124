"""Token buckets, one per key, shared by every process through Redis: one Lua script takes
a token atomically on Redis' own clock. Keys are hashes: a token or an address never reaches
Redis. Without Redis (the demo) a per-process bucket does the same job.

Used for the outbound Trackstar budget (sync/trackstar_budget.py) and for Dockside's own
inbound limits (link/guess_limits.py, portal/logins/slowdown.py). When Redis is down or hung
a Redis bucket answers from a per-process bucket of the same rate instead (degrade.py): the
limits still hold in each process, and a request does not fail because a limit could not be
counted.
"""

from __future__ import annotations

import hashlib
import threading
import time
from functools import lru_cache
from typing import Protocol

from django.conf import settings

from connections.degrade import REDIS_ERRORS, redis_failed, redis_is_down

# Seconds a bucket waits for Redis (to connect, then to answer) before it answers from
# this process: short for the Link endpoints, which a person is waiting on; longer for the
# sync's GETs, which run in a worker anyway.
INTERACTIVE_TIMEOUT = 0.5
WORKER_TIMEOUT = 2.0

# KEYS[1] bucket; ARGV rate (tokens/s), burst (capacity), now is Redis' own clock so every
# worker agrees on it. Returns 0 when a token was taken, else the milliseconds to wait.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


def bucket_key(access_token: str, prefix: str) -> str:
    return prefix + hashlib.sha256(access_token.encode()).hexdigest()[:32]


class RateLimiter(Protocol):
    def take(self, access_token: str) -> float:
        """Take one token now if there is one: 0.0, else the seconds until one is due."""
        ...


class RedisTokenBucket:
    def __init__(
        self,
        redis_url: str,
        *,
        rate: float,
        burst: int,
        prefix: str,
        timeout: float = WORKER_TIMEOUT,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self._url = redis_url
        # No retries inside redis-py: one timeout, then the local bucket and the breaker.
        self._redis = redis.Redis.from_url(
            redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._redis.register_script(_TAKE)
        self._local = LocalTokenBucket(rate=rate, burst=burst, prefix=prefix)

    def take(self, access_token: str) -> float:
        # Without Redis each process limits on its own: N processes may together let
        # N times the rate through. For the Link endpoints that is still a limit; for
        # Trackstar's GETs its 429 (honoured with retry-after by the sync) is the backstop.
        if redis_is_down(self._url):
            return self._local.take(access_token)
        try:
            wait_ms = self._script(
                keys=[bucket_key(access_token, self.prefix)], args=[self.rate, self.burst]
            )
        except REDIS_ERRORS as e:
            redis_failed(self._url, "rate limits", e)
            return self._local.take(access_token)
        return int(wait_ms) / 1000


class LocalTokenBucket:
    """The same bucket in this process only: right when one worker process is all there is."""

    def __init__(self, *, rate: float, burst: int, prefix: str, clock=time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, access_token: str) -> float:
        key = bucket_key(access_token, self.prefix)
        with self._lock:
            now = self._clock()
            tokens, ts = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - ts) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def acquire(limiter: RateLimiter, access_token: str, *, sleep=time.sleep) -> float:
    """Block until a token is taken; returns the seconds spent waiting."""
    waited = 0.0
    while True:
        wait = limiter.take(access_token)
        if wait <= 0:
            return waited
        sleep(wait)
        waited += wait


@lru_cache(maxsize=16)
def cached_bucket(
    redis_url: str,
    rate: float,
    burst: int,
    prefix: str,
    timeout: float = WORKER_TIMEOUT,
) -> RateLimiter:
    if redis_url:
        return RedisTokenBucket(redis_url, rate=rate, burst=burst, prefix=prefix, timeout=timeout)
    return LocalTokenBucket(rate=rate, burst=burst, prefix=prefix)


def token_bucket(*, rate: float, burst: int, prefix: str) -> RateLimiter:
    """A bucket per key under `prefix`, shared by every process through Redis (the same
    script), for Dockside's own limits (a person waits on them: a short Redis timeout)."""
    return cached_bucket(settings.REDIS_URL, rate, burst, prefix, INTERACTIVE_TIMEOUT)
