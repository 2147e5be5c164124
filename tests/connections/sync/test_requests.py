"""A requested sync is a database row before it is a message: lost messages come back from
the database, a second request joins the first, and the dispatcher stays a few statements
a tick at 10,000 connections."""

import os
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from connections.models import RECORD_MODELS, Connection, ResourceSync, SyncRun
from connections.services import connection_reread, connection_resync
from connections.sync import run as sync_service
from connections.sync import schedule as schedule_service
from connections.sync.run import SyncStatus
from connections.sync.schedule import sync_dispatch_due
from customers.models import Customer

from .conftest import sandbox_counts


@pytest.fixture
def broker(monkeypatch, django_capture_on_commit_callbacks):
    """The broker, by hand: `sent` holds each message published, (connection id, resource,
    kind, full); `lose()` empties it, as a Redis restarted empty would; `work()` runs the
    messages as the worker would, those the runs send included, until none is left."""
    from connections.health import services as health

    class Broker:
        sent: list[tuple[int, str, str, bool]] = []

        def lose(self) -> None:
            self.sent.clear()

        def work(self, **budget) -> list[sync_service.SyncOutcome]:
            outcomes = []
            while self.sent:
                connection_id, resource, kind, full = self.sent.pop(0)
                with django_capture_on_commit_callbacks(execute=True):
                    outcome = sync_service.sync_resource(
                        connection_id=connection_id,
                        resource=resource,
                        kind=kind,
                        full=full,
                        requested=True,
                        **budget,
                    )
                outcomes.append(outcome)  # a run out of time sent its rest to `sent`
            return outcomes

        def tick(self, **kwargs) -> int:
            """The dispatcher, as beat runs it."""
            with django_capture_on_commit_callbacks(execute=True):
                return sync_dispatch_due(**kwargs)

    messages = Broker()
    messages.sent = []

    def publish(connection_id, resource, kind, full=False):
        messages.sent.append((connection_id, resource, kind, full))
        return True

    monkeypatch.setattr(schedule_service, "sync_send", publish)
    monkeypatch.setattr(health, "health_check_enqueue", lambda connection_id: None)
    return messages


def runs(connection, resource):
    return list(SyncRun.objects.filter(connection=connection, resource=resource).order_by("pk"))


def test_resyncs_whose_messages_were_lost_run_from_the_database(
    connect, sandbox, broker, staff_user, settings, django_capture_on_commit_callbacks
):
    connection = connect(orders=1200, inventory=300, products=200)
    # Staff press "Re-read" on orders, and "Resync now" on inventory and products, whose
    # connection.force-sync-completed then arrives: three requested syncs.
    with django_capture_on_commit_callbacks(execute=True):
        connection_reread(connection=connection, actor=staff_user, resources=["orders"])
        connection_resync(
            connection=connection, actor=staff_user, resources=["inventory", "products"]
        )
        schedule_service.sync_force_completed(connection=connection)
    assert sorted((m[1], m[2], m[3]) for m in broker.sent) == [
        ("inventory", "force", False),
        ("orders", "manual", True),
        ("products", "force", False),
    ]
    broker.lose()  # Redis restarted empty: the three messages are gone

    now = timezone.now()
    # Not yet: a message that is only slow is given SYNC_REQUEST_RESEND_SECONDS.
    assert broker.tick(now=now) == 0 and broker.sent == []
    # Beat's next tick after that sends each again, once: within two minutes of the loss.
    assert settings.SYNC_REQUEST_RESEND_SECONDS + 60 <= 120
    broker.tick(now=now + timedelta(seconds=settings.SYNC_REQUEST_RESEND_SECONDS + 1))
    assert sorted((m[1], m[2], m[3]) for m in broker.sent) == [
        ("inventory", "force", False),
        ("orders", "manual", True),
        ("products", "force", False),
    ]
    outcomes = broker.work()

    assert [o.status for o in outcomes] == ["succeeded"] * 3
    expected = sandbox_counts(sandbox, connection)
    for resource in ("orders", "inventory", "products"):
        (run,) = runs(connection, resource)
        assert run.records == expected[resource]
        assert (
            RECORD_MODELS[resource].objects.filter(connection=connection).count()
            == (expected[resource])
        )
    assert runs(connection, "orders")[0].kind == "manual"
    assert runs(connection, "orders")[0].since is None  # a re-read reads everything
    # Served: no later tick sends them again (before their next scheduled read).
    assert not ResourceSync.objects.filter(requested_at__isnull=False).exists()
    broker.tick(now=now + timedelta(minutes=5))
    assert broker.sent == []


