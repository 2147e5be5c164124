"""The sync through real Celery workers on the real broker, with faults and a crash."""

import time
import uuid

import pytest

from connections.models import RECORD_MODELS, Order, ResourceSync, SyncRun
from connections.services import sync_schedule_initial
from connections.tasks import sync_resource as sync_resource_task

from .conftest import sandbox_counts

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


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
    assert {run.status for run in runs} == {"succeeded"}


def test_a_worker_killed_mid_sync_is_resumed_by_another_without_gaps_or_duplicates(
    connect, sandbox, celery_worker_factory
):
    total = 30_000
    # Short visibility timeout and lease: the message comes back and the lease lapses in
    # seconds instead of an hour and two minutes.
    # And a slow token bucket (4 pages/s): the 30 pages take several seconds, so the kill
    # lands mid-sync however fast the machine is.
    env = {
        "CELERY_QUEUE": f"sync-kill-{uuid.uuid4().hex[:8]}",
        "CELERY_VISIBILITY_TIMEOUT": "10",
        "SYNC_LEASE_SECONDS": "10",
        "TRACKSTAR_GET_RATE": "4",
        "TRACKSTAR_GET_BURST": "1",
    }
    first = celery_worker_factory(**env)
    connection = connect(orders=total)

    sync_resource_task.apply_async(
        (connection.pk, "orders", "initial", False), queue=env["CELERY_QUEUE"]
    )
    run = wait_for(
        lambda: SyncRun.objects.filter(connection=connection, pages__gte=2).first(),
        timeout=60,
        worker=first,
        what="the sync to commit its first pages",
    )
    first.kill_group()
    run.refresh_from_db()
    assert run.status == "running" and run.records < total

    second = celery_worker_factory(**env)
    wait_for(
        lambda: all_synced(connection, ["orders"]),
        timeout=120,
        worker=second,
        what="the sync to finish on the second worker",
    )

    run.refresh_from_db()
    assert run.status == "succeeded"
    assert run.attempts >= 2
    assert run.records == total
    ids = list(Order.objects.filter(connection=connection).values_list("trackstar_id", flat=True))
    assert len(ids) == total
    assert sorted(int(i.rsplit("_", 1)[1]) for i in ids) == list(range(total))
