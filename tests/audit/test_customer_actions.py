"""What customers do to their connections is in the audit log: connect, reconnect (through
the portal or a magic link), rename, disconnect."""

from audit.models import AuditEntry
from connections.link import magic_links as magic_link_service
from connections.models import Connection
from tests.audit.helpers import assert_entry, connect, only_entry

CUSTOMER = AuditEntry.ActorKind.CUSTOMER


def test_a_portal_user_connecting_is_audited(trackstar, customer, portal_user):
    connection = connect(trackstar, customer, user=portal_user)

    assert_entry(
        only_entry("connection.connected"),
        actor=portal_user,
        kind=CUSTOMER,
        connection=connection,
        text="acme-user (customer) connected ShipBob of Acme Outdoor",
    )


def test_a_second_connection_is_named_as_the_list_names_it(trackstar, customer, portal_user):
    connect(trackstar, customer, user=portal_user)
    second = connect(trackstar, customer, user=portal_user)

    entry = AuditEntry.objects.filter(action="connection.connected", connection=second).get()
    assert second.label == "ShipBob 2"
    assert_entry(
        entry,
        actor=portal_user,
        kind=CUSTOMER,
        connection=second,
        text="acme-user (customer) connected ShipBob 2 of Acme Outdoor",
    )


def test_a_magic_link_visitor_connecting_is_audited_as_the_customer(trackstar, customer):
    link = magic_link_service.magic_link_issue(customer=customer, created_by=None).link

    connection = connect(trackstar, customer, source=Connection.Source.MAGIC_LINK, magic_link=link)

    entry = only_entry("connection.connected")
    assert_entry(
        entry,
        actor=None,  # nobody is logged in through a magic link
        kind=CUSTOMER,
        connection=connection,
        text="A visitor with a magic link (customer) connected ShipBob of Acme Outdoor",
    )
    assert entry.detail["source"] == "magic_link"


def test_reconnecting_is_audited(trackstar, customer, portal_user):
    connection = connect(trackstar, customer, user=portal_user)
    trackstar.break_connection(connection.trackstar_connection_id)
    Connection.objects.filter(pk=connection.pk).update(status=Connection.Status.NEEDS_RECONNECT)

    again = connect(trackstar, customer, user=portal_user, reinstall=connection)

    assert again == connection
    assert_entry(
        only_entry("connection.reconnected"),
        actor=portal_user,
        kind=CUSTOMER,
        connection=connection,
        text="acme-user (customer) reconnected ShipBob of Acme Outdoor",
    )
    assert AuditEntry.objects.filter(action="connection.connected").count() == 1


def test_an_owner_disconnecting_in_the_portal_is_audited(owner, portal_user, live):
    response = owner.post(f"/portal/connections/{live.pk}/disconnect")

    assert response.status_code in (200, 302)
    assert_entry(
        only_entry("connection.disconnected"),
        actor=portal_user,
        kind=CUSTOMER,
        connection=live,
        text="acme-user (customer) disconnected ShipBob of Acme Outdoor",
    )


def test_an_owner_renaming_in_the_portal_is_audited(owner, portal_user, live):
    owner.post(f"/portal/connections/{live.pk}/rename", {"label": "ShipBob EU"})

    assert_entry(
        only_entry("connection.renamed"),
        actor=portal_user,
        kind=CUSTOMER,
        connection=live,
        text="acme-user (customer) renamed ShipBob of Acme Outdoor to ShipBob EU",
    )


def test_renaming_to_the_same_name_writes_nothing(owner, live):
    owner.post(f"/portal/connections/{live.pk}/rename", {"label": "ShipBob"})

    assert not AuditEntry.objects.filter(action="connection.renamed").exists()
