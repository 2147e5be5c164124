"""Pages that embed Trackstar Link let its OAuth popups talk back to them; others do not."""

import pytest

from connections import services

ALLOW_POPUPS = "same-origin-allow-popups"
COOP = "Cross-Origin-Opener-Policy"


def test_the_portal_index_allows_link_popups(client, portal_user):
    client.force_login(portal_user)

    response = client.get("/portal/")

    assert response.status_code == 200
    assert response[COOP] == ALLOW_POPUPS


def test_the_magic_link_page_allows_link_popups(client, customer):
    issued = services.magic_link_issue(customer=customer, created_by=None)

    response = client.get(issued.url[issued.url.index("/connect/") :])

    assert response.status_code == 200
    assert response[COOP] == ALLOW_POPUPS


def test_the_admin_connect_page_allows_link_popups(client, staff_user, customer):
    client.force_login(staff_user)

    response = client.get(f"/admin/customers/customer/{customer.pk}/connect/")

    assert response.status_code == 200
    assert response[COOP] == ALLOW_POPUPS


@pytest.mark.parametrize("url", ["/portal/inventory/", "/portal/connections/table"])
def test_other_portal_pages_keep_the_strict_policy(client, portal_user, url):
    client.force_login(portal_user)

    response = client.get(url)

    assert response.status_code == 200
    assert response[COOP] == "same-origin"


@pytest.mark.parametrize("url", ["/admin/", "/admin/customers/customer/{pk}/change/"])
def test_other_admin_pages_keep_the_strict_policy(client, staff_user, customer, url):
    client.force_login(staff_user)

    response = client.get(url.format(pk=customer.pk))

    assert response.status_code == 200
    assert response[COOP] == "same-origin"


def test_the_login_and_unavailable_link_pages_keep_the_strict_policy(client, db):
    assert client.get("/portal/login/")[COOP] == "same-origin"
    assert client.get("/connect/no-such-token/")[COOP] == "same-origin"