def test_a_second_resync_while_the_first_is_queued_joins_it(
    connect, broker, staff_user, django_capture_on_commit_callbacks
):
    connection = connect(orders=2500)

    with django_capture_on_commit_callbacks(execute=True):
        connection_reread(connection=connection, actor=staff_user, resources=["orders"])
    with django_capture_on_commit_callbacks(execute=True):
        connection_reread(connection=connection, actor=staff_user, resources=["orders"])
        schedule_service.sync_request_now(connection=connection, resources=["orders"])
    assert len(broker.sent) == 1
    broker.sent.append(broker.sent[0])  # and Redis hands the message out twice
    outcomes = broker.work()

    assert [o.status for o in outcomes] == ["succeeded", "skipped"]
    (run,) = runs(connection, "orders")
    assert (run.kind, run.since, run.records, run.pages) == ("manual", None, 2500, 3)


def test_resyncs_during_a_running_read_get_exactly_one_run_after_it(
    connect, sandbox, broker, staff_user, monkeypatch, django_capture_on_commit_callbacks
):
    connection = connect(orders=3000)
    with django_capture_on_commit_callbacks(execute=True):
        connection_reread(connection=connection, actor=staff_user, resources=["orders"])
    commit_page = sync_service._commit_page
    changed = []

    def commit_then_press_resync(lease, page, mark):
        mark = commit_page(lease, page, mark)
        if not changed:  # after the first page, while the run holds its lease
            ids = sandbox.mutate(connection.trackstar_connection_id, "orders", count=5)
            changed.extend(ids["updated_ids"])
            connection_reread(connection=connection, actor=staff_user, resources=["orders"])
            connection_reread(connection=connection, actor=staff_user, resources=["orders"])
        return mark

    monkeypatch.setattr(sync_service, "_commit_page", commit_then_press_resync)
    outcomes = broker.work()

    assert [o.status for o in outcomes] == ["succeeded", "succeeded"]
    first, second = runs(connection, "orders")
    assert (first.kind, first.since, first.records) == ("manual", None, 3000)
    # One run after it for both presses, and not a second full read: the first read every
    # record there was when it started; the second reads what changed since.
    assert second.kind == "manual" and second.since is not None
    assert second.started_at > first.finished_at
    assert 5 <= second.records < 100
    for order_id in changed:
        row = RECORD_MODELS["orders"].objects.get(connection=connection, trackstar_id=order_id)
        assert row.synced_at >= second.started_at
    assert not ResourceSync.objects.filter(requested_at__isnull=False).exists()


def test_a_resync_between_two_parts_of_a_long_run_gets_one_run_after_it(
    connect, broker, staff_user, django_capture_on_commit_callbacks
):
    connection = connect(orders=3000)
    with django_capture_on_commit_callbacks(execute=True):
        schedule_service.sync_request_now(
            connection=connection, resources=["orders"], kind=SyncRun.Kind.INITIAL
        )
    connection_id, resource, kind, full = broker.sent.pop(0)
    with django_capture_on_commit_callbacks(execute=True):
        part = sync_service.sync_resource(
            connection_id=connection_id,
            resource=resource,
            kind=kind,
            full=full,
            requested=True,
            page_budget=1,
        )
    assert part.status == SyncStatus.CONTINUE
    # The run sends its rest, as the message that brought it (it resumes from the cursor).
    assert broker.sent == [(connection_id, resource, kind, full)]

    # Between the parts nobody holds the lease: the request's message goes out at once.
    with django_capture_on_commit_callbacks(execute=True):
        connection_reread(connection=connection, actor=staff_user, resources=["orders"])
    assert len(broker.sent) == 2
    outcomes = broker.work()

    statuses = Counter(o.status for o in outcomes)
    assert statuses["succeeded"] == 2
    first, second = runs(connection, "orders")
    assert first.records == 3000 and first.attempts == 2
    assert second.kind == "manual" and second.started_at > first.finished_at
    # The re-read joined the full read in progress: the run after it reads what changed.
    assert second.since is not None and second.records < 1000
    assert not ResourceSync.objects.filter(requested_at__isnull=False).exists()


