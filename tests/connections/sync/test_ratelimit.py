import os

import pytest
import redis

from connections.ratelimit import (
    LocalTokenBucket,
    RedisTokenBucket,
    acquire,
    bucket_key,
    trackstar_get_limiter,
)

TOKEN = "trackstar_secret_access_token_for_the_limiter"


@pytest.fixture
def redis_url():
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL")
    client = redis.Redis.from_url(url)
    client.delete(bucket_key(TOKEN), bucket_key(TOKEN + "-other"))
    yield url
    client.delete(bucket_key(TOKEN), bucket_key(TOKEN + "-other"))


def test_two_workers_share_one_budget_per_access_token(redis_url):
    # Two buckets, two Redis connections: as two worker processes would be.
    worker_a = RedisTokenBucket(redis_url, rate=10, burst=10)
    worker_b = RedisTokenBucket(redis_url, rate=10, burst=10)

    granted = [(worker_a if i % 2 else worker_b).take(TOKEN) for i in range(10)]
    eleventh = worker_a.take(TOKEN)

    assert granted == [0.0] * 10
    assert 0 < eleventh <= 0.1 + 0.01
    # Another access token has its own budget.
    assert worker_b.take(TOKEN + "-other") == 0.0


def test_the_access_token_never_reaches_redis(redis_url):
    RedisTokenBucket(redis_url, rate=10, burst=10).take(TOKEN)

    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("dockside:*")]
    assert bucket_key(TOKEN) in keys
    assert not any(TOKEN in k for k in keys)


def test_local_bucket_without_redis():
    bucket = LocalTokenBucket(rate=10, burst=10)

    assert [bucket.take(TOKEN) for _ in range(10)] == [0.0] * 10
    assert bucket.take(TOKEN) > 0


def test_acquire_waits_for_the_next_token():
    bucket = LocalTokenBucket(rate=10, burst=1)
    slept = []
    bucket.take(TOKEN)

    acquire(bucket, TOKEN, sleep=lambda s: (slept.append(s), bucket._buckets.clear()))

    assert len(slept) == 1 and 0 < slept[0] <= 0.1


def test_settings_choose_the_limiter(settings):
    settings.REDIS_URL = ""
    assert isinstance(trackstar_get_limiter(), LocalTokenBucket)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert isinstance(trackstar_get_limiter(), RedisTokenBucket)
