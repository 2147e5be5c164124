from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from connections.models import Connection, ResourceSync, SyncRun
from connections.sync import schedule as schedule_service
from connections.sync.schedule import sync_dispatch_due, sync_request_now
from tests.builders import make_connection


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr(
        schedule_service,
        "sync_send",
        lambda connection_id, resource, kind, full=False: calls.append(
            (connection_id, resource, kind)
        ),
    )
    return calls


@pytest.fixture
def dispatch(django_capture_on_commit_callbacks):
    """One dispatcher tick, its messages sent as they are once its transaction commits."""

    def tick(**kwargs) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return sync_dispatch_due(**kwargs)

    return tick


def state(connection, resource="orders", *, due_in: float, **fields):
    fields.setdefault("history_ready", True)
    return ResourceSync.objects.create(
        connection=connection,
        resource=resource,
        next_sync_at=timezone.now() + timedelta(seconds=due_in),
        **fields,
    )


def test_dispatch_picks_only_what_is_due_oldest_first_and_caps(customer, enqueued, dispatch):
    active = [make_connection(customer=customer) for _ in range(4)]
    due_old = state(active[0], due_in=-600, high_water_mark=timezone.now())
    due_new = state(active[1], due_in=-60)
    due_newest = state(active[2], due_in=-1)
    not_due = state(active[3], due_in=+600)
    state(active[0], "products", due_in=-900, paused=True)
    state(active[0], "returns", due_in=-900, unsupported=True)
    state(active[0], "inventory", due_in=-900, enabled=False)
    paused_connection = make_connection(customer=customer, sync_paused=True)
    state(paused_connection, due_in=-900)
    broken = make_connection(customer=customer, status=Connection.Status.NEEDS_RECONNECT)
    state(broken, due_in=-900)

    first = dispatch(limit=2)
    second = dispatch(limit=2)
    third = dispatch(limit=2)

    assert (first, second, third) == (2, 1, 0)
    assert enqueued == [
        (active[0].pk, "orders", "incremental"),  # has a mark
        (active[1].pk, "orders", "initial"),
        (active[2].pk, "orders", "initial"),
    ]
    # Each one sent is pushed ahead while it waits in the queue, so the next tick does not
    # send it again; the one not yet due is left at its slot.
    pushed_past = timezone.now() + timedelta(seconds=200)
    for sent in (due_old, due_new, due_newest):
        sent.refresh_from_db()
        assert sent.next_sync_at > pushed_past, sent.connection_id
    slot = not_due.next_sync_at
    not_due.refresh_from_db()
    assert not_due.next_sync_at == slot


def test_dispatch_gives_sync_state_to_active_connections_without_it(
    customer, enqueued, dispatch, settings
):
    connection = make_connection(customer=customer, available_actions=["get_orders"])

    # The state is made, but the first read waits for Trackstar's initial sync…
    assert dispatch() == 0
    assert ResourceSync.objects.get(connection=connection).history_ready is False
    # …and happens anyway if Trackstar never says it finished: never skip data.
    later = timezone.now() + timedelta(seconds=settings.SYNC_HISTORY_WAIT_SECONDS + 60)
    assert dispatch(now=later) == 1
    assert enqueued == [(connection.pk, "orders", "initial")]


def test_dispatch_skips_missing_permissions_and_everything_while_the_key_is_refused(
    customer, enqueued, dispatch
):
    connection = make_connection(customer=customer)
    state(connection, "orders", due_in=-60)
    state(connection, "returns", due_in=-60, permission_error="No access to returns.")

    assert dispatch() == 1
    assert enqueued == [(connection.pk, "orders", "initial")]

    from connections.health.account import account_key_rejected

    account_key_rejected(error="Invalid or missing x-trackstar-api-key.")
    ResourceSync.objects.update(next_sync_at=timezone.now())
    assert dispatch() == 0


def test_schedule_is_staggered_deterministically_over_the_interval():
    interval = 15 * 60
    after = datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC)
    slots = [
        schedule_service.next_slot(
            connection_id=i, resource="orders", interval=interval, after=after
        )
        for i in range(10_000)
    ]

    assert slots == [
        schedule_service.next_slot(
            connection_id=i, resource="orders", interval=interval, after=after
        )
        for i in range(10_000)
    ]
    assert all(
        after + timedelta(seconds=interval / 2) <= s <= after + timedelta(seconds=interval * 1.5)
        for s in slots
    )
    per_minute = Counter(s.replace(second=0, microsecond=0) for s in slots)
    # 10,000 over 15 minutes is ~667 a minute; nowhere near all at once.
    assert len(per_minute) >= 15
    assert max(per_minute.values()) < 900
    # And a connection keeps its phase: one interval later, the same second of the cycle.
    later = schedule_service.next_slot(
        connection_id=42, resource="orders", interval=interval, after=slots[42]
    )
    assert (later - slots[42]).total_seconds() == interval


