"""Several sync worker processes at once: one GET budget per access token, parallel connections."""

import bisect

import pytest

from connections.models import RECORD_MODELS, SyncRun
from connections.sync.tasks import sync_resource as sync_resource_task

from .test_worker import all_synced, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = 12  # of 1,000 records
RATE = 3  # GET/s per access token


def busiest_second(times: list[float]) -> int:
    """The most requests in any one-second window (sliding, not only calendar seconds)."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


def test_each_access_token_stays_under_its_get_rate_while_connections_sync_in_parallel(
    connect, sandbox, celery_worker_factory
):
    # Two worker processes of two pool processes each on the sync queue: four syncs run at
    # once, each in a process of its own. The rate is scaled down from Trackstar's 10 GET/s:
    # on a 2-core machine one process reads about 5 pages a second, so at 10 two processes
    # could not go over it with or without a shared budget. Burst 1: the shipped burst
    # (= the rate) lets burst + rate through in a bucket's first second, by design.
    env = {"TRACKSTAR_GET_RATE": str(RATE), "TRACKSTAR_GET_BURST": "1"}
    workers = [celery_worker_factory(queues=["sync"], concurrency=2, **env) for _ in range(2)]
    sandbox.configure(get_rate=RATE + 1)
    # `shared`'s orders and inventory are read by two processes at once with one access
    # token; the other two connections have a token each.
    shared = connect(orders=PAGES * 1000, inventory=PAGES * 1000)
    others = [connect(orders=PAGES * 1000) for _ in range(2)]
    syncs = [(shared, "orders"), (shared, "inventory")] + [(c, "orders") for c in others]

    for connection, resource in syncs:
        sync_resource_task.apply_async(
            (connection.pk, resource, "initial", False), queue=celery_worker_factory.queue("sync")
        )
    wait_for(
        lambda: all(all_synced(c, [r]) for c, r in syncs),
        timeout=40,
        worker=workers[0],
        what="the four syncs to finish",
    )

    runs = {(run.connection_id, run.resource): run for run in SyncRun.objects.all()}
    assert len(runs) == len(syncs)
    for connection, resource in syncs:
        run = runs[(connection.pk, resource)]
        count = RECORD_MODELS[resource].objects.filter(connection=connection).count()
        assert (run.status, run.records, run.pages, count) == (
            "succeeded",
            PAGES * 1000,
            PAGES,
            PAGES * 1000,
        )

    # What Trackstar saw, per access token: at most the rate in any second (one more for the
    # network's jitter: the bucket spaces GETs exactly 1/rate apart, their arrival not quite),
    # so never a 429 from a Trackstar limiting at that, although two processes read `shared`
    # at once. With a bucket per process `shared` got 7 in a second.
    for connection in [shared, *others]:
        gets = [
            r for r in sandbox.requests(connection.trackstar_connection_id) if r["method"] == "GET"
        ]
        assert len(gets) >= PAGES * (2 if connection is shared else 1)
        assert [r for r in gets if r["status"] == 429] == []
        assert busiest_second([r["at"] for r in gets]) <= RATE + 1

    # The connections synced in parallel, not one after another: every run was still going
    # when the last one started.
    assert max(run.started_at for run in runs.values()) < min(
        run.finished_at for run in runs.values()
    )