def test_a_request_sent_while_the_broker_is_down_waits_for_the_next_tick(
    connect, published, django_capture_on_commit_callbacks
):
    connection = connect(orders=10)
    published.refuse = 1

    with django_capture_on_commit_callbacks(execute=True):
        schedule_service.sync_request_now(connection=connection, resources=["orders"])
    assert published == []

    # The next tick is a minute later: past the 10 s this process stays off the broker.
    from connections import degrade

    degrade.reset()
    with django_capture_on_commit_callbacks(execute=True):
        sync_dispatch_due()

    assert published == [
        ("connections.sync", (connection.pk, "orders", "manual", False), {"requested": True})
    ]


# --- The dispatcher at 10,000 connections ------------------------------------------------------


def import_connections(customer: Customer, n: int) -> list[Connection]:
    tag = uuid.uuid4().hex[:8]
    return Connection.objects.bulk_create(
        [
            Connection(
                customer=customer,
                trackstar_connection_id=f"conn_{tag}_{i}",
                integration_name="shipbob",
                status=Connection.Status.ACTIVE,
                source=Connection.Source.IMPORT,
                access_token=f"token_{tag}_{i}",
                available_actions=["get_orders", "get_inventory"],
            )
            for i in range(n)
        ],
        batch_size=2000,
    )


# Statements in one tick, whatever the number of connections: connections without sync
# state and one insert of theirs, the API key check, force syncs timed out, the due rows
# and one update of them, the requests to send again; plus three savepoints (two
# statements each: the test runs in a transaction). The old tick took four statements per
# connection without sync state. (At most: an update more for timed-out force syncs and
# for re-sends, and an insert per 1000 new rows.) Bounded by SYNC_DISPATCH_BATCH (5,000:
# five inserts of new rows at most), never by the number of connections.
DISPATCH_MAX_QUERIES = 13 + 5


