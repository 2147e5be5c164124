"""The sync service against the real sandbox over HTTP, on the real database."""

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db import connections as db_connections
from django.utils import timezone

from connections.health import services as health_service
from connections.models import (
    RECORD_MODELS,
    Connection,
    Order,
    ResourceSync,
    SyncRun,
    TrackstarAccount,
)
from connections.models.records import parse_datetime
from connections.sync import run as sync_service
from connections.sync import schedule as schedule_service
from connections.sync.run import Busy, SyncStatus, sync_resource
from connections.sync.schedule import sync_schedule_initial
from connections.trackstar import TrackstarUnavailable
from tests.db_faults import terminate_this_connection

from .conftest import sandbox_counts, sandbox_records


@pytest.fixture(autouse=True)
def no_enqueue(no_enqueue):
    return no_enqueue


def local_count(connection, resource):
    return RECORD_MODELS[resource].objects.filter(connection=connection).count()


def sync_status(connection, resource="orders") -> SyncStatus:
    """How one run of the engine for this resource ended."""
    return sync_resource(connection_id=connection.pk, resource=resource).status


def test_initial_sync_copies_exactly_what_the_sandbox_holds(
    connect, sandbox, no_enqueue, django_capture_on_commit_callbacks
):
    connection = connect(orders=2500, inventory=1200)

    with django_capture_on_commit_callbacks(execute=True):
        scheduled = sync_schedule_initial(connection=connection)
    outcomes = {
        r: sync_resource(connection_id=connection.pk, resource=r, kind="initial") for r in scheduled
    }

    assert sorted(scheduled) == sorted(RECORD_MODELS)
    # The syncs are requested (sent once the request commits), and a health check, which
    # reads Trackstar's historical_sync_completed map.
    assert sorted(no_enqueue, key=str) == sorted(
        [*((r, "initial") for r in RECORD_MODELS), ("health", connection.pk)], key=str
    )
    expected = sandbox_counts(sandbox, connection)
    assert {r: local_count(connection, r) for r in RECORD_MODELS} == expected
    for resource, outcome in outcomes.items():
        assert outcome.status == SyncStatus.SUCCEEDED
        assert outcome.run.records == expected[resource]
        assert outcome.run.kind == "initial"
        assert outcome.run.since is None
    assert outcomes["orders"].run.pages == 3
    remote = sandbox_records(sandbox, connection, "orders")
    local = {o.trackstar_id: o for o in Order.objects.filter(connection=connection)}
    assert local.keys() == remote.keys()
    sample = remote["ord_" + next(iter(local)).split("_", 1)[1]]
    assert local[sample["id"]].data == sample
    assert local[sample["id"]].status == sample["status"]
    state = ResourceSync.objects.get(connection=connection, resource="orders")
    assert state.high_water_mark is not None
    assert state.current_run is None and state.lease_token is None
    assert state.next_sync_at > timezone.now() + timedelta(seconds=state.interval_seconds / 2 - 5)


def test_incremental_sync_fetches_only_what_changed(connect, sandbox):
    connection = connect(orders=1500)
    first = sync_resource(connection_id=connection.pk, resource="orders", kind="initial")
    mutated = sandbox.mutate(connection.trackstar_connection_id, "orders", count=7)["updated_ids"]
    # Not due yet: a scheduled duplicate right after a run does nothing.
    assert sync_status(connection) == SyncStatus.SKIPPED
    ResourceSync.objects.filter(connection=connection).update(last_success_at=None)

    second = sync_resource(connection_id=connection.pk, resource="orders", kind="incremental")

    assert second.status == SyncStatus.SUCCEEDED
    assert second.run.kind == "incremental"
    assert second.run.since == first.run.high_water_mark - timedelta(minutes=2)
    remote = sandbox_records(sandbox, connection, "orders")
    # What changed at Trackstar, plus what sits in the overlap just below the old mark (the
    # newest record of the first run at least): nothing else.
    expected = {
        i
        for i, r in remote.items()
        if parse_datetime(r["trackstar_updated_date"]) >= second.run.since
    }
    assert set(mutated) <= expected
    assert len(expected) <= 7 + 2
    assert second.run.records == len(expected)
    fetched = Order.objects.filter(connection=connection, synced_at__gte=second.run.started_at)
    assert set(fetched.values_list("trackstar_id", flat=True)) == expected
    for order_id in mutated:
        row = Order.objects.get(connection=connection, trackstar_id=order_id)
        assert row.data == remote[order_id]
        assert row.updated_date > first.run.high_water_mark
    assert local_count(connection, "orders") == 1500
    state = ResourceSync.objects.get(connection=connection, resource="orders")
    # The mark is Trackstar's clock (trackstar_updated_date), not the WMS's.
    assert state.high_water_mark == max(
        parse_datetime(data["trackstar_updated_date"])
        for data in Order.objects.filter(connection=connection).values_list("data", flat=True)
    )


