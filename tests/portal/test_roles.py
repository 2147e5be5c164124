"""Roles in the portal: owners connect, reconnect and disconnect; members read, and connect
only when their customer allows it. The page hides what a role cannot do and the server
refuses it: 403 for this customer's objects, 404 still for another customer's."""

import json

import pytest
from django.test import Client

from connections.link import magic_links as magic_link_service
from connections.models import AuthCodeExchange, Connection
from customers.models import Membership
from tests.builders import make_connection, make_user

GET_LINK_TOKEN = "/portal/get-link-token"
STORE_TOKEN = "/portal/store-token"


def post_json(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


@pytest.fixture
def member(customer):
    client = Client()
    client.force_login(
        make_user(username="acme-member", customer=customer, role=Membership.Role.MEMBER)
    )
    return client


@pytest.fixture
def owner(client, portal_user):
    assert portal_user.memberships.get().role == Membership.Role.OWNER
    client.force_login(portal_user)
    return client


@pytest.fixture
def live(customer, trackstar):
    """A connection that exists at Trackstar (the sandbox), so a DELETE there would show."""
    made = trackstar.connect("shipbob", {"api_key": "sk_1"})
    return make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
    )


def at_trackstar(trackstar, connection) -> bool:
    response = trackstar.get(f"/_sandbox/connections/{connection.trackstar_connection_id}")
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def store_body(trackstar, link_token: str) -> dict:
    """What Link's onSuccess sends: an auth code Trackstar issued for that link token."""
    return {
        "auth_code": trackstar.authorize(link_token, "shipbob", {"api_key": "sk_1"}),
        "integration_name": "shipbob",
        "link_token": link_token,
    }


# --- Disconnect --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_member_cannot_disconnect(member, live, trackstar, method):
    response = getattr(member, method)(f"/portal/connections/{live.pk}/disconnect")

    assert response.status_code == 403
    # A page that says why and leads back, not a bare "403 Forbidden".
    page = response.content.decode()
    assert "Only an owner of this account can disconnect a WMS." in page
    assert 'href="/portal/"' in page
    live.refresh_from_db()
    assert live.status == Connection.Status.ACTIVE and live.access_token
    assert at_trackstar(trackstar, live)  # no DELETE went to Trackstar


def test_an_owner_disconnects(owner, live, trackstar):
    response = owner.post(f"/portal/connections/{live.pk}/disconnect")

    assert response.status_code == 302
    live.refresh_from_db()
    assert live.status == Connection.Status.DISCONNECTED
    assert not at_trackstar(trackstar, live)


def test_a_member_disconnecting_another_customers_connection_is_still_404(member, other_customer):
    theirs = make_connection(customer=other_customer)

    response = member.post(f"/portal/connections/{theirs.pk}/disconnect")

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Connection.Status.ACTIVE


def test_a_member_cannot_disconnect_even_when_members_may_connect(member, customer, connection):
    customer.members_can_connect = True
    customer.save()

    response = member.post(f"/portal/connections/{connection.pk}/disconnect")

    assert response.status_code == 403
    connection.refresh_from_db()
    assert connection.status == Connection.Status.ACTIVE


# --- Connect and reconnect through the Link endpoints ----------------------------------------


def test_a_member_cannot_get_a_link_token_or_store_an_auth_code(member, owner, trackstar):
    refused = post_json(member, GET_LINK_TOKEN, {})
    assert refused.status_code == 403
    assert "owner" in refused.json()["error"]

    # Even with an auth code Trackstar really issued (here: from the owner's link token).
    link_token = post_json(owner, GET_LINK_TOKEN, {}).json()["linkToken"]
    stored = post_json(member, STORE_TOKEN, store_body(trackstar, link_token))

    assert stored.status_code == 403
    assert AuthCodeExchange.objects.count() == 0


def test_an_owner_connects(owner, customer, trackstar, django_capture_on_commit_callbacks):
    token = post_json(owner, GET_LINK_TOKEN, {})
    assert token.status_code == 200
    body = store_body(trackstar, token.json()["linkToken"])

    with django_capture_on_commit_callbacks(execute=False):
        stored = post_json(owner, STORE_TOKEN, body)

    assert stored.status_code == 202
    assert AuthCodeExchange.objects.get().customer == customer


