"""What Trackstar reports about a connection is in the audit log, said as Trackstar's:
broken, working again, deleted, a connection made in its dashboard adopted."""

import pytest

from audit.models import AuditEntry
from audit.sentences import audit_sentence
from connections import services
from connections.health import services as health_service
from connections.models import Connection
from connections.webhooks import services as webhook_service
from tests.audit.helpers import assert_entry, only_entry

TRACKSTAR = AuditEntry.ActorKind.TRACKSTAR


@pytest.fixture(autouse=True)
def no_health_enqueue(monkeypatch):
    # Each module that asks for a health check looks the name up in its own namespace.
    for module in (health_service, webhook_service):
        monkeypatch.setattr(module, "health_check_enqueue", lambda connection_id: None)


def test_broken_credentials_are_trackstars_report(trackstar, live):
    trackstar.break_connection(live.trackstar_connection_id)

    health_service.connection_health_refresh(connection_id=live.pk)

    assert Connection.objects.get(pk=live.pk).status == Connection.Status.NEEDS_RECONNECT
    assert_entry(
        only_entry("connection.needs_reconnect"),
        actor=None,
        kind=TRACKSTAR,
        connection=live,
        text="Trackstar reported ShipBob of Acme Outdoor broken: "
        "the WMS refused the saved credentials",
    )


def test_repaired_is_trackstars_report(trackstar, live):
    trackstar.break_connection(live.trackstar_connection_id)
    health_service.connection_health_refresh(connection_id=live.pk)
    trackstar.repair_connection(live.trackstar_connection_id)

    health_service.connection_health_refresh(connection_id=live.pk)

    assert Connection.objects.get(pk=live.pk).status == Connection.Status.ACTIVE
    assert_entry(
        only_entry("connection.repaired"),
        actor=None,
        kind=TRACKSTAR,
        connection=live,
        text="Trackstar reported ShipBob of Acme Outdoor working again",
    )


def test_deleted_at_trackstar_is_trackstars_report(connection):
    connection.label = "ShipBob"
    connection.save()
    event, _ = webhook_service.webhook_receive(
        svix_id="msg_deleted",
        payload={
            "connection_id": connection.trackstar_connection_id,
            "event_type": "connection.deleted",
            "data": {},
        },
    )

    webhook_service.webhook_apply(event_id=event.pk)

    assert_entry(
        only_entry("connection.disconnected"),
        actor=None,
        kind=TRACKSTAR,
        connection=connection,
        text="Trackstar reported ShipBob of Acme Outdoor deleted: "
        "The connection was deleted at Trackstar",
    )


def test_a_dashboard_connection_adopted_is_one_entry(
    trackstar, customer, django_capture_on_commit_callbacks
):
    trackstar.configure(historical_sync_delay=0)
    made = trackstar.dashboard_connect("shipbob", customer_id=customer.public_id, webhook=False)
    event, _ = webhook_service.webhook_receive(
        svix_id="msg_created",
        payload={
            "connection_id": made["connection_id"],
            "customer_id": customer.public_id,
            "integration_name": "shipbob",
            "event_type": "connection.created",
            "data": {"access_token": made["access_token"]},
        },
    )

    with django_capture_on_commit_callbacks(execute=False):
        webhook_service.webhook_apply(event_id=event.pk)

    connection = Connection.objects.get(trackstar_connection_id=made["connection_id"])
    assert_entry(
        only_entry("connection.adopted"),
        actor=None,
        kind=TRACKSTAR,
        connection=connection,
        text="Trackstar reported ShipBob of Acme Outdoor, made in Trackstar's dashboard: added",
    )


def test_a_token_that_never_arrived_is_dockside_s_finding(customer):
    connection = Connection.objects.create(
        customer=customer,
        trackstar_connection_id="conn_lost",
        integration_name="shipbob",
        label="ShipBob",
        source=Connection.Source.PORTAL,
        status=Connection.Status.PENDING,
    )

    services.connection_mark_needs_reconnect(
        connection_id=connection.pk,
        reason="The access token did not reach us.",
        cause=Connection.ReconnectCause.TOKEN_MISSING,
    )

    assert_entry(
        only_entry("connection.needs_reconnect"),
        actor=None,
        kind=AuditEntry.ActorKind.SYSTEM,
        connection=connection,
        text="Dockside marked ShipBob of Acme Outdoor as needing a reconnect: "
        "the access token never reached us",
    )


def test_a_missing_permission_and_its_grant_are_trackstars_reports(trackstar, live):
    from connections.models import ResourceSync

    ResourceSync.objects.create(connection=live, resource="returns", interval_seconds=900)
    trackstar.break_connection(
        live.trackstar_connection_id, kind="missing_permission", resource="returns"
    )

    health_service.connection_health_refresh(connection_id=live.pk)
    health_service.connection_health_refresh(
        connection_id=live.pk
    )  # still missing: no second entry

    entry = only_entry("connection.permission_missing")
    assert entry.actor is None and entry.actor_kind == TRACKSTAR
    assert entry.connection_id == live.pk and entry.customer_id == live.customer_id
    assert audit_sentence(entry).startswith(
        "Trackstar reported no access to returns of ShipBob of Acme Outdoor: "
    )

    trackstar.repair_connection(live.trackstar_connection_id)
    health_service.connection_health_refresh(connection_id=live.pk)

    assert_entry(
        only_entry("connection.permission_granted"),
        actor=None,
        kind=TRACKSTAR,
        connection=live,
        text="Trackstar reported access to returns of ShipBob of Acme Outdoor granted again",
    )
