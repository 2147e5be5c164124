"""The sync through real Celery workers on the real broker, with faults and a crash."""

import time

import pytest

from connections.models import RECORD_MODELS, Order, ResourceSync, SyncRun
from connections.sync.schedule import sync_schedule_initial
from connections.sync.tasks import sync_resource as sync_resource_task
from tests.db_faults import terminate_every_other_connection

from .conftest import sandbox_counts

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, *, timeout: float, worker, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    runs = list(SyncRun.objects.values("resource", "status", "pages", "records", "error"))
    pytest.fail(f"Timed out waiting for {what}; runs: {runs}\n{worker.log()}")


def all_synced(connection, resources=None):
    states = ResourceSync.objects.filter(connection=connection, enabled=True)
    if resources is not None:
        states = states.filter(resource__in=resources)
    states = list(states)
    return states and all(s.last_success_at and s.current_run_id is None for s in states)


def test_sync_completes_exactly_through_20_percent_faults(connect, sandbox, celery_worker_process):
    connection = connect(orders=3000, inventory=2000)
    sandbox.set_faults(rate=0.2, statuses=[429, 500, 503], paths="/wms/")
    try:
        sync_schedule_initial(connection=connection)
        wait_for(
            lambda: all_synced(connection),
            timeout=180,
            worker=celery_worker_process,
            what="every resource to sync",
        )
    finally:
        sandbox.clear_faults()

    expected = sandbox_counts(sandbox, connection)
    assert {
        r: RECORD_MODELS[r].objects.filter(connection=connection).count() for r in RECORD_MODELS
    } == expected
    runs = SyncRun.objects.filter(connection=connection)
    assert {run.resource: run.records for run in runs} == expected
    assert {run.status for run in runs} == {SyncRun.Status.SUCCEEDED}


def test_a_worker_killed_mid_sync_is_resumed_by_another_within_45_s_without_gaps_or_duplicates(
    connect, sandbox, celery_worker_factory
):
    total = 30_000
    # The lease, the broker's visibility timeout and the resume interval as shipped: a
    # whole worker dies (its message stays unacknowledged in Redis for an hour), and the
    # other worker's beat finds the lapsed lease. Only the token bucket is slowed (4 pages
    # a second), so the kill lands mid-sync however fast the machine is.
    env = {"TRACKSTAR_GET_RATE": "4", "TRACKSTAR_GET_BURST": "1"}
    # The first worker takes only this run, from a queue of its own. The other (beat, and
    # every queue) is up before the kill, as in a deployment: the 45 s are the recovery
    # alone, not a worker's start. The live lease keeps it off the run until then.
    first = celery_worker_factory(queues=["first-only"], **env)
    second = celery_worker_factory(beat=True, **env)
    connection = connect(orders=total)

    sync_resource_task.apply_async(
        (connection.pk, "orders", "initial", False),
        queue=celery_worker_factory.queue("first-only"),
    )
    run = wait_for(
        lambda: SyncRun.objects.filter(connection=connection, pages__gte=2).first(),
        timeout=60,
        worker=first,
        what="the sync to commit its first pages",
    )
    first.kill_group()
    killed_at = time.monotonic()
    run.refresh_from_db()
    assert run.status == SyncRun.Status.RUNNING and run.records < total
    assert run.attempts == 1  # only the first worker has run it
    pages_at_kill = run.pages

    # Lease (30 s) + resume interval (10 s) + a few seconds, from the crash (README: within
    # about 40 s); the 120 s lease and the minute's dispatcher took 2 to 3 minutes.
    wait_for(
        lambda: SyncRun.objects.filter(pk=run.pk, pages__gt=pages_at_kill).exists(),
        timeout=45 - (time.monotonic() - killed_at),
        worker=second,
        what="another worker to resume the run from its cursor",
    )
    wait_for(
        lambda: all_synced(connection, ["orders"]),
        timeout=30,
        worker=second,
        what="the sync to finish on the second worker",
    )

    run.refresh_from_db()
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.attempts >= 2
    assert (run.records, run.pages) == (total, 30)  # resumed, not read again from the start
    assert SyncRun.objects.filter(connection=connection, resource="orders").count() == 1
    ids = list(Order.objects.filter(connection=connection).values_list("trackstar_id", flat=True))
    assert len(ids) == total
    assert sorted(int(i.rsplit("_", 1)[1]) for i in ids) == list(range(total))


def test_database_connections_terminated_mid_sync_resume_the_run_in_seconds(
    connect, sandbox, celery_worker_factory
):
    total = 30_000
    env = {"TRACKSTAR_GET_RATE": "4", "TRACKSTAR_GET_BURST": "1"}  # 30 pages in ~8 s
    worker = celery_worker_factory(**env)
    connection = connect(orders=total)

    sync_resource_task.apply_async(
        (connection.pk, "orders", "initial", False), queue=celery_worker_factory.queue("sync")
    )
    run = wait_for(
        lambda: SyncRun.objects.filter(connection=connection, pages__gte=2).first(),
        timeout=60,
        worker=worker,
        what="the sync to commit its first pages",
    )
    # Every session but this test's: the worker's (the server stays up, as in a failover).
    assert terminate_every_other_connection() >= 1
    terminated_at = time.monotonic()
    run.refresh_from_db()
    pages_at_loss = run.pages

    # The old way: "Internal error: OperationalError", the cursor thrown away, and a new
    # run from zero at the next scheduled sync, 16 minutes later. Now the task retries in
    # a second or two, and the run reads on from its cursor: well before its 30 s lease
    # could lapse (and this worker has no beat to resume a lapsed one).
    wait_for(
        lambda: SyncRun.objects.filter(
            pk=run.pk, attempts__gte=2, pages__gt=pages_at_loss
        ).exists(),
        timeout=20 - (time.monotonic() - terminated_at),
        worker=worker,
        what="the run to resume on a fresh connection",
    )
    wait_for(
        lambda: all_synced(connection, ["orders"]),
        timeout=60 - (time.monotonic() - terminated_at),
        worker=worker,
        what="the resumed sync to finish",
    )
    run.refresh_from_db()
    assert (run.status, run.error) == (SyncRun.Status.SUCCEEDED, "")
    assert run.attempts >= 2  # the connection loss did hit it, and it was retried
    # One run, resumed at its cursor: no page read twice, none skipped.
    assert (run.records, run.pages) == (total, 30)
    assert SyncRun.objects.filter(connection=connection, resource="orders").count() == 1
    ids = list(Order.objects.filter(connection=connection).values_list("trackstar_id", flat=True))
    assert sorted(int(i.rsplit("_", 1)[1]) for i in ids) == list(range(total))