def test_an_owner_reconnects(owner, live):
    response = post_json(owner, GET_LINK_TOKEN, {"connection_id": live.pk})

    assert response.status_code == 200 and response.json()["linkToken"]


def test_a_member_reconnecting_another_customers_connection_is_still_404(member, other_customer):
    theirs = make_connection(customer=other_customer)

    for url in (GET_LINK_TOKEN, STORE_TOKEN):
        response = post_json(
            member,
            url,
            {
                "auth_code": "ac_x",
                "integration_name": "shipbob",
                "link_token": "lt_x",
                "connection_id": theirs.pk,
            },
        )
        assert response.status_code == 404, url
    assert AuthCodeExchange.objects.count() == 0


def test_members_can_connect_lets_a_member_connect_but_not_reconnect(
    member, customer, connection, trackstar, django_capture_on_commit_callbacks
):
    customer.members_can_connect = True
    customer.save()

    token = post_json(member, GET_LINK_TOKEN, {})
    assert token.status_code == 200
    body = store_body(trackstar, token.json()["linkToken"])
    with django_capture_on_commit_callbacks(execute=False):
        stored = post_json(member, STORE_TOKEN, body)
    assert stored.status_code == 202
    assert AuthCodeExchange.objects.count() == 1

    reconnect = {"connection_id": connection.pk}
    assert post_json(member, GET_LINK_TOKEN, reconnect).status_code == 403
    refused = post_json(
        member,
        STORE_TOKEN,
        {
            **store_body(trackstar, post_json(member, GET_LINK_TOKEN, {}).json()["linkToken"]),
            **reconnect,
        },
    )
    assert refused.status_code == 403
    assert AuthCodeExchange.objects.count() == 1


def test_a_magic_link_is_not_subject_to_the_portal_role(
    member, customer, trackstar, django_capture_on_commit_callbacks
):
    """A link staff issued grants connecting, whoever opens it (even a logged-in member)."""

    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None)
    token = issued.url.rstrip("/").rsplit("/", 1)[-1]
    assert member.get(f"/connect/{token}/", follow=True).status_code == 200
    magic = {"HTTP_X_DOCKSIDE_ACTOR": "magic-link"}

    response = member.post(GET_LINK_TOKEN, "{}", content_type="application/json", **magic)

    assert response.status_code == 200


# --- What the page shows ---------------------------------------------------------------------


def test_the_portal_shows_a_member_no_connect_reconnect_or_disconnect(member, customer):
    connection = make_connection(customer=customer, status=Connection.Status.NEEDS_RECONNECT)

    page = member.get("/portal/")
    table = member.get("/portal/connections/table")

    assert page.status_code == table.status_code == 200
    html = page.content.decode()
    assert f'data-connection-id="{connection.pk}"' in html  # they still see it
    assert 'id="connect-wms"' not in html
    assert 'id="link-config"' not in html and "connect.js" not in html
    assert "An owner of your account connects" in html
    for fragment in (html, table.content.decode()):
        assert "Reconnect" not in fragment
        assert f"/portal/connections/{connection.pk}/disconnect" not in fragment
        assert "Rename" not in fragment


def test_the_portal_shows_an_owner_every_control(owner, customer):
    connection = make_connection(customer=customer)

    html = owner.get("/portal/").content.decode()

    assert 'id="connect-wms"' in html and 'id="link-config"' in html
    assert 'aria-label="Reconnect' in html
    assert f"/portal/connections/{connection.pk}/disconnect" in html
    assert "Rename" in html


def test_a_member_who_may_connect_sees_connect_only(member, customer):
    customer.members_can_connect = True
    customer.save()
    connection = make_connection(customer=customer)

    html = member.get("/portal/").content.decode()

    assert 'id="connect-wms"' in html
    assert '"canReconnect": false' in html  # the picker offers no "Reconnect it"
    assert 'aria-label="Reconnect' not in html
    assert f"/portal/connections/{connection.pk}/disconnect" not in html