def test_request_now_enqueues_manual_runs_after_commit(
    customer, enqueued, django_capture_on_commit_callbacks
):
    connection = make_connection(
        customer=customer, available_actions=["get_orders", "get_inventory"]
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        requested = sync_request_now(connection=connection, resources=["orders"])

    assert requested == ["orders"]
    assert len(callbacks) == 1
    assert enqueued == [(connection.pk, "orders", SyncRun.Kind.MANUAL)]


def test_connecting_schedules_the_initial_sync(
    customer, enqueued, monkeypatch, django_capture_on_commit_callbacks
):
    from connections.health import services as health

    checks = []
    monkeypatch.setattr(
        health, "health_check_enqueue", lambda connection_id: checks.append(connection_id)
    )
    from connections.link import exchanges
    from connections.models import AuthCodeExchange
    from connections.trackstar import ExchangeResult

    exchange = AuthCodeExchange.objects.create(
        customer=customer,
        auth_code_hash="h",
        auth_code="ac",
        integration_name="shipbob",
        source="portal",
    )
    result = ExchangeResult(
        access_token="tok",
        connection_id="conn_new",
        integration_name="shipbob",
        customer_id=None,
        available_actions=["get_orders", "get_products"],
    )

    with django_capture_on_commit_callbacks(execute=True):
        exchanges._complete(exchange, result)

    connection = Connection.objects.get(trackstar_connection_id="conn_new")
    # Nothing is read before Trackstar's initial sync is done; a health check asks
    # Trackstar whether it is.
    assert enqueued == []
    assert checks == [connection.pk]
    assert set(
        ResourceSync.objects.filter(connection=connection).values_list("resource", "history_ready")
    ) == {("orders", False), ("products", False)}


def test_a_force_sync_without_its_completion_event_is_read_after_the_timeout(
    customer, enqueued, dispatch, settings
):
    connection = make_connection(customer=customer)
    asked = timezone.now() - timedelta(seconds=settings.SYNC_FORCE_TIMEOUT_SECONDS + 1)
    state(connection, "orders", due_in=+600, force_sync_requested_at=asked)
    state(connection, "inventory", due_in=+600, force_sync_requested_at=timezone.now())

    dispatch()

    assert enqueued == [(connection.pk, "orders", SyncRun.Kind.FORCE)]
    assert ResourceSync.objects.get(resource="orders").force_sync_requested_at is None
    assert ResourceSync.objects.get(resource="inventory").force_sync_requested_at is not None


def test_the_health_poll_checks_what_is_due_and_staggers_the_rest(customer, monkeypatch, settings):
    from connections.health import services as health

    checks = []
    monkeypatch.setattr(
        health, "health_check_enqueue", lambda connection_id: checks.append(connection_id)
    )
    now = timezone.now()
    never = make_connection(customer=customer)
    due = make_connection(customer=customer, health_next_check_at=now - timedelta(minutes=1))
    later = make_connection(customer=customer, health_next_check_at=now + timedelta(minutes=30))
    make_connection(customer=customer, status=Connection.Status.DISCONNECTED)

    assert health.health_poll(now=now) == 2
    assert sorted(checks) == sorted([never.pk, due.pk])
    # Pushed ahead while the checks are queued: the next tick does not send them again.
    assert health.health_poll(now=now + timedelta(minutes=1)) == 0
    assert later.pk not in checks

    # After a check: minutes while an error is open, about an hour otherwise, by a hash of
    # the connection so 10,000 connections do not all come due at once.
    troubled = health._next_check(due, now, troubled=True)
    healthy = [health._next_check(c, now, troubled=False) for c in (never, due, later)]
    assert troubled - now == timedelta(seconds=settings.HEALTH_CHECK_ERROR_INTERVAL_SECONDS)
    assert all(timedelta(minutes=30) <= h - now <= timedelta(minutes=90) for h in healthy)
    assert len(set(healthy)) == 3
