"""Each connection has a name people can read ("ShipBob", "ShipBob 2", "ShipBob EU"): owners
rename it in the portal, and every list and data page shows it. Pages that connect a WMS
know which ones the customer already has, to offer "Reconnect it" first."""

import json

import pytest
from django.test import Client

from audit.models import AuditEntry
from connections import integrations
from connections.link import endpoints as link_endpoints
from connections.link import magic_links as magic_link_service
from connections.models import AuthCodeExchange, Connection, MagicLink
from connections.sync.upsert import records_upsert
from customers.models import Membership
from portal.views import connect as connect_views
from portal.views import dashboard as dashboard_views
from portal.views import data as data_views
from tests.builders import make_connection, make_link_token, make_user

MAGIC = {"HTTP_X_DOCKSIDE_ACTOR": "magic-link"}
CATALOG = {
    "shipbob": {"integration_name": "shipbob", "display_name": "ShipBob", "logo_url": "/s.png"},
    "shiphero": {"integration_name": "shiphero", "display_name": "ShipHero", "logo_url": ""},
    "sandbox": {"integration_name": "sandbox", "display_name": "Sandbox", "logo_url": ""},
}


@pytest.fixture
def catalog(monkeypatch):
    """Trackstar's integration list, as the pages get it (no sandbox needed)."""
    for module in (link_endpoints, dashboard_views, connect_views, data_views, integrations):
        monkeypatch.setattr(module, "integration_catalog", lambda: CATALOG)
    return CATALOG


@pytest.fixture
def owner(client, portal_user):
    client.force_login(portal_user)
    return client


@pytest.fixture
def member(customer):
    client = Client()
    client.force_login(
        make_user(username="acme-member", customer=customer, role=Membership.Role.MEMBER)
    )
    return client


def rename(client, connection, label):
    return client.post(f"/portal/connections/{connection.pk}/rename", {"label": label})


def link_config(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="link-config" type="application/json">') + len(
        '<script id="link-config" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


# --- Renaming -------------------------------------------------------------------------------


def test_an_owner_renames_a_connection(owner, connection, portal_user, catalog):
    response = rename(owner, connection, "  ShipBob   EU ")

    assert response.status_code == 302
    assert response["Location"] == "/portal/"
    connection.refresh_from_db()
    assert connection.label == "ShipBob EU"
    entry = AuditEntry.objects.get(action="connection.renamed")
    assert entry.actor == portal_user
    page = owner.get("/portal/").content.decode()
    assert "ShipBob is now called ShipBob EU." in page
    assert '<span class="wms-name">ShipBob EU</span>' in page


def test_the_rename_form_is_offered_to_owners_only(owner, member, connection):
    assert f"/portal/connections/{connection.pk}/rename" in owner.get("/portal/").content.decode()
    assert (
        f"/portal/connections/{connection.pk}/rename" not in member.get("/portal/").content.decode()
    )
    assert owner.get(f"/portal/connections/{connection.pk}/rename").status_code == 200


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_member_may_not_rename(member, connection, method):
    response = getattr(member, method)(
        f"/portal/connections/{connection.pk}/rename", {"label": "Mine now"}
    )

    assert response.status_code == 403
    connection.refresh_from_db()
    assert connection.label == ""
    assert not AuditEntry.objects.filter(action="connection.renamed").exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_customers_connection_is_404(owner, other_customer, method):
    theirs = make_connection(customer=other_customer, label="Globex ShipBob")

    response = getattr(owner, method)(
        f"/portal/connections/{theirs.pk}/rename", {"label": "Taken over"}
    )

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.label == "Globex ShipBob"


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("", "Give the connection a name."),
        ("   ", "Give the connection a name."),
        ("x" * 101, "Keep the name under 100 characters."),
        ("Ship\x00Bob", "Null characters are not allowed."),
        ("Ship\x07Bob", "Use letters, digits, spaces and punctuation only."),
    ],
)
def test_a_bad_name_is_refused_with_a_clear_message(owner, connection, label, message):
    connection.label = "ShipBob"
    connection.save()

    response = rename(owner, connection, label)

    assert response.status_code == 400
    assert message in response.content.decode()
    connection.refresh_from_db()
    assert connection.label == "ShipBob"
    assert not AuditEntry.objects.filter(action="connection.renamed").exists()


