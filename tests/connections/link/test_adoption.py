"""Connections made in Trackstar's dashboard (or by Trackstar's own magic links) reach
Dockside by themselves: connection.created, the reconcile job, and staff's unassigned list."""

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEntry
from connections.link import adoption as adoption_service
from connections.models import (
    AuthCodeExchange,
    Connection,
    TrackstarAccount,
    UnassignedConnection,
    WebhookEvent,
)
from connections.webhooks import services as webhook_service
from tests.builders import make_connection, make_customer


@pytest.fixture
def sandbox_ready(trackstar):
    trackstar.configure(historical_sync_delay=0)
    return trackstar


def created_event(made: dict, *, customer_id: str | None = None, svix_id: str = "msg_created"):
    """connection.created as Trackstar sends it (API.md §8, §10)."""
    payload = {
        "connection_id": made["connection_id"],
        "integration_name": made["integration_name"],
        "integration_type": "general",
        "event_type": "connection.created",
        "data": {"created_date": "2026-12-01T10:00:00Z", "access_token": made["access_token"]},
    }
    if customer_id:
        payload["customer_id"] = customer_id
    event, _ = webhook_service.webhook_receive(svix_id=svix_id, payload=payload)
    return event


def apply(event, capture):
    with capture(execute=True):
        webhook_service.webhook_apply(event_id=event.pk)
    return WebhookEvent.objects.get(pk=event.pk)


def test_a_dashboard_connection_naming_our_customer_is_adopted_and_synced(
    sandbox_ready, customer, django_capture_on_commit_callbacks, monkeypatch
):
    from connections.sync import schedule as sync

    scheduled = []
    monkeypatch.setattr(
        sync, "sync_schedule_initial", lambda connection: scheduled.append(connection.pk)
    )
    made = sandbox_ready.dashboard_connect("shipbob", customer_id=customer.public_id, webhook=False)

    event = apply(
        created_event(made, customer_id=customer.public_id), django_capture_on_commit_callbacks
    )

    connection = Connection.objects.get(trackstar_connection_id=made["connection_id"])
    assert event.status == WebhookEvent.Status.PROCESSED and event.connection == connection
    assert connection.customer == customer
    assert connection.status == Connection.Status.ACTIVE
    assert connection.source == Connection.Source.TRACKSTAR_DASHBOARD
    assert connection.access_token == made["access_token"]  # stored encrypted (crypto tests)
    assert connection.label == "ShipBob"
    assert connection.available_actions  # from GET /connections/{id}
    assert scheduled == [connection.pk]
    assert AuditEntry.objects.filter(action="connection.adopted", connection=connection).exists()
    assert not UnassignedConnection.objects.filter(resolution="").exists()


def test_a_dashboard_connection_without_a_known_customer_waits_for_staff(
    sandbox_ready, customer, staff_user, django_capture_on_commit_callbacks
):
    made = sandbox_ready.dashboard_connect("shipbob", customer_id="someone-elses-id", webhook=False)

    apply(created_event(made, customer_id="someone-elses-id"), django_capture_on_commit_callbacks)

    assert not Connection.objects.exists()
    unassigned = UnassignedConnection.objects.get()
    assert (unassigned.trackstar_customer_id, unassigned.integration_name) == (
        "someone-elses-id",
        "shipbob",
    )
    assert unassigned.access_token == made["access_token"]

    with django_capture_on_commit_callbacks(execute=False):
        connection = adoption_service.unassigned_assign(
            unassigned=unassigned, customer=customer, actor=staff_user
        )

    # Our customer_id is now written at Trackstar (PATCH /connections).
    assert sandbox_ready.connection(made["connection_id"])["customer_id"] == customer.public_id
    assert connection.status == Connection.Status.ACTIVE and connection.customer == customer
    unassigned.refresh_from_db()
    assert unassigned.resolution == "assigned" and unassigned.connection == connection
    assert unassigned.access_token == ""  # lives on the connection now
    assert AuditEntry.objects.filter(action="unassigned.assigned", actor=staff_user).exists()
    with pytest.raises(ValidationError, match="already assigned"):
        adoption_service.unassigned_assign(
            unassigned=unassigned, customer=customer, actor=staff_user
        )


def test_our_own_connect_in_flight_is_left_to_its_exchange(
    sandbox_ready, customer, django_capture_on_commit_callbacks
):
    made = sandbox_ready.dashboard_connect("shipbob", customer_id=customer.public_id, webhook=False)
    AuthCodeExchange.objects.create(
        customer=customer,
        auth_code_hash="h1",
        auth_code="ac",
        integration_name="shipbob",
        source="portal",
    )

    event = apply(
        created_event(made, customer_id=customer.public_id), django_capture_on_commit_callbacks
    )

    assert event.status == WebhookEvent.Status.IGNORED
    assert "still storing" in event.error
    assert not Connection.objects.exists() and not UnassignedConnection.objects.exists()


