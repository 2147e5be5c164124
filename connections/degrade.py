"""Running on when Redis fails, and saying so without a log line per request.

Redis holds limits, not data: the token buckets (token_buckets.py) and the counts in Django's
cache (logins, /connect/ guesses, the integrations list). When it is down, a request must
still be served: each caller says what to do instead (a per-process bucket, no count). A
breaker then keeps this process off Redis for REDIS_RETRY_SECONDS, so an outage costs one
timeout now and then rather than one per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from redis import RedisError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What Redis raises when it is down, hung or refusing writes (redis-py wraps most socket
# errors in its own ConnectionError/TimeoutError, not all).
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)
REDIS_RETRY_SECONDS = 10.0
WARN_EVERY_SECONDS = 60.0

_lock = threading.Lock()
_down_until: dict[str, float] = {}  # a Redis (its URL, or the cache's) → monotonic time
_warned_at: dict[str, float] = {}


def warn_rarely(log: logging.Logger, key: str, message: str, *args: object) -> None:
    """log.warning, at most once per WARN_EVERY_SECONDS per key in this process."""
    now = time.monotonic()
    with _lock:
        last = _warned_at.get(key)
        if last is not None and now - last < WARN_EVERY_SECONDS:
            return
        _warned_at[key] = now
    log.warning(message, *args)


def redis_is_down(name: str) -> bool:
    """Whether `name` failed less than REDIS_RETRY_SECONDS ago: leave it alone until then."""
    return time.monotonic() < _down_until.get(name, 0.0)


def redis_failed(name: str, what: str, error: Exception) -> None:
    with _lock:
        _down_until[name] = time.monotonic() + REDIS_RETRY_SECONDS
    # The name may be a URL with a password in it: the error names host and port only.
    warn_rarely(
        logger,
        name,
        "Redis unavailable for %s (%s: %s); carrying on without it, retrying every %ds",
        what,
        type(error).__name__,
        error,
        REDIS_RETRY_SECONDS,
    )


def reset() -> None:
    """Forget failures and warnings (tests)."""
    with _lock:
        _down_until.clear()
        _warned_at.clear()


def _cache_name() -> str:
    # Keyed by where the cache is, so a test pointing it elsewhere has its own breaker.
    return f"cache:{settings.CACHES['default'].get('LOCATION', '')}"


def cache_or(default: T, call: Callable[[], T]) -> T:
    """call() against Django's cache, or `default` while the cache's Redis is down. For
    counts that only limit attackers: not counting for a while is better than a 500."""
    name = _cache_name()
    if redis_is_down(name):
        return default
    try:
        return call()
    except REDIS_ERRORS as e:
        redis_failed(name, "Django's cache (login and /connect/ limits)", e)
        return default
