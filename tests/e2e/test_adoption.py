"""A connection made in Trackstar's dashboard arrives by itself, end to end: the sandbox
sends connection.created to the live server, the worker adopts it under the customer it
names, and its data syncs after Trackstar's historical sync."""

import pytest

from connections.models import Connection, Order, UnassignedConnection
from tests.builders import make_customer
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_connection_made_in_trackstars_dashboard_arrives_under_its_customer(live_trackstar):
    customer = make_customer(name="Acme Outdoor")

    made = live_trackstar.dashboard_connect("shipbob", customer_id=customer.public_id)

    connection = wait_for(
        lambda: Connection.objects.filter(trackstar_connection_id=made["connection_id"]).first(),
        message="the adoption",
    )
    assert connection.customer == customer
    assert connection.source == Connection.Source.TRACKSTAR_DASHBOARD
    wait_for(
        lambda: Order.objects.filter(connection=connection).count() == 50,
        timeout=40,
        message="its orders to sync",
    )


def test_one_naming_no_customer_waits_in_the_unassigned_list(live_trackstar):
    made = live_trackstar.dashboard_connect("shiphero")

    unassigned = wait_for(
        lambda: UnassignedConnection.objects.filter(
            trackstar_connection_id=made["connection_id"]
        ).first(),
        message="the webhook",
    )
    assert unassigned.access_token == made["access_token"]
    assert not Connection.objects.exists()


def test_staff_assign_an_unassigned_connection_and_it_syncs(live_trackstar, admin_client):
    customer = make_customer(name="Bright Botanicals")
    made = live_trackstar.dashboard_connect("shiphero")
    unassigned = wait_for(
        lambda: UnassignedConnection.objects.filter(
            trackstar_connection_id=made["connection_id"]
        ).first(),
        message="the webhook",
    )

    response = admin_client.post(
        f"/admin/connections/unassignedconnection/{unassigned.pk}/assign/",
        {"customer": customer.pk},
    )

    assert response.status_code == 302
    connection = Connection.objects.get(trackstar_connection_id=made["connection_id"])
    assert connection.customer == customer and connection.status == "active"
    assert live_trackstar.connection(made["connection_id"])["customer_id"] == customer.public_id
    wait_for(
        lambda: Order.objects.filter(connection=connection).count() == 50,
        timeout=40,
        message="its orders to sync",
    )
