"""Every portal URL, requested as a user of another customer: 404, and lists never leak."""

import pytest

from connections.models import AuthCodeExchange, Connection
from tests.builders import make_connection, make_customer, make_user


@pytest.fixture
def theirs(other_customer):
    connection = make_connection(
        customer=other_customer, integration_name="deposco", trackstar_connection_id="conn_theirs"
    )
    exchange = AuthCodeExchange.objects.create(
        customer=other_customer,
        auth_code_hash="h" * 64,
        auth_code="ac",
        integration_name="deposco",
        source="portal",
    )
    return connection, exchange


def test_portal_lists_only_my_connections(client, portal_user, customer, theirs):
    make_connection(
        customer=customer, integration_name="shipbob", trackstar_connection_id="conn_mine"
    )
    client.force_login(portal_user)

    page = client.get("/portal/").content.decode()
    table = client.get("/portal/connections/table").content.decode()

    for html in (page, table):
        assert 'data-status="active"' in html
        assert "Shipbob" in html or "ShipBob" in html
        assert "conn_theirs" not in html and "Deposco" not in html


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_customers_connection_is_404(client, portal_user, theirs, method):
    connection, _ = theirs
    client.force_login(portal_user)

    response = getattr(client, method)(f"/portal/connections/{connection.pk}/disconnect")

    assert response.status_code == 404
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE


def test_another_customers_exchange_is_404(client, portal_user, theirs):
    _, exchange = theirs
    client.force_login(portal_user)

    response = client.get(f"/portal/exchanges/{exchange.public_id}")

    assert response.status_code == 404


def test_reconnecting_another_customers_connection_is_404(client, portal_user, theirs):
    connection, _ = theirs
    client.force_login(portal_user)

    response = client.post(
        "/portal/get-link-token", {"connection_id": connection.pk}, content_type="application/json"
    )

    assert response.status_code == 404


def test_portal_requires_login(client, db):
    response = client.get("/portal/")

    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/")


def test_a_user_of_several_customers_picks_one(client, customer, other_customer):
    user = make_user(username="consultant", customer=customer)
    user.memberships.create(customer=other_customer)
    client.force_login(user)

    assert client.get("/portal/")["Location"] == "/portal/choose/"
    choose = client.get("/portal/choose/").content.decode()
    assert customer.name in choose and other_customer.name in choose

    client.post("/portal/choose/", {"customer": other_customer.pk})
    page = client.get("/portal/")
    assert page.status_code == 200
    assert page.context["customer"] == other_customer


def test_a_user_cannot_pick_a_customer_they_do_not_belong_to(client, portal_user):
    stranger = make_customer(name="Stranger Co")
    client.force_login(portal_user)

    response = client.post("/portal/choose/", {"customer": stranger.pk})

    assert response.status_code == 404


def test_disconnecting_twice_says_it_is_already_done(client, portal_user, customer):
    gone = make_connection(customer=customer, status=Connection.Status.DISCONNECTED)
    client.force_login(portal_user)

    response = client.post(f"/portal/connections/{gone.pk}/disconnect", follow=True)

    assert "already disconnected" in response.content.decode()