@pytest.mark.parametrize("n", [100, 10_000])
def test_one_tick_over_many_connections_is_a_few_statements_and_skips_queued_and_running(
    n, customer, broker, django_assert_max_num_queries
):
    connections = import_connections(customer, n)
    now = timezone.now()
    # A tenth are a fresh import with no sync state; the rest have an orders sync that is
    # due, and of those one in ten is queued already and one in ten is running.
    fresh, known = connections[: n // 10], connections[n // 10 :]
    queued, running = set(), set()
    rows = []
    for i, connection in enumerate(known):
        row = ResourceSync(
            connection=connection,
            resource="orders",
            history_ready=True,
            high_water_mark=now - timedelta(hours=1) if i % 2 else None,
            next_sync_at=now - timedelta(seconds=1 + i % 3600),
        )
        if i % 10 == 1:
            row.requested_at = now - timedelta(seconds=20)
            row.requested_kind = "manual"
            row.request_sends = 1
            row.request_resend_at = now + timedelta(seconds=40)
            queued.add(connection.pk)
        elif i % 10 == 2:
            row.lease_token = uuid.uuid4()
            row.lease_expires_at = now + timedelta(seconds=20)
            running.add(connection.pk)
        rows.append(row)
    ResourceSync.objects.bulk_create(rows, batch_size=2000)
    batch = django_settings.SYNC_DISPATCH_BATCH

    with django_assert_max_num_queries(DISPATCH_MAX_QUERIES):
        dispatched = broker.tick(now=now)

    due = len(known) - len(queued) - len(running)
    assert dispatched == min(batch, due) == len(broker.sent)
    assert len({(m[0], m[1]) for m in broker.sent}) == dispatched
    assert not {m[0] for m in broker.sent} & (queued | running)
    # The fresh import has sync state now (a batch of connections a tick), each first read
    # at its own slot over the interval rather than all in the next minute.
    first_slots = list(
        ResourceSync.objects.filter(connection__in=fresh).values_list("next_sync_at", flat=True)
    )
    assert len(first_slots) == 2 * min(len(fresh), batch)
    interval = timedelta(seconds=django_settings.SYNC_INTERVAL_SECONDS)
    assert all(now <= slot < now + interval for slot in first_slots)
    per_minute = Counter(int((slot - now).total_seconds() // 60) for slot in first_slots)
    minutes = interval.total_seconds() / 60
    if n >= 10_000:
        assert len(per_minute) == minutes
        assert max(per_minute.values()) < 2 * len(first_slots) / minutes
    else:
        assert len(per_minute) > 1


def test_a_fresh_import_is_read_at_its_slot_even_once_trackstar_has_its_history(customer, broker):
    (connection,) = import_connections(customer, 1)
    now = timezone.now()
    broker.tick(now=now)
    orders = ResourceSync.objects.get(connection=connection, resource="orders")
    assert orders.next_sync_at > now

    # The health check finds Trackstar's history done: no read before the slot…
    schedule_service.sync_history_completed(connection=connection, resources=["orders"])
    assert broker.sent == []
    assert broker.tick(now=orders.next_sync_at - timedelta(seconds=1)) == 0
    # …and one at it.
    assert broker.tick(now=orders.next_sync_at) == 1
    assert broker.sent == [(connection.pk, "orders", "initial", False)]


# --- Redis emptied, real worker -------------------------------------------------------------


@pytest.fixture
def redis_emptied():
    """FLUSHALL on the test Redis. Kombu's routing tables go with it; they are put back
    when the test ends, for the session's other workers (a worker started after the flush
    declares its own, as a worker reconnecting to an empty Redis does)."""
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    saved: dict[bytes, set[bytes]] = {}

    def flush() -> None:
        for key in client.scan_iter(match="_kombu.binding.*"):
            saved[key] = client.smembers(key)
        client.flushall()

    yield flush
    for key, members in saved.items():
        if members:
            client.sadd(key, *members)
    client.close()


@pytest.mark.django_db(transaction=True)
def test_rereads_pressed_before_redis_was_emptied_complete_from_the_database(
    connect, sandbox, celery_worker_factory, client, staff_user, settings, redis_emptied
):
    connection = connect(orders=2000, inventory=400, products=300)
    # This process's tasks go to this test's queues, which no worker takes yet.
    celery_worker_factory.route_here()
    settings.SYNC_REQUEST_RESEND_SECONDS = 1  # instead of a minute
    client.force_login(staff_user)
    for resource in ("orders", "inventory", "products"):
        response = client.post(
            f"/admin/connections/connection/{connection.pk}/resync/?resource={resource}&mode=reread"
        )
        assert response.status_code == 302
    redis_emptied()  # with the three messages in it

    worker = celery_worker_factory(queues=["sync"])
    expected = sandbox_counts(sandbox, connection)
    deadline = time.monotonic() + 120

    def done() -> bool:
        finished = SyncRun.objects.filter(connection=connection, status="succeeded")
        return finished.values("resource").distinct().count() == 3

    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"Requested syncs did not complete: {worker.log()}")
        sync_dispatch_due()  # beat's tick (every minute in production; every second here)
        time.sleep(1)

    for resource in ("orders", "inventory", "products"):
        (run,) = runs(connection, resource)
        assert (run.kind, run.since, run.status) == ("manual", None, "succeeded")
        assert run.records == expected[resource]
        assert (
            RECORD_MODELS[resource].objects.filter(connection=connection).count()
            == (expected[resource])
        )