def test_deleting_an_unassigned_connection_deletes_it_at_trackstar(sandbox_ready, staff_user):
    made = sandbox_ready.dashboard_connect("shiphero", webhook=False)
    adoption_service.connections_reconcile()
    unassigned = UnassignedConnection.objects.get(trackstar_connection_id=made["connection_id"])

    with pytest.raises(ValidationError, match="Paste the connection's access token"):
        adoption_service.unassigned_delete(unassigned=unassigned, actor=staff_user)
    adoption_service.unassigned_delete(
        unassigned=unassigned, access_token=made["access_token"], actor=staff_user
    )

    assert sandbox_ready.get(f"/_sandbox/connections/{made['connection_id']}").status_code == 404
    unassigned.refresh_from_db()
    assert unassigned.resolution == "deleted"
    assert AuditEntry.objects.filter(action="unassigned.deleted").exists()


def test_reconcile_lists_what_trackstar_has_and_we_do_not(
    sandbox_ready, customer, staff_user, django_capture_on_commit_callbacks
):
    # Made in the dashboard for our customer, but its connection.created never arrived.
    missed = sandbox_ready.dashboard_connect(
        "shipbob", customer_id=customer.public_id, webhook=False
    )
    other = sandbox_ready.dashboard_connect("deposco", webhook=False)

    counts = adoption_service.connections_reconcile()

    assert counts["unassigned"] == 2
    unassigned = UnassignedConnection.objects.get(trackstar_connection_id=missed["connection_id"])
    assert unassigned.trackstar_customer_id == customer.public_id
    assert unassigned.access_token == ""  # GET /connections carries no tokens
    assert unassigned.trackstar_created_at is not None
    assert TrackstarAccount.objects.get().reconciled_at is not None
    # Staff paste the token to assign it; a token of another connection is refused.
    with pytest.raises(ValidationError, match="another connection"):
        adoption_service.unassigned_assign(
            unassigned=unassigned,
            customer=customer,
            access_token=other["access_token"],
            actor=staff_user,
        )
    with django_capture_on_commit_callbacks(execute=False):
        adoption_service.unassigned_assign(
            unassigned=unassigned,
            customer=customer,
            access_token=missed["access_token"],
            actor=staff_user,
        )
    assert (
        Connection.objects.get(trackstar_connection_id=missed["connection_id"]).status
        == Connection.Status.ACTIVE
    )
    # A second run finds nothing new.
    assert (
        adoption_service.connections_reconcile()["unassigned"] == 1
    )  # the deposco one, still open
    assert UnassignedConnection.objects.filter(resolution="").count() == 1


def test_reconcile_disconnects_what_trackstar_deleted_but_only_when_its_token_is_dead_too(
    sandbox_ready, customer, monkeypatch
):
    made = sandbox_ready.connect("shipbob", {"api_key": "k"})
    gone = make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
    )
    kept = sandbox_ready.connect("shipbob", {"api_key": "k"})
    alive = make_connection(
        customer=make_customer(),
        trackstar_connection_id=kept["connection_id"],
        access_token=kept["access_token"],
    )
    sandbox_ready.session.delete(
        sandbox_ready.url("/connections"), headers=sandbox_ready.token_headers(made["access_token"])
    )
    # And a listing that forgets a live connection (a short page, a bug): its token works.
    from connections.trackstar.client import TrackstarClient

    listing = TrackstarClient.list_connections
    monkeypatch.setattr(
        TrackstarClient,
        "list_connections",
        lambda self, **kw: [
            c for c in listing(self, **kw) if c["connection_id"] != kept["connection_id"]
        ],
    )

    assert adoption_service.connections_reconcile()["disconnected"] == 1

    gone.refresh_from_db()
    alive.refresh_from_db()
    assert gone.status == Connection.Status.DISCONNECTED
    assert "reconcile" in AuditEntry.objects.get(action="connection.disconnected").detail["reason"]
    assert alive.status == Connection.Status.ACTIVE and alive.access_token


def test_staff_see_unassigned_connections_and_assign_one_from_admin(
    sandbox_ready, customer, client, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Permission

    from tests.builders import make_user

    made = sandbox_ready.dashboard_connect("shipbob", webhook=False)
    adoption_service.connections_reconcile()
    staff_user = make_user(username="ops", is_staff=True)
    client.force_login(staff_user)
    unassigned = UnassignedConnection.objects.get()

    # Staff who may not add connections see the list but cannot act.
    staff_user.user_permissions.add(Permission.objects.get(codename="view_connection"))
    page = client.get("/admin/connections/unassignedconnection/").content.decode()
    assert made["connection_id"] in page and "Trackstar was last checked" in page
    assert "Check Trackstar now" not in page
    assert (
        client.post(
            f"/admin/connections/unassignedconnection/{unassigned.pk}/assign/",
            {"customer": customer.pk},
        ).status_code
        == 403
    )
    assert client.post("/admin/connections/unassignedconnection/reconcile/").status_code == 403

    staff_user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_connection", "change_connection"])
    )
    response = client.post(
        f"/admin/connections/unassignedconnection/{unassigned.pk}/assign/",
        {"customer": customer.pk},
    )
    assert "Paste the connection" in response.content.decode()  # no token yet
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            f"/admin/connections/unassignedconnection/{unassigned.pk}/assign/",
            {"customer": customer.pk, "access_token": made["access_token"]},
            follow=True,
        )

    assert f"now belongs to {customer.name}" in response.content.decode()
    assert Connection.objects.get().customer == customer
    # Handled ones leave the default list.
    page = client.get("/admin/connections/unassignedconnection/").content.decode()
    assert made["connection_id"] not in page
