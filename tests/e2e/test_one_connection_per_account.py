"""One connection per WMS account: before a second connection of a WMS the customer already
has, the page offers "Reconnect it" first; another account stays possible and gets its own
name ("ShipBob 2"). Real browser, web server, worker and sandbox."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from connections.link import magic_links as magic_link_service
from connections.models import AuthCodeExchange, Connection, ResourceSync
from tests.builders import make_connection, make_user
from tests.e2e.conftest import connected_through_exchange, login, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ASYNC = 30_000  # ms: Link, the worker's exchange and the page's polling


def _pick(page, integration: str = "ShipBob"):
    """Our picker: which WMS. Returns the dialog, now showing what comes next."""
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Which WMS do you use?")).to_be_visible()
    dialog.get_by_role("button", name=integration).click()
    return dialog


def _expect_reconnect_offered_first(dialog):
    expect(dialog.get_by_role("heading", name="You already have ShipBob connected")).to_be_visible()
    choices = dialog.locator(".wms-choices button")
    expect(choices.first).to_have_text("Reconnect it")
    expect(choices.first).to_be_focused()
    expect(choices.nth(1)).to_have_text("It is a different ShipBob account")


def _fill_link_form(page, api_key: str):
    """Trackstar's modal, opened on ShipBob's form: its picker was skipped."""
    link = page.get_by_role("dialog")
    expect(link.get_by_role("heading", name="Connect to ShipBob")).to_be_visible()
    expect(link.get_by_role("button", name="Back")).to_have_count(0)
    link.get_by_label("API key").fill(api_key)
    link.get_by_role("button", name="Connect").click()


def test_a_second_shipbob_is_offered_reconnect_first_and_can_be_another_account(
    page, live_server, live_trackstar, acme
):
    existing = connected_through_exchange(live_trackstar, acme)
    login(page, live_server, "acme")
    expect(page.locator("#connections-table tbody tr")).to_have_count(1)

    page.get_by_role("button", name="Connect your WMS").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("button", name="ShipBob")).to_contain_text("connected")
    _pick(page)
    _expect_reconnect_offered_first(dialog)

    dialog.get_by_role("button", name="It is a different ShipBob account").click()
    _fill_link_form(page, "sk_second_account")

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob 2.", timeout=ASYNC)
    rows = page.locator("#connections-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="ShipBob 2")).to_have_count(1)
    assert sorted(Connection.objects.values_list("label", flat=True)) == ["ShipBob", "ShipBob 2"]
    second = Connection.objects.exclude(pk=existing.pk).get()
    assert AuthCodeExchange.objects.get(connection=second).reinstall_connection is None

    # The page knows of the new one without a reload: picking ShipBob again lists both.
    page.get_by_role("button", name="Connect your WMS").click()
    _pick(page)
    expect(
        dialog.get_by_role("heading", name="You already have 2 ShipBob connections")
    ).to_be_visible()
    expect(dialog.get_by_role("button", name="Reconnect ShipBob 2")).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("button", name="Connect your WMS")).to_be_focused()


def test_reconnect_it_reinstalls_the_connection_the_customer_has(
    page, live_server, live_trackstar, acme
):
    existing = connected_through_exchange(live_trackstar, acme)
    login(page, live_server, "acme")

    page.get_by_role("button", name="Connect your WMS").click()
    dialog = _pick(page)
    _expect_reconnect_offered_first(dialog)
    dialog.get_by_role("button", name="Reconnect it").click()
    _fill_link_form(page, "sk_rotated")

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=ASYNC)
    assert Connection.objects.count() == 1
    exchange = AuthCodeExchange.objects.get(reinstall_connection=existing)
    assert exchange.status == AuthCodeExchange.Status.SUCCEEDED
    assert exchange.connection_id == existing.pk


def test_a_magic_link_offers_to_reconnect_what_the_customer_has(
    page, live_server, live_trackstar, acme
):
    existing = connected_through_exchange(live_trackstar, acme)
    issued = magic_link_service.magic_link_issue(customer=acme, created_by=None)

    page.goto(live_server.url + issued.url[issued.url.index("/connect/") :])
    # The page names the customer's connections, and gives away no id of ours or Trackstar's.
    assert existing.trackstar_connection_id not in page.content()
    [offered] = page.evaluate(
        "JSON.parse(document.getElementById('link-config').textContent).existing"
    )
    assert offered["label"] == "ShipBob" and offered["ref"] != str(existing.pk)
    page.get_by_role("button", name="Connect your WMS").click()
    dialog = _pick(page)
    _expect_reconnect_offered_first(dialog)
    dialog.get_by_role("button", name="Reconnect it").click()
    _fill_link_form(page, "sk_rotated")

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=ASYNC)
    expect(page.get_by_text("All set. You can close this page.")).to_be_visible()
    assert Connection.objects.count() == 1
    exchange = AuthCodeExchange.objects.get(magic_link=issued.link)
    assert exchange.reinstall_connection == existing
    assert exchange.status == AuthCodeExchange.Status.SUCCEEDED


def test_staff_are_offered_reconnect_too(page, live_server, live_trackstar, acme):
    existing = connected_through_exchange(live_trackstar, acme)
    make_user(username="ops", is_staff=True, is_superuser=True)
    login(page, live_server, "ops", url="/admin/login/")
    page.goto(f"{live_server.url}/admin/customers/customer/{acme.pk}/connect/")
    listed = page.locator("#customer-connections li")
    expect(listed).to_contain_text("ShipBob")
    expect(listed).to_contain_text(existing.trackstar_connection_id)

    page.get_by_role("button", name="Connect a WMS for Acme Outdoor").click()
    dialog = _pick(page)
    _expect_reconnect_offered_first(dialog)
    dialog.get_by_role("button", name="Reconnect it").click()
    _fill_link_form(page, "sk_rotated")

    wait_for(
        lambda: AuthCodeExchange.objects.filter(
            reinstall_connection=existing, status=AuthCodeExchange.Status.SUCCEEDED
        ).exists(),
        message="the reconnect to finish",
    )
    assert Connection.objects.count() == 1


def _overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_the_portal_fits_a_phone_with_two_connections(page, live_server, trackstar, acme):
    now = timezone.now()
    first = make_connection(customer=acme, label="ShipBob", connected_at=now)
    second = make_connection(
        customer=acme,
        label="ShipBob 2",
        connected_at=now,
        status=Connection.Status.NEEDS_RECONNECT,
        last_error="ShipBob no longer accepts the saved credentials. Reconnect to resume syncing.",
    )
    for connection in (first, second):
        for resource in ("inventory", "orders", "inbound_shipments"):
            ResourceSync.objects.create(
                connection=connection,
                resource=resource,
                last_success_at=now - timedelta(minutes=3),
            )
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, live_server, "acme")
    expect(page.locator("#connections-table tbody tr")).to_have_count(2)
    expect(page.locator(".freshness-line")).to_have_count(2)

    assert _overflow(page) <= 0

    # The rename form, opened on a row.
    row = page.locator(f'#connections-table tr[data-connection-id="{second.pk}"]')
    row.locator("summary.row-menu-toggle").click()
    row.locator("details.rename > summary").click()
    row.get_by_label("Name", exact=True).fill("ShipBob EU warehouse")
    assert _overflow(page) <= 0
    row.get_by_role("button", name="Save name").click()
    expect(page.get_by_text("ShipBob 2 is now called ShipBob EU warehouse.")).to_be_visible()
    expect(row).to_contain_text("ShipBob EU warehouse")

    # Our picker and its choice fit too.
    page.get_by_role("button", name="Connect your WMS").click()
    dialog = _pick(page)
    expect(
        dialog.get_by_role("heading", name="You already have 2 ShipBob connections")
    ).to_be_visible()
    assert _overflow(page) <= 0
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