def test_late_ingested_records_are_read_by_the_next_incremental_run(connect, sandbox):
    """Trackstar first sees records that are old in the WMS (late ingestion, a reinstall, a
    backfill): their updated_date is older than our mark, their trackstar_updated_date new.
    A filter on updated_date (the first build's) would never read them."""
    connection = connect(orders=300)
    first = sync_resource(connection_id=connection.pk, resource="orders", kind="initial")
    late = sandbox.ingest_late(connection.trackstar_connection_id, "orders", count=5)
    ResourceSync.objects.filter(connection=connection).update(last_success_at=None)

    second = sync_resource(connection_id=connection.pk, resource="orders", kind="incremental")

    assert second.status == SyncStatus.SUCCEEDED and second.run.since is not None
    synced = set(Order.objects.filter(trackstar_id__in=late).values_list("trackstar_id", flat=True))
    assert synced == set(late)
    assert local_count(connection, "orders") == 305
    # Proof that these really are late: by the WMS's clock they are older than the mark,
    # so the updated_date filter misses every one of them.
    by_wms_clock = sandbox.wms(
        connection.access_token,
        "/wms/orders",
        params={"updated_date[gte]": second.run.since.isoformat().replace("+00:00", "Z")},
    ).json()["data"]
    assert not set(late) & {r["id"] for r in by_wms_clock}
    assert all(
        parse_datetime(o.data["updated_date"]) < first.run.high_water_mark
        for o in Order.objects.filter(trackstar_id__in=late)
    )


def test_a_run_resumes_from_its_last_committed_page(connect, sandbox, monkeypatch):
    connection = connect(orders=2500)
    monkeypatch.setattr(sync_service, "PAGE_RETRIES", 0)

    first = sync_resource(connection_id=connection.pk, resource="orders", page_budget=1)
    sandbox.set_faults(rate=1.0, statuses=[503], paths="/wms/")
    with pytest.raises(TrackstarUnavailable):
        sync_resource(connection_id=connection.pk, resource="orders")
    sandbox.clear_faults()
    last = sync_resource(connection_id=connection.pk, resource="orders")

    assert first.status == SyncStatus.CONTINUE
    assert last.status == SyncStatus.SUCCEEDED
    assert last.run.pk == first.run.pk
    # Three pages in three attempts, none fetched twice.
    assert (last.run.pages, last.run.records, last.run.attempts) == (3, 2500, 3)
    assert local_count(connection, "orders") == 2500


def test_a_run_out_of_time_sends_its_rest_once_it_commits(
    connect, sandbox, no_enqueue, django_capture_on_commit_callbacks
):
    connection = connect(orders=1500)

    with django_capture_on_commit_callbacks(execute=True):
        first = sync_resource(connection_id=connection.pk, resource="orders", page_budget=1)

    assert first.status == SyncStatus.CONTINUE
    # The message that brought it, again: the next task resumes this run from its cursor.
    assert no_enqueue == [("orders", "incremental")]
    last = sync_resource(connection_id=connection.pk, resource="orders", requested=True)
    assert last.status == SyncStatus.SUCCEEDED and last.run.pk == first.run.pk