def test_an_empty_post_is_refused(owner, connection):
    response = owner.post(f"/portal/connections/{connection.pk}/rename")

    assert response.status_code == 400
    assert "Give the connection a name." in response.content.decode()


def test_renaming_needs_the_csrf_token(portal_user, connection):
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_user)

    response = rename(client, connection, "ShipBob EU")

    assert response.status_code == 403
    connection.refresh_from_db()
    assert connection.label == ""


def test_renaming_needs_a_login(client, connection):
    response = rename(client, connection, "ShipBob EU")

    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/")
    connection.refresh_from_db()
    assert connection.label == ""


# --- Names on every page ----------------------------------------------------------------------


def test_data_pages_tell_two_connections_of_one_wms_apart(owner, customer, catalog):
    first = make_connection(customer=customer, label="ShipBob")
    second = make_connection(customer=customer, label="ShipBob 2")
    for n, connection in enumerate((first, second)):
        records_upsert(
            connection=connection,
            resource="inventory",
            records=[{"id": f"inv_{n}", "sku": f"SKU-{n}", "name": "Tent"}],
        )
        records_upsert(
            connection=connection,
            resource="orders",
            records=[{"id": f"ord_{n}", "order_number": f"#{n}", "status": "open"}],
        )

    for url in ("/portal/inventory/", "/portal/orders/"):
        html = owner.get(url).content.decode()
        cells = [part.split("<", 1)[0] for part in html.split('data-th="WMS">')[1:]]
        assert sorted(cells) == ["ShipBob", "ShipBob 2"], url
    table = owner.get("/portal/connections/table").content.decode()
    assert 'data-label="ShipBob 2"' in table and 'data-label="ShipBob"' in table


def test_a_connection_without_a_label_shows_its_wms_name(owner, connection, catalog):
    html = owner.get("/portal/").content.decode()

    assert '<span class="wms-name">ShipBob</span>' in html


def test_disconnecting_says_which_connection(owner, customer, catalog):
    connection = make_connection(customer=customer, label="ShipBob EU")

    page = owner.get(f"/portal/connections/{connection.pk}/disconnect").content.decode()

    assert "Disconnect ShipBob EU?" in page


# --- What the connect pages know of existing connections -------------------------------------


def test_the_portal_offers_its_own_picker_and_the_connections_to_reconnect(
    owner, customer, other_customer, catalog
):
    live = make_connection(customer=customer, label="ShipBob")
    broken = make_connection(
        customer=customer, label="ShipBob 2", status=Connection.Status.NEEDS_RECONNECT
    )
    make_connection(customer=customer, label="Old", status=Connection.Status.DISCONNECTED)
    make_connection(customer=other_customer, label="Theirs")

    config = link_config(owner.get("/portal/"))

    # Alphabetical; Trackstar's test WMS is offered outside production only (as Link does).
    assert [i["slug"] for i in config["integrations"]] == ["shipbob", "shiphero", "sandbox"]
    assert config["existing"] == [
        {
            "ref": str(live.pk),
            "buttonId": f"reconnect-{live.pk}",
            "integration": "shipbob",
            "label": "ShipBob",
            "status": "active",
        },
        {
            "ref": str(broken.pk),
            "buttonId": f"reconnect-{broken.pk}",
            "integration": "shipbob",
            "label": "ShipBob 2",
            "status": "needs_reconnect",
        },
    ]


