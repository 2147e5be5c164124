"""Staff connect WMSes for customers: by issuing a magic link in admin, or by typing the
customer's credentials into Link from the customer's admin page. Real browser, web server,
worker and sandbox."""

import re

import pytest
from playwright.sync_api import expect

from audit.models import AuditEntry
from connections.models import Connection, MagicLink
from tests.builders import make_customer, make_user
from tests.e2e.conftest import connect_in_modal, login

pytestmark = pytest.mark.django_db(transaction=True)

ASYNC = 30_000  # ms: Link, the worker's exchange and the page's polling
SHIPBOB = re.compile("shipbob", re.IGNORECASE)  # the slug or the display name, as shown


@pytest.fixture
def acme():
    return make_customer(name="Acme Outdoor")


@pytest.fixture
def staff(settings, live_server):
    # Magic-link URLs are built from the site's public address: here, the live server.
    settings.DOCKSIDE_BASE_URL = live_server.url
    return make_user(username="ops", is_staff=True, is_superuser=True)


def _staff_login(page, live_server):
    login(page, live_server, "ops", url="/admin/login/")
    expect(
        page.get_by_role("link", name="Log out").or_(page.get_by_role("button", name="Log out"))
    ).to_be_visible()


def _open_customer(page, live_server, customer):
    page.goto(f"{live_server.url}/admin/customers/customer/{customer.pk}/change/")
    expect(page.get_by_role("heading", name=customer.name)).to_be_visible()


