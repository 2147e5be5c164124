"""Trackstar's 2026 semantics end to end (API.md §10): the sandbox behaves like Trackstar, the
worker applies its webhooks and syncs, and what a customer or staff member would notice is
checked. Real worker process, PostgreSQL, Redis, the sandbox over HTTP."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Q
from django.utils import timezone

from connections.health import services as health_service
from connections.models import (
    Backfill,
    Connection,
    MagicLink,
    Order,
    ResourceSync,
    Return,
    SyncRun,
    TrackstarAccount,
)
from connections.sync import schedule as schedule_service
from tests.builders import make_connection, make_customer, make_user
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def customer():
    return make_customer(name="Acme Outdoor")


@pytest.fixture
def connect(live_trackstar, customer):
    """A connection made at the sandbox, as a new one is: its data appears only after
    Trackstar's historical sync (its webhooks, 1 s later), which the worker then reads."""

    def _connect(integration: str = "sandbox", **counts) -> Connection:
        made = live_trackstar.connect(
            integration,
            {
                "api_key": "sk_1",
                "username": "u",
                "password": "p",
                "company_code": "c",
                "domain": "d",
            },
            customer_id=customer.public_id,
        )
        if counts:
            live_trackstar.dataset(made["connection_id"], **counts)
        connection = make_connection(
            customer=customer,
            trackstar_connection_id=made["connection_id"],
            integration_name=integration,
            access_token=made["access_token"],
            available_actions=made["available_actions"],
        )
        schedule_service.sync_schedule_initial(connection=connection)
        wait_for(
            lambda: (
                ResourceSync.objects.filter(
                    connection=connection, last_success_at__isnull=True
                ).count()
                == 0
                and ResourceSync.objects.filter(connection=connection).exists()
            ),
            timeout=40,
            message="the initial sync of every resource",
        )
        return connection

    return _connect


def dispatch_now(connection: Connection) -> int:
    """What beat's dispatcher would do once every resource is due. The live worker may still
    run (or have queued) what the last dispatch sent: such a resource is not due, so wait
    until none is, or the count would depend on the worker's speed."""
    wait_for(
        lambda: (
            not ResourceSync.objects.filter(connection=connection)
            .filter(Q(requested_at__isnull=False) | Q(lease_token__isnull=False))
            .exists()
        ),
        timeout=60,
        message="the worker to finish the syncs already sent",
    )
    ResourceSync.objects.filter(connection=connection).update(
        next_sync_at=timezone.now(), last_success_at=timezone.now() - timedelta(hours=1)
    )
    return schedule_service.sync_dispatch_due()


def test_a_new_connection_is_read_once_after_trackstars_historical_sync(connect):
    connection = connect(orders=120)

    assert Order.objects.filter(connection=connection).count() == 120
    orders_runs = SyncRun.objects.filter(connection=connection, resource="orders")
    # One read, started by connection.historical-sync-completed; no empty read before it
    # and no second full read after it.
    assert list(orders_runs.values_list("kind", "records")) == [("initial", 120)]


def test_a_missing_permission_stops_one_resource_and_emails_nobody(connect, live_trackstar, client):
    connection = connect()
    live_trackstar.break_connection(
        connection.trackstar_connection_id, kind="missing_permission", resource="returns"
    )

    returns = wait_for(
        lambda: (
            ResourceSync.objects.filter(connection=connection, resource="returns")
            .exclude(permission_error="")
            .first()
        ),
        message="the missing permission to be read from Trackstar",
    )
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE
    assert not MagicLink.objects.exists()  # no reconnect email: reconnecting would not help
    assert connection.trackstar_errors[0]["kind"] == "missing_permission"

    # Every other resource keeps syncing: late orders arrive, returns are not read.
    late = live_trackstar.ingest_late(connection.trackstar_connection_id, "orders", count=3)
    returns_runs = SyncRun.objects.filter(connection=connection, resource="returns").count()
    assert (
        dispatch_now(connection)
        == ResourceSync.objects.filter(connection=connection, permission_error="").count()
    )
    wait_for(
        lambda: Order.objects.filter(trackstar_id__in=late).count() == 3,
        message="the orders sync to go on",
    )
    assert SyncRun.objects.filter(connection=connection, resource="returns").count() == returns_runs

    # The customer is told which resource and what to do, in plain words.
    client.force_login(make_user(customer=connection.customer))
    page = client.get("/portal/").content.decode()
    assert "No access to returns" in page
    assert "reconnecting with the same credentials will not help" in page

    live_trackstar.repair_connection(connection.trackstar_connection_id)
    wait_for(
        lambda: ResourceSync.objects.get(pk=returns.pk).permission_error == "",
        message="the repaired permission to be read from Trackstar",
    )
    assert dispatch_now(connection) == ResourceSync.objects.filter(connection=connection).count()