def test_a_magic_link_page_names_the_connections_and_reveals_no_ids(client, customer, catalog):

    existing = make_connection(customer=customer, label="ShipBob EU")
    make_connection(customer=customer, integration_name="shiphero")
    issued = magic_link_service.magic_link_issue(
        customer=customer, created_by=None, allowed_integrations=["shipbob"]
    )

    response = client.get(issued.url[issued.url.index("/connect/") :], follow=True)

    config = link_config(response)
    assert [i["slug"] for i in config["integrations"]] == ["shipbob"]  # the allow list
    [offered] = config["existing"]  # ShipHero is not offered by this link
    assert offered["label"] == "ShipBob EU" and offered["integration"] == "shipbob"
    assert offered["ref"].startswith("r_") and offered["status"] == ""
    assert existing.trackstar_connection_id not in response.content.decode()
    assert existing.pk not in offered.values() and str(existing.pk) not in offered.values()


def test_a_reinstall_link_offers_nothing_else(client, customer, catalog):

    target = make_connection(customer=customer, label="ShipBob EU")
    make_connection(customer=customer, label="ShipBob 2")
    issued = magic_link_service.magic_link_issue(
        customer=customer, created_by=None, reinstall_connection=target
    )

    response = client.get(issued.url[issued.url.index("/connect/") :], follow=True)

    assert link_config(response)["existing"] == []
    assert "Your ShipBob EU connection stopped working." in response.content.decode()


def _open_link(client, customer, **kwargs):

    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None, **kwargs)
    return link_config(client.get(issued.url[issued.url.index("/connect/") :], follow=True))


def _store(client, link_token="lt_never_minted", **body):
    body = {"auth_code": "ac_1", "integration_name": "shipbob", "link_token": link_token, **body}
    return client.post(
        "/portal/store-token",
        json.dumps(body),
        content_type="text/plain",
        **MAGIC,
    )


def test_a_magic_link_reconnects_the_connection_its_page_offered(
    client, customer, catalog, django_capture_on_commit_callbacks
):
    existing = make_connection(customer=customer)
    [offered] = _open_link(client, customer)["existing"]

    with django_capture_on_commit_callbacks(execute=False):
        response = _store(
            client,
            # The one get-link-token minted for this reconnect.
            link_token=make_link_token(
                customer=customer,
                reinstall=existing,
                magic_link=MagicLink.objects.get(customer=customer),
            ),
            connection_id=offered["ref"],
        )

    assert response.status_code == 202
    assert AuthCodeExchange.objects.get().reinstall_connection == existing


def test_a_reference_from_another_link_reconnects_nothing(client, customer, catalog):
    make_connection(customer=customer)
    [offered] = _open_link(Client(), customer)["existing"]  # another visitor's link
    _open_link(client, customer)

    response = _store(client, connection_id=offered["ref"])

    assert response.status_code == 404
    assert AuthCodeExchange.objects.count() == 0


def test_a_magic_link_cannot_reconnect_outside_its_allow_list_or_a_disconnected_one(
    client, customer, catalog
):
    from connections.link.services import magic_link_reconnect_ref

    shiphero = make_connection(customer=customer, integration_name="shiphero")
    gone = make_connection(customer=customer, status=Connection.Status.DISCONNECTED)
    _open_link(client, customer, allowed_integrations=["shipbob", "shiphero"])
    link = MagicLink.objects.get()
    link.allowed_integrations = ["shipbob"]
    link.save()

    for connection in (shiphero, gone):
        response = _store(client, connection_id=magic_link_reconnect_ref(link, connection))
        assert response.status_code == 404
    assert AuthCodeExchange.objects.count() == 0


def test_the_staff_connect_page_lists_labels_and_trackstar_ids(
    client, staff_user, customer, catalog
):
    connection = make_connection(customer=customer, label="ShipBob EU")
    client.force_login(staff_user)

    response = client.get(f"/admin/customers/customer/{customer.pk}/connect/")

    html = response.content.decode()
    assert "ShipBob EU</a>" in html and connection.trackstar_connection_id in html
    [existing] = link_config(response)["existing"]
    assert existing["ref"] == str(connection.pk) and existing["label"] == "ShipBob EU"


def test_two_live_connections_cannot_share_a_name(owner, connection):
    make_connection(customer=connection.customer, label="ShipBob EU")

    response = rename(owner, connection, "shipbob eu")

    assert response.status_code == 400
    assert "already called" in response.content.decode()