def test_a_held_lease_keeps_a_second_sync_out(connect, sandbox):
    connection = connect()
    ResourceSync.objects.filter(connection=connection, resource="orders").update(
        lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )

    with pytest.raises(Busy) as held:
        sync_resource(connection_id=connection.pk, resource="orders", kind="manual")

    assert 55 < held.value.retry_in <= 60
    assert not SyncRun.objects.exists()
    assert local_count(connection, "orders") == 0


def test_an_expired_lease_is_taken_over(connect, sandbox):
    connection = connect()
    ResourceSync.objects.filter(connection=connection, resource="orders").update(
        lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    assert sync_status(connection) == SyncStatus.SUCCEEDED


def test_a_worker_fenced_out_mid_run_commits_nothing_more(connect, sandbox, monkeypatch):
    connection = connect(orders=2500)
    commit = sync_service._commit_page
    calls = []

    def lose_lease_before_page_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            # Another worker takes the lease while this one holds page 2 in memory.
            ResourceSync.objects.filter(connection=connection, resource="orders").update(
                lease_token=uuid.uuid4()
            )
        return commit(*args, **kwargs)

    monkeypatch.setattr(sync_service, "_commit_page", lose_lease_before_page_2)
    outcome = sync_resource(connection_id=connection.pk, resource="orders")

    assert outcome.status == SyncStatus.LEASE_LOST
    run = SyncRun.objects.get()
    assert (run.pages, run.records, run.status) == (1, 1000, SyncRun.Status.RUNNING)
    assert local_count(connection, "orders") == 1000
    assert (
        ResourceSync.objects.get(connection=connection, resource="orders").high_water_mark is None
    )


def test_a_rejected_token_needs_reconnect_once_the_key_is_known_good(
    connect, sandbox, mailoutbox, django_capture_on_commit_callbacks
):
    """401 with the token, 200 for the key alone on GET /connections/{id}: only this
    connection's token is wrong, so its customer must reconnect (one email)."""
    connection = connect()
    Connection.objects.filter(pk=connection.pk).update(access_token="trackstar_not_this_one")

    with django_capture_on_commit_callbacks(execute=True):
        outcome = sync_resource(connection_id=connection.pk, resource="orders")

    connection.refresh_from_db()
    assert outcome.status == SyncStatus.TOKEN_REJECTED
    assert outcome.run.status == SyncRun.Status.FAILED
    assert connection.status == Connection.Status.NEEDS_RECONNECT
    assert connection.reconnect_cause == Connection.ReconnectCause.TOKEN_REJECTED
    assert "Reconnect" in connection.last_error
    assert [m.to for m in mailoutbox] == [[connection.customer.contact_email]]
    assert sync_status(connection, "products") == SyncStatus.SKIPPED
    assert schedule_service.sync_dispatch_due(now=timezone.now() + timedelta(days=1)) == 0


def test_a_rejected_api_key_pauses_syncs_and_alerts_staff_not_customers(
    connect, sandbox, mailoutbox, django_capture_on_commit_callbacks
):
    connection = connect()
    sandbox.configure(api_key="rotated-by-mistake")  # Trackstar no longer knows our key

    with django_capture_on_commit_callbacks(execute=True):
        outcome = sync_resource(connection_id=connection.pk, resource="orders")

    connection.refresh_from_db()
    assert outcome.status == SyncStatus.PAUSED
    assert connection.status == Connection.Status.ACTIVE  # the customer's WMS is fine
    assert TrackstarAccount.objects.get().key_rejected_at is not None
    assert [m.to for m in mailoutbox] == [["support@dockside.local"]]  # ADMINS only
    assert "API key" in mailoutbox[0].subject
    # Nothing else runs while the key is refused; the run keeps its cursor.
    ResourceSync.objects.update(next_sync_at=timezone.now())
    assert schedule_service.sync_dispatch_due() == 0
    assert outcome.run.status == SyncRun.Status.RUNNING

    # The key works again: the poll notices, and syncs resume where they were.
    sandbox.configure(api_key=sandbox.api_key)
    health_service.health_poll()
    assert TrackstarAccount.objects.get().key_rejected_at is None
    assert schedule_service.sync_dispatch_due() > 0
    assert sync_resource(connection_id=connection.pk, resource="orders").run.pk == outcome.run.pk
    assert len(mailoutbox) == 1


def test_a_connection_deleted_at_trackstar_is_marked_disconnected(connect, sandbox, mailoutbox):
    connection = connect()
    response = sandbox.session.delete(
        sandbox.url("/connections"), headers=sandbox.token_headers(connection.access_token)
    )
    assert response.ok

    outcome = sync_resource(connection_id=connection.pk, resource="orders")

    connection.refresh_from_db()
    assert outcome.status == SyncStatus.DELETED and "deleted" in outcome.run.error
    assert connection.status == Connection.Status.DISCONNECTED
    assert not mailoutbox


def test_501_marks_the_resource_unsupported_not_failed(connect, sandbox):
    # Infoplus has no returns endpoint; an imported token has no available_actions to tell.
    connection = connect("infoplus")
    Connection.objects.filter(pk=connection.pk).update(available_actions=[])
    ResourceSync.objects.create(connection=connection, resource="returns", history_ready=True)

    outcome = sync_resource(connection_id=connection.pk, resource="returns", kind="initial")

    assert outcome.status == SyncStatus.UNSUPPORTED
    assert outcome.run.status == SyncRun.Status.UNSUPPORTED
    assert "does not offer returns" in outcome.run.error
    state = ResourceSync.objects.get(connection=connection, resource="returns")
    assert state.unsupported
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    assert sync_status(connection, "returns") == SyncStatus.SKIPPED


def test_initial_sync_skips_resources_the_integration_does_not_offer(connect, no_enqueue):
    connection = connect("infoplus")

    scheduled = sync_schedule_initial(connection=connection)

    assert "returns" not in scheduled
    assert "orders" in scheduled


def test_giving_up_ends_the_run_as_failed_and_reschedules(connect, sandbox, monkeypatch):
    connection = connect()
    monkeypatch.setattr(sync_service, "PAGE_RETRIES", 0)
    sandbox.set_faults(rate=1.0, statuses=[500], paths="/wms/")
    with pytest.raises(TrackstarUnavailable):
        sync_resource(connection_id=connection.pk, resource="orders")
    sandbox.clear_faults()

    run = sync_service.sync_fail(
        connection_id=connection.pk, resource="orders", reason="Trackstar stayed unreachable."
    )

    assert run.status == SyncRun.Status.FAILED and run.error == "Trackstar stayed unreachable."
    state = ResourceSync.objects.get(connection=connection, resource="orders")
    assert state.current_run is None and state.lease_token is None
    assert state.next_sync_at > timezone.now()
    # The next run starts afresh and completes.
    ResourceSync.objects.filter(pk=state.pk).update(next_sync_at=timezone.now())
    assert sync_status(connection) == SyncStatus.SUCCEEDED


def test_a_page_costs_a_constant_handful_of_queries(
    connect, sandbox, django_assert_max_num_queries
):
    connection = connect(orders=5000)

    # 5 pages of 1000: a few queries to start and finish, about five per page
    # (savepoint, lease, one upsert, progress, release), never one per record.
    with django_assert_max_num_queries(45):
        outcome = sync_resource(connection_id=connection.pk, resource="orders")

    assert outcome.run.records == 5000


@pytest.mark.django_db(transaction=True)
def test_a_lost_database_connection_keeps_the_run_and_its_cursor(connect, sandbox, monkeypatch):
    connection = connect(orders=2500)
    commit = sync_service._commit_page
    calls = []

    def lose_the_connection_before_page_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            terminate_this_connection()  # a failover between two pages
        return commit(*args, **kwargs)

    monkeypatch.setattr(sync_service, "_commit_page", lose_the_connection_before_page_2)
    with pytest.raises(OperationalError):  # for the task, which retries it in seconds
        sync_resource(connection_id=connection.pk, resource="orders")

    run = SyncRun.objects.get()
    assert (run.status, run.pages, run.records) == (SyncRun.Status.RUNNING, 1, 1000)
    assert "Internal error" not in run.error
    state = ResourceSync.objects.get(connection=connection, resource="orders")
    assert state.current_run_id == run.pk
    assert state.lease_token is None  # the retry takes it at once, not after the lease

    monkeypatch.setattr(sync_service, "_commit_page", commit)
    last = sync_resource(connection_id=connection.pk, resource="orders")
    assert last.status == SyncStatus.SUCCEEDED and last.run.pk == run.pk
    # Page 1 was not read again: three pages in all, in two attempts.
    assert (last.run.pages, last.run.records, last.run.attempts) == (3, 2500, 2)
    assert local_count(connection, "orders") == 2500


@pytest.mark.django_db(transaction=True)
def test_a_slow_page_keeps_its_lease_while_another_worker_asks(
    connect, sandbox, settings, monkeypatch
):
    settings.SYNC_LEASE_SECONDS = 3
    monkeypatch.setattr(sync_service, "PAGE_RETRIES", 0)
    connection = connect(orders=500)
    # One page that takes over twice the lease (a slow Trackstar, or the shared rate limit).
    sandbox.set_faults(rate=1.0, statuses=[], delay_ms=8000, paths="/wms/orders", count=1)
    asked = {}

    def first_lease_expiry():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            expires = (
                ResourceSync.objects.filter(
                    connection=connection, resource="orders", lease_token__isnull=False
                )
                .values_list("lease_expires_at", flat=True)
                .first()
            )
            if expires is not None:
                return expires
            time.sleep(0.02)
        raise AssertionError("the first run never took the lease")

    def another_worker():
        try:
            # Asks once the lease the first run took has lapsed (read as it was taken, or
            # at a renewal, which is later still): only a renewal keeps it now.
            lapsed = first_lease_expiry() + timedelta(seconds=0.5)
            while timezone.now() < lapsed:
                time.sleep(0.05)
            asked["at"] = time.time()
            sync_resource(connection_id=connection.pk, resource="orders")
        except Busy as e:
            asked["busy"] = e
        except Exception as e:  # reported by the assert below
            asked["error"] = e
        finally:
            db_connections.close_all()

    other = threading.Thread(target=another_worker)
    other.start()
    outcome = sync_resource(connection_id=connection.pk, resource="orders")
    other.join()
    sandbox.clear_faults()

    assert "error" not in asked, asked
    # It asked while the slow page was still on its way (the sandbox logs a request once
    # its delay is over).
    slow_page = next(
        r
        for r in sandbox.requests(connection.trackstar_connection_id)
        if r["method"] == "GET" and r["path"] == "/wms/orders"
    )
    assert asked["at"] < slow_page["at"]
    assert outcome.status == SyncStatus.SUCCEEDED and outcome.run.attempts == 1
    assert "busy" in asked  # not a takeover: the lease was renewed
    assert SyncRun.objects.count() == 1
    assert local_count(connection, "orders") == 500


def test_a_run_whose_worker_died_is_enqueued_once_its_lease_lapses(connect, no_enqueue):
    connection = connect()
    now = timezone.now()
    run = SyncRun.objects.create(connection=connection, resource="orders", kind="initial")
    live = SyncRun.objects.create(connection=connection, resource="returns", kind="manual")
    states = ResourceSync.objects.filter(connection=connection)
    # A lease renewed last 31 s ago (its worker died), and one renewed a second ago.
    states.filter(resource="orders").update(
        current_run=run,
        lease_token=uuid.uuid4(),
        lease_expires_at=now - timedelta(seconds=1),
        next_sync_at=now - timedelta(seconds=1),
    )
    states.filter(resource="returns").update(
        current_run=live,
        lease_token=uuid.uuid4(),
        lease_expires_at=now + timedelta(seconds=29),
        next_sync_at=now + timedelta(seconds=29),
    )

    assert schedule_service.sync_resume_orphaned() == 1
    assert no_enqueue == [("orders", "initial")]
    # Not again while its task waits in the queue.
    assert schedule_service.sync_resume_orphaned() == 0
    assert no_enqueue == [("orders", "initial")]
