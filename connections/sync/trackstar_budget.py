"""The outbound budget: each Trackstar access token stays under its GET rate (API.md §7).

Trackstar limits per access token, whichever process sends the request, so the bucket is
a Redis one (connections/token_buckets.py), keyed by a hash of the access token. Without
Redis (the demo) a per-process bucket does the same job for the one worker there is; with
Redis down, each process keeps to the rate on its own and Trackstar's 429 (honoured with
retry-after) is the backstop.
"""

from __future__ import annotations

from django.conf import settings

from connections.token_buckets import WORKER_TIMEOUT, RateLimiter, cached_bucket

KEY_PREFIX = "dockside:trackstar-get:"


def trackstar_get_limiter() -> RateLimiter:
    # Keyed by the settings, so a test or the bench that changes the rate gets its bucket.
    return cached_bucket(
        settings.REDIS_URL,
        settings.TRACKSTAR_GET_RATE,
        settings.TRACKSTAR_GET_BURST,
        KEY_PREFIX,
        WORKER_TIMEOUT,
    )
