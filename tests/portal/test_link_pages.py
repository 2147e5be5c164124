"""Pages that embed Trackstar Link let its OAuth popups talk back to them; others do not.
Every page has a Content-Security-Policy that lets in our origin and Link's, nothing else."""

import pytest

from connections.link import magic_links as magic_link_service

ALLOW_POPUPS = "same-origin-allow-popups"
COOP = "Cross-Origin-Opener-Policy"


def test_the_portal_index_allows_link_popups(client, portal_user):
    client.force_login(portal_user)

    response = client.get("/portal/")

    assert response.status_code == 200
    assert response[COOP] == ALLOW_POPUPS


def test_the_magic_link_page_allows_link_popups(client, customer):
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None)

    response = client.get(issued.url[issued.url.index("/connect/") :], follow=True)

    assert response.status_code == 200
    assert response.request["PATH_INFO"] == "/connect/"  # the page, without the token
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


# --- Content-Security-Policy -----------------------------------------------------------------

LINK_SCRIPT = "https://link.trackstar.test/main.js"


def _csp(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def _magic_link_page(client, customer):
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None)
    return client.get(issued.url[issued.url.index("/connect/") :], follow=True)


def _portal(client, portal_user):
    client.force_login(portal_user)
    return client.get("/portal/")


def _admin_connect(client, staff_user, customer):
    client.force_login(staff_user)
    return client.get(f"/admin/customers/customer/{customer.pk}/connect/")


def _admin_index(client, staff_user, customer):
    client.force_login(staff_user)
    return client.get("/admin/")


@pytest.mark.parametrize("open_page", [_portal, _magic_link_page, _admin_connect, _admin_index])
def test_pages_enforce_a_policy_that_names_links_origin_and_runs_no_inline_script(
    client, settings, portal_user, staff_user, customer, open_page
):
    settings.TRACKSTAR_LINK_SCRIPT_URL = LINK_SCRIPT
    args = {
        _portal: (portal_user,),
        _magic_link_page: (customer,),
        _admin_connect: (staff_user, customer),
        _admin_index: (staff_user, customer),
    }[open_page]

    response = open_page(client, *args)

    assert response.status_code == 200
    assert "Content-Security-Policy-Report-Only" not in response  # enforced, not reported
    policy = _csp(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'", "https://link.trackstar.test"]
    for directive in ("connect-src", "frame-src", "style-src", "img-src"):
        assert "https://link.trackstar.test" in policy[directive]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    # Nothing inline runs: no inline <script> body and no on* handler in the page.
    html = response.content.decode()
    assert "<script>" not in html and " onclick=" not in html


def test_the_magic_link_issued_page_runs_no_inline_script(client, staff_user, customer):
    client.force_login(staff_user)
    created = client.post(
        "/admin/connections/magiclink/add/",
        {"customer": customer.pk, "expires_in_days": 7, "max_uses": 1},
    )

    response = client.get(created["Location"])

    html = response.content.decode()
    assert 'id="magic-link-url"' in html
    assert "<script>" not in html and "onclick=" not in html
    assert _csp(response)["script-src"][0] == "'self'"
    assert "'unsafe-inline'" not in _csp(response)["script-src"]


def test_an_operator_can_add_an_origin_link_turns_out_to_need(client, settings, portal_user):
    settings.TRACKSTAR_LINK_SCRIPT_URL = LINK_SCRIPT
    settings.TRACKSTAR_LINK_EXTRA_ORIGINS = ["https://cdn.trackstar.test/some/path"]
    settings.TRACKSTAR_BASE_URL = "https://api.trackstar.test"

    policy = _csp(_portal(client, portal_user))

    # Link's script may call Trackstar's API and frame its pages, wherever it is served from.
    assert sorted(policy["connect-src"]) == sorted(
        [
            "'self'",
            "https://link.trackstar.test",
            "https://cdn.trackstar.test",
            "https://api.trackstar.test",
        ]
    )
    assert "https://cdn.trackstar.test" in policy["frame-src"]
    assert "https://api.trackstar.test" in policy["frame-src"]
