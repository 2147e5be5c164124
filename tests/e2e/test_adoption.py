"""A connection made in Trackstar's dashboard arrives by itself, end to end: the sandbox
sends connection.created to the live server, the worker adopts it under the customer it
names, and its data syncs after Trackstar's historical sync."""

import pytest

from connections.models import Connection, Order, UnassignedConnection
from tests.builders import make_customer
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


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
