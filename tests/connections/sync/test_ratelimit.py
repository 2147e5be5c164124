import os

import pytest
import redis

from connections.sync.trackstar_budget import (
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


DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_down(settings):
    from connections import degrade
    from connections.sync.trackstar_budget import _limiter

    _limiter.cache_clear()
    degrade.reset()
    settings.REDIS_URL = DEAD_REDIS
    yield
    _limiter.cache_clear()
    degrade.reset()


def test_without_redis_a_bucket_limits_this_process_on_its_own(redis_down):
    bucket = RedisTokenBucket(DEAD_REDIS, rate=10, burst=10)

    assert [bucket.take(TOKEN) for _ in range(10)] == [0.0] * 10
    assert 0 < bucket.take(TOKEN) <= 0.1 + 0.01


def test_a_sync_runs_on_while_redis_is_down(connect, no_enqueue, redis_down):
    """The shared GET budget could not be taken: the sync used to fail on Redis' error.
    Now each worker keeps to the rate on its own, and Trackstar's 429 (waited out with its
    retry-after) is the backstop should several workers together go over it."""
    from connections.models import Order
    from connections.sync.run import sync_resource, sync_schedule_initial

    connection = connect(orders=30)
    sync_schedule_initial(connection=connection)

    outcome = sync_resource(connection_id=connection.pk, resource="orders", kind="initial")

    assert outcome.status == "succeeded"
    assert Order.objects.filter(connection=connection).count() == 30


def test_the_shipped_bucket_never_lets_a_second_hold_more_than_the_rate(settings):
    """Trackstar counts GETs per second per token. A fresh bucket holding `burst` tokens
    sends burst + rate in its first second: with the old default (burst = rate = 10), 19."""
    from connections.sync.trackstar_budget import LocalTokenBucket

    now = [0.0]
    bucket = LocalTokenBucket(
        rate=settings.TRACKSTAR_GET_RATE,
        burst=settings.TRACKSTAR_GET_BURST,
        clock=lambda: now[0],
    )
    sent = []
    while now[0] < 0.999 and len(sent) < 100:  # the first second (10 x 0.1 is not quite 1.0)
        wait = bucket.take("tok")
        if wait:
            now[0] += wait + 1e-9  # floats: a wait of 1e-17 would not move the clock
        else:
            sent.append(now[0])

    assert len(sent) <= settings.TRACKSTAR_GET_RATE
