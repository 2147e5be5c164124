import os

import pytest
import redis

from connections.sync.trackstar_budget import KEY_PREFIX, trackstar_get_limiter
from connections.token_buckets import LocalTokenBucket, RedisTokenBucket, acquire, bucket_key

TOKEN = "trackstar_secret_access_token_for_the_limiter"


@pytest.fixture
def redis_url():
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL")
    client = redis.Redis.from_url(url)
    client.delete(bucket_key(TOKEN, KEY_PREFIX), bucket_key(TOKEN + "-other", KEY_PREFIX))
    yield url
    client.delete(bucket_key(TOKEN, KEY_PREFIX), bucket_key(TOKEN + "-other", KEY_PREFIX))


def test_two_workers_share_one_budget_per_access_token(redis_url):
    # Two buckets, two Redis connections: as two worker processes would be. One token a
    # second on Redis' clock: the eleventh take finds the burst spent unless the first ten
    # took a whole second.
    worker_a = RedisTokenBucket(redis_url, rate=1, burst=10, prefix=KEY_PREFIX)
    worker_b = RedisTokenBucket(redis_url, rate=1, burst=10, prefix=KEY_PREFIX)

    granted = [(worker_a if i % 2 else worker_b).take(TOKEN) for i in range(10)]
    eleventh = worker_a.take(TOKEN)

    assert granted == [0.0] * 10
    assert 0 < eleventh <= 1.0
    # Another access token has its own budget.
    assert worker_b.take(TOKEN + "-other") == 0.0


def test_the_access_token_never_reaches_redis(redis_url):
    RedisTokenBucket(redis_url, rate=10, burst=10, prefix=KEY_PREFIX).take(TOKEN)

    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("dockside:*")]
    assert bucket_key(TOKEN, KEY_PREFIX) in keys
    assert not any(TOKEN in k for k in keys)


def test_local_bucket_without_redis():
    now = [0.0]
    bucket = LocalTokenBucket(rate=10, burst=10, prefix=KEY_PREFIX, clock=lambda: now[0])

    assert [bucket.take(TOKEN) for _ in range(10)] == [0.0] * 10
    assert bucket.take(TOKEN) == pytest.approx(0.1)
    now[0] += 0.1
    assert bucket.take(TOKEN) == 0.0


def test_acquire_waits_for_the_next_token():
    now = [0.0]
    bucket = LocalTokenBucket(rate=10, burst=1, prefix=KEY_PREFIX, clock=lambda: now[0])
    slept = []
    bucket.take(TOKEN)

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    waited = acquire(bucket, TOKEN, sleep=sleep)

    assert slept == [pytest.approx(0.1)] and waited == slept[0]


def test_settings_choose_the_limiter(settings):
    settings.REDIS_URL = ""
    assert isinstance(trackstar_get_limiter(), LocalTokenBucket)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert isinstance(trackstar_get_limiter(), RedisTokenBucket)


DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_down(settings):
    from connections import degrade
    from connections.token_buckets import cached_bucket

    cached_bucket.cache_clear()
    degrade.reset()
    settings.REDIS_URL = DEAD_REDIS
    yield
    cached_bucket.cache_clear()
    degrade.reset()


def test_without_redis_a_bucket_limits_this_process_on_its_own(redis_down):
    # One token a second on this process' clock, as in the shared-budget test above.
    bucket = RedisTokenBucket(DEAD_REDIS, rate=1, burst=10, prefix=KEY_PREFIX)

    assert [bucket.take(TOKEN) for _ in range(10)] == [0.0] * 10
    assert 0 < bucket.take(TOKEN) <= 1.0


def test_a_sync_runs_on_while_redis_is_down(connect, no_enqueue, redis_down):
    """The shared GET budget could not be taken: the sync used to fail on Redis' error.
    Now each worker keeps to the rate on its own, and Trackstar's 429 (waited out with its
    retry-after) is the backstop should several workers together go over it."""
    from connections.models import Order
    from connections.sync.run import SyncStatus, sync_resource
    from connections.sync.schedule import sync_schedule_initial

    connection = connect(orders=30)
    sync_schedule_initial(connection=connection)

    outcome = sync_resource(connection_id=connection.pk, resource="orders", kind="initial")

    assert outcome.status == SyncStatus.SUCCEEDED
    assert Order.objects.filter(connection=connection).count() == 30


def test_the_shipped_bucket_never_lets_a_second_hold_more_than_the_rate(settings):
    """Trackstar counts GETs per second per token. A fresh bucket holding `burst` tokens
    sends burst + rate in its first second: with the old default (burst = rate = 10), 19."""
    now = [0.0]
    bucket = LocalTokenBucket(
        rate=settings.TRACKSTAR_GET_RATE,
        burst=settings.TRACKSTAR_GET_BURST,
        prefix=KEY_PREFIX,
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
