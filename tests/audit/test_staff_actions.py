"""What staff do to a connection is in the audit log, once per change."""

from audit.models import AuditEntry
from connections import services
from connections.link import adoption as adoption_service
from connections.models import Connection, UnassignedConnection
from tests.audit.helpers import assert_entry, connect, only_entry
from tests.builders import make_connection

STAFF = AuditEntry.ActorKind.STAFF
CHANGELIST = "/admin/connections/connection/"


def action(staff, name, connection, **data):
    return staff.post(CHANGELIST, {"action": name, "_selected_action": [connection.pk], **data})


def test_pausing_names_the_connection_as_the_list_does(staff, jane, customer):
    make_connection(customer=customer, label="ShipBob")
    second = make_connection(customer=customer, label="ShipBob 2")

    action(staff, "pause_syncing", second)
    action(staff, "pause_syncing", second)  # already paused: nothing changes

    assert_entry(
        only_entry("connection.sync_paused"),
        actor=jane,
        kind=STAFF,
        connection=second,
        text="Jane Doe (staff) paused ShipBob 2 of Acme Outdoor",
    )


def test_resuming_is_audited(staff, jane, customer):
    connection = make_connection(customer=customer, label="ShipBob", sync_paused=True)

    action(staff, "resume_syncing", connection)

    assert_entry(
        only_entry("connection.sync_resumed"),
        actor=jane,
        kind=STAFF,
        connection=connection,
        text="Jane Doe (staff) resumed ShipBob of Acme Outdoor",
    )


def test_resync_is_audited(jane, live):
    services.connection_resync(connection=live, actor=jane, resources=["orders"])

    assert_entry(
        only_entry("connection.force_sync_requested"),
        actor=jane,
        kind=STAFF,
        connection=live,
        text="Jane Doe (staff) resynced ShipBob of Acme Outdoor (orders)",
    )


def test_disconnecting_in_admin_is_audited(staff, jane, live):
    action(staff, "disconnect", live, confirm="yes")

    assert Connection.objects.get(pk=live.pk).status == Connection.Status.DISCONNECTED
    assert_entry(
        only_entry("connection.disconnected"),
        actor=jane,
        kind=STAFF,
        connection=live,
        text="Jane Doe (staff) disconnected ShipBob of Acme Outdoor",
    )


def test_sending_a_reconnect_link_is_audited(staff, jane, customer):
    connection = make_connection(customer=customer, label="ShipBob")

    action(staff, "send_reconnect_link", connection)

    assert_entry(
        only_entry("magic_link.issued"),
        actor=jane,
        kind=STAFF,
        connection=connection,
        text="Jane Doe (staff) sent a reconnect link for ShipBob of Acme Outdoor "
        "to ops@acme-outdoor.example",
    )


def test_renaming_is_audited(jane, customer):
    connection = make_connection(customer=customer, label="ShipBob")

    services.connection_rename(connection=connection, label="ShipBob US", actor=jane)

    assert_entry(
        only_entry("connection.renamed"),
        actor=jane,
        kind=STAFF,
        connection=connection,
        text="Jane Doe (staff) renamed ShipBob of Acme Outdoor to ShipBob US",
    )


def test_staff_connecting_for_a_customer_is_audited_as_staff(trackstar, jane, customer):
    connection = connect(trackstar, customer, user=jane, source=Connection.Source.STAFF)

    assert_entry(
        only_entry("connection.connected"),
        actor=jane,
        kind=STAFF,
        connection=connection,
        text="Jane Doe (staff) connected ShipBob of Acme Outdoor",
    )


def test_importing_a_token_is_audited(trackstar, jane, customer):
    made = trackstar.dashboard_connect("shipbob", webhook=False)

    connection = services.connection_import(
        customer=customer, access_token=made["access_token"], actor=jane
    )

    assert_entry(
        only_entry("connection.imported"),
        actor=jane,
        kind=STAFF,
        connection=connection,
        text="Jane Doe (staff) imported ShipBob of Acme Outdoor from an access token",
    )


def test_assigning_an_unassigned_connection_is_one_entry(
    trackstar, jane, customer, django_capture_on_commit_callbacks
):
    made = trackstar.dashboard_connect("shipbob", webhook=False)
    unassigned = UnassignedConnection.objects.create(
        trackstar_connection_id=made["connection_id"],
        integration_name="shipbob",
        access_token=made["access_token"],
        seen_via=UnassignedConnection.SeenVia.RECONCILE,
    )

    with django_capture_on_commit_callbacks(execute=False):
        connection = adoption_service.unassigned_assign(
            unassigned=unassigned, customer=customer, actor=jane
        )

    # Not also a "Trackstar added…": staff did it.
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["unassigned.assigned"]
    assert_entry(
        only_entry("unassigned.assigned"),
        actor=jane,
        kind=STAFF,
        connection=connection,
        text=f"Jane Doe (staff) assigned Trackstar connection {made['connection_id']} "
        "to Acme Outdoor as ShipBob",
    )


def test_deleting_an_unassigned_connection_is_audited(trackstar, jane):
    made = trackstar.dashboard_connect("shiphero", webhook=False)
    unassigned = UnassignedConnection.objects.create(
        trackstar_connection_id=made["connection_id"],
        integration_name="shiphero",
        access_token=made["access_token"],
        seen_via=UnassignedConnection.SeenVia.RECONCILE,
    )

    adoption_service.unassigned_delete(unassigned=unassigned, actor=jane)

    entry = only_entry("unassigned.deleted")
    assert entry.actor == jane and entry.actor_kind == STAFF
    from audit.sentences import audit_sentence

    assert audit_sentence(entry) == (
        f"Jane Doe (staff) deleted the unassigned Trackstar connection {made['connection_id']}"
    )


def test_pausing_a_paused_connection_writes_nothing(jane, customer):
    connection = make_connection(customer=customer, label="ShipBob")

    services.connection_set_paused(connection=connection, paused=True, actor=jane)
    services.connection_set_paused(connection=connection, paused=True, actor=jane)

    assert AuditEntry.objects.filter(action="connection.sync_paused").count() == 1
    assert Connection.objects.get(pk=connection.pk).sync_paused is True
