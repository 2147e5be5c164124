"""The "Issue a magic link" form: the reconnect list follows the chosen customer."""

from connections.link import magic_links as magic_link_service
from connections.models import Connection, MagicLink
from tests.builders import make_connection

from .conftest import staff_with

ADD = "/admin/connections/magiclink/add/"
CHOICES = "/admin/connections/magiclink/reconnect-choices/"


def test_reconnect_choices_are_the_chosen_customers_only(staff, customer, other_customer):
    mine = make_connection(customer=customer, label="ShipBob 2")
    make_connection(customer=customer, status=Connection.Status.DISCONNECTED, label="Old one")
    theirs = make_connection(customer=other_customer, label="Globex WMS")

    form = staff.get(ADD, {"customer": customer.pk}).context["form"]

    offered = {c.pk for c in form.fields["reinstall_connection"].queryset}
    assert offered == {mine.pk}
    html = staff.get(ADD, {"customer": customer.pk}).content.decode()
    assert "Reconnect an existing connection" in html
    assert "No: connect a new WMS" in html
    assert "ShipBob 2" in html and "Globex WMS" not in html and "Old one" not in html
    assert f'data-reconnect-choices-url="{CHOICES}"' in html
    assert "staff/magic-link-form.js" in html
    assert theirs.pk not in offered


def test_the_form_opened_from_a_connection_picks_its_customer(staff, customer):
    mine = make_connection(customer=customer, label="ShipBob 2")

    form = staff.get(ADD, {"reinstall_connection": mine.pk}).context["form"]

    assert form.initial["customer"] == customer.pk
    assert list(form.fields["reinstall_connection"].queryset) == [mine]


def test_the_endpoint_lists_one_customers_connections(staff, customer, other_customer):
    needs = make_connection(
        customer=customer, label="ShipBob 2", status=Connection.Status.NEEDS_RECONNECT
    )
    make_connection(customer=other_customer, label="Globex WMS")

    body = staff.get(CHOICES, {"customer": customer.pk}).json()

    assert body["connections"] == [{"id": needs.pk, "name": "ShipBob 2 (needs reconnect)"}]


def test_the_endpoint_refuses_garbage_and_unknown_customers(staff):
    assert staff.get(CHOICES).status_code == 400
    assert staff.get(CHOICES, {"customer": "²"}).status_code == 400
    assert staff.get(CHOICES, {"customer": "99999999999999999999999"}).status_code == 400
    assert staff.get(CHOICES, {"customer": "999999"}).status_code == 404


def test_the_endpoint_is_for_staff_who_may_issue_links(client, customer, portal_user):
    client.force_login(portal_user)
    assert client.get(CHOICES, {"customer": customer.pk}).status_code == 302  # admin login

    client.force_login(staff_with("view_magiclink"))
    assert client.get(CHOICES, {"customer": customer.pk}).status_code == 403


def test_reconnecting_another_customers_connection_is_refused(staff, customer, other_customer):
    theirs = make_connection(customer=other_customer, label="Globex WMS")

    response = staff.post(
        ADD,
        {
            "customer": customer.pk,
            "expires_in_days": 7,
            "max_uses": 1,
            "reinstall_connection": theirs.pk,
        },
    )

    assert response.status_code == 200
    assert "reinstall_connection" in response.context["form"].errors
    assert MagicLink.objects.count() == 0


def test_a_reconnect_link_for_the_customers_own_connection_is_issued(staff, customer):
    mine = make_connection(customer=customer, label="ShipBob 2")

    response = staff.post(
        ADD,
        {
            "customer": customer.pk,
            "expires_in_days": 7,
            "max_uses": 1,
            "reinstall_connection": mine.pk,
        },
    )

    assert response.status_code == 302
    assert MagicLink.objects.get().reinstall_connection == mine


def test_the_links_page_names_the_wmses_and_links_the_connection_it_made(
    staff, customer, monkeypatch
):
    from connections.models import AuthCodeExchange

    monkeypatch.setattr(
        "connections.integrations.integration_catalog",
        lambda: {"shipbob": {"display_name": "ShipBob"}, "shiphero": {"display_name": "ShipHero"}},
    )
    link = magic_link_service.magic_link_issue(
        customer=customer, created_by=None, allowed_integrations=["shipbob", "shiphero"]
    ).link
    made = make_connection(customer=customer, label="ShipBob 3", source="magic_link")
    AuthCodeExchange.objects.create(
        customer=customer,
        auth_code_hash="x" * 64,
        integration_name="shipbob",
        source="magic_link",
        magic_link=link,
        connection=made,
        status=AuthCodeExchange.Status.SUCCEEDED,
    )

    html = staff.get(f"/admin/connections/magiclink/{link.pk}/change/").content.decode()

    assert "ShipBob, ShipHero" in html
    assert f'href="/admin/connections/connection/{made.pk}/change/">ShipBob 3</a>' in html