def test_invalid_credentials_need_reconnect_though_reads_still_answer(connect, live_trackstar):
    connection = connect()
    live_trackstar.break_connection(connection.trackstar_connection_id, kind="invalid_credentials")

    wait_for(
        lambda: Connection.objects.get(pk=connection.pk).status == "needs_reconnect",
        message="the blocking error to be read from Trackstar",
    )
    # Trackstar still serves its copy: the 200s do not hide the breakage from us.
    assert live_trackstar.wms(connection.access_token, "/wms/orders").status_code == 200
    assert MagicLink.objects.filter(reinstall_connection=connection).count() == 1
    assert dispatch_now(connection) == 0  # syncs stop
    # Asked again (the poll, another webhook), still one email for the incident.
    health_service.connection_health_refresh(connection_id=connection.pk)
    assert MagicLink.objects.count() == 1


def test_a_rejected_api_key_pauses_syncs_alerts_staff_and_emails_no_customer(
    connect, live_trackstar, admin_client
):
    first = connect()
    second = connect("shipbob")
    live_trackstar.configure(api_key="a-key-trackstar-never-issued")

    assert dispatch_now(first) > 0
    wait_for(
        lambda: TrackstarAccount.objects.filter(key_rejected_at__isnull=False).exists(),
        message="the 401 to be traced to our API key",
    )
    assert set(Connection.objects.values_list("status", flat=True)) == {"active"}
    assert not MagicLink.objects.exists()
    assert dispatch_now(second) == 0  # every sync waits
    banner = admin_client.get("/admin/").content.decode()
    assert "Trackstar refuses Dockside's API key" in banner

    live_trackstar.configure(api_key=live_trackstar.api_key)
    health_service.health_poll()  # beat's minute tick: the key works again
    assert not TrackstarAccount.objects.filter(key_rejected_at__isnull=False).exists()
    assert dispatch_now(second) > 0
    assert "Trackstar refuses" not in admin_client.get("/admin/").content.decode()


def test_resync_now_refreshes_from_the_wms_before_reading(connect, live_trackstar, admin_client):
    connection = connect()
    changed = live_trackstar.mutate(
        connection.trackstar_connection_id, "orders", count=3, in_wms_only=True
    )["updated_ids"]
    before = {
        o.trackstar_id: o.updated_date for o in Order.objects.filter(trackstar_id__in=changed)
    }

    response = admin_client.post(
        f"/admin/connections/connection/{connection.pk}/resync/?resource=orders"
    )

    assert response.status_code == 302
    wait_for(
        lambda: SyncRun.objects.filter(
            connection=connection, resource="orders", kind="force", status="succeeded"
        ).exists(),
        message="the read after connection.force-sync-completed",
    )
    after = {o.trackstar_id: o.updated_date for o in Order.objects.filter(trackstar_id__in=changed)}
    assert all(after[i] > before[i] for i in changed)
    assert (
        ResourceSync.objects.get(connection=connection, resource="orders").force_sync_requested_at
        is None
    )


def test_a_backfill_brings_history_older_than_the_initial_window(
    connect, live_trackstar, admin_client
):
    connection = connect()
    start = (datetime.now(UTC) - timedelta(days=90)).date()
    end = (datetime.now(UTC) - timedelta(days=60)).date()
    old = Order.objects.filter(connection=connection, created_date__date__lte=end)
    assert not old.exists()

    response = admin_client.post(
        f"/admin/connections/connection/{connection.pk}/backfill/",
        {"resource": "orders", "start_time": start.isoformat(), "end_time": end.isoformat()},
    )

    assert response.status_code == 302
    backfill = Backfill.objects.get(connection=connection)
    wait_for(
        lambda: (
            Backfill.objects.get(pk=backfill.pk).status == "completed"
            and SyncRun.objects.filter(
                connection=connection, kind="backfill", status="succeeded"
            ).exists()
        ),
        message="connection.sync-job-completed and the read after it",
    )
    window = (
        datetime.combine(start, datetime.min.time(), UTC),
        datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC),
    )
    assert old.count() >= 1
    assert all(window[0] <= o.created_date < window[1] for o in old)
    assert not Return.objects.filter(connection=connection, created_date__date__lte=end).exists()


def test_a_backfill_trackstar_does_not_offer_shows_its_reason(connect, admin_client):
    connection = connect("shipbob")  # ShipBob backfills orders only

    response = admin_client.post(
        f"/admin/connections/connection/{connection.pk}/backfill/",
        {"resource": "returns", "start_time": "2026-01-01", "end_time": "2026-02-01"},
    )

    assert response.status_code == 200
    assert "On-demand sync is not enabled for shipbob get_returns" in response.content.decode()
    assert not Backfill.objects.exists()