def _issue_magic_link(page, live_server, customer, *, only: str | None = None) -> str:
    """From the customer's admin page: "Issue a magic link", submit, copy the URL shown."""
    _open_customer(page, live_server, customer)
    page.get_by_role("link", name="Issue a magic link").click()
    expect(page.locator("#id_customer")).to_have_value(str(customer.pk))
    if only:
        page.get_by_label(only, exact=True).check()
    page.get_by_role("button", name="Issue the link").click()

    expect(page.get_by_role("heading", name="Magic link issued")).to_be_visible()
    url_field = page.locator("#magic-link-url")
    url = url_field.input_value()
    assert url.startswith(f"{live_server.url}/connect/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    return url


def test_staff_issue_a_magic_link_and_the_customer_connects_with_it(
    page, browser, live_server, live_trackstar, acme, staff
):
    _staff_login(page, live_server)
    url = _issue_magic_link(page, live_server, acme)
    expect(page.get_by_text("Send this link to Acme Outdoor")).to_be_visible()

    # The customer has no account: a browser of their own, never logged in.
    visitor_context = browser.new_context()
    visitor_context.set_default_timeout(10_000)
    try:
        visitor = visitor_context.new_page()
        response = visitor.goto(url)
        assert response.status == 200
        expect(visitor.get_by_role("heading", name="Connect your warehouse system")).to_be_visible()
        expect(visitor.locator("#customer-name")).to_have_text("Acme Outdoor")

        visitor.get_by_role("button", name="Connect your WMS").click()
        connect_in_modal(visitor)

        expect(visitor.locator("#connect-status")).to_have_text(
            "Connected: ShipBob.", timeout=ASYNC
        )
        expect(visitor.get_by_text("All set. You can close this page.")).to_be_visible()
        expect(visitor.get_by_role("button", name="Connect your WMS")).to_be_hidden()

        # Staff see it on the customer's page, marked as made through a magic link.
        _open_customer(page, live_server, acme)
        inline = page.locator("#connections-group")
        rows = inline.locator("tbody tr.has_original")
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text(SHIPBOB)
        expect(rows).to_contain_text("Magic link")
        expect(rows).to_contain_text("Active")
        # ...and the link's funnel shows it used up.
        page.goto(f"{live_server.url}/admin/connections/magiclink/")
        link_row = page.locator("#result_list tbody tr")
        expect(link_row).to_have_count(1)
        expect(link_row).to_contain_text("Completed")
        expect(link_row).to_contain_text("1 / 1")

        connection = Connection.objects.get()
        assert connection.customer == acme
        assert connection.source == Connection.Source.MAGIC_LINK
        assert connection.integration_name == "shipbob"
        link = MagicLink.objects.get()
        assert link.customer == acme
        assert link.created_by == staff
        assert link.use_count == 1
        assert link.completed_at is not None

        # The link was for one use: opening it again says so.
        again = visitor.goto(url)
        assert again.status == 410
        expect(visitor.get_by_role("heading", name="This link was already used")).to_be_visible()
        expect(visitor.get_by_role("button", name="Connect your WMS")).to_have_count(0)
    finally:
        visitor_context.close()
    assert Connection.objects.count() == 1


def test_staff_enter_a_customers_credentials_through_link_in_admin(
    page, live_server, live_trackstar, acme, staff
):
    _staff_login(page, live_server)
    _open_customer(page, live_server, acme)
    page.get_by_role("link", name="Connect a WMS for this customer").click()
    expect(page.locator("#customer-connections")).to_have_text("None yet.")

    page.get_by_role("button", name="Connect a WMS for Acme Outdoor").click()
    connect_in_modal(page)

    # The status line shows for under a second before the page reloads itself: check it on
    # every frame, as expect()'s slower polling could miss it.
    outcome = page.wait_for_function(
        """() => {
            const text = document.getElementById("connect-status").textContent;
            return text && !text.startsWith("Connecting") ? text : null;
        }""",
        polling="raf",
        timeout=ASYNC,
    ).json_value()
    assert outcome == "Connected: ShipBob."
    # The reloaded page lists the new connection.
    listed = page.locator("#customer-connections li")
    expect(listed).to_have_count(1, timeout=ASYNC)
    expect(listed).to_contain_text(SHIPBOB)
    expect(listed).to_contain_text("Active (Staff)")
    expect(page.locator("#connect-status")).to_have_text("")  # the reloaded page

    connection = Connection.objects.get()
    assert connection.customer == acme
    assert connection.source == Connection.Source.STAFF
    assert connection.created_by == staff
    assert (
        AuditEntry.objects.filter(
            action="connection.credentials_entered", actor=staff, customer=acme
        ).count()
        == 1
    )


def test_a_magic_link_for_one_integration_opens_its_form_directly(
    page, browser, live_server, live_trackstar, acme, staff
):
    _staff_login(page, live_server)
    url = _issue_magic_link(page, live_server, acme, only="ShipHero")
    expect(page.get_by_text(re.compile("offering shiphero", re.IGNORECASE))).to_be_visible()
    assert MagicLink.objects.get().allowed_integrations == ["shiphero"]

    visitor_context = browser.new_context()
    visitor_context.set_default_timeout(10_000)
    try:
        visitor = visitor_context.new_page()
        visitor.goto(url)
        visitor.get_by_role("button", name="Connect your WMS").click()

        dialog = visitor.get_by_role("dialog")
        expect(dialog.get_by_role("heading", name="Connect to ShipHero")).to_be_visible()
        expect(dialog.get_by_label("Username")).to_be_visible()
        expect(dialog.get_by_label("Password")).to_be_visible()
        # No picker to go back to, and no other WMS on offer.
        expect(dialog.get_by_role("button", name="Back")).to_have_count(0)
        expect(dialog.get_by_role("button", name="ShipBob")).to_have_count(0)
        expect(dialog.get_by_label("API key")).to_have_count(0)

        dialog.get_by_label("Username").fill("acme-ops")
        dialog.get_by_label("Password").fill("s3cret")
        dialog.get_by_role("button", name="Connect").click()
        expect(visitor.locator("#connect-status")).to_have_text(
            "Connected: ShipHero.", timeout=ASYNC
        )
        expect(visitor.get_by_text("All set. You can close this page.")).to_be_visible()
    finally:
        visitor_context.close()
    connection = Connection.objects.get()
    assert connection.integration_name == "shiphero"
    assert connection.source == Connection.Source.MAGIC_LINK
