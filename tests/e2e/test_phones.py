"""Every portal page and every page a magic link can end on, in Chromium at 390 px (a phone)
and at 1280 px: nothing scrolls sideways (document.documentElement.scrollWidth is at most
window.innerWidth); the connections table stacks into labelled rows on the phone; our WMS
picker takes the whole phone screen.

The data is made to be awkward: long connection names, SKUs, emails and error texts.
Screenshots go to a temporary directory (PHONE_SCREENSHOTS to keep them elsewhere); they
are for people looking at a failure, never committed.

Trackstar Link's script is a stub here (Link's own modal is drawn by Trackstar's script,
not by our CSS), and the integrations catalog is put in the cache, so nothing reaches
Trackstar."""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from connections.integrations import CACHE_KEY
from connections.link import magic_links as magic_link_service
from connections.models import Connection, MagicLink, Order
from connections.sync.upsert import records_upsert
from customers.models import Membership
from tests.builders import PASSWORD, make_connection, make_customer, make_user

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT_URL = "https://link.trackstar.test/main.js"
# Loads at once: every instance is ready, and open() does nothing (the picker is ours).
STUB_MAIN_JS = """
window.Trackstar = {
  state: {isLoaded: true},
  init: function (config) {
    var key = "Trackstar" + (config.buttonId || "");
    window[key] = {state: {isLoaded: true}, config: config,
                   open: function () {}, close: function () {}};
    if (config.onLoad) setTimeout(config.onLoad, 0);
  },
};
"""
WIDTHS = {"phone": 390, "desktop": 1280}
LONG = "Outdoor-and-camping-supplies-fulfilment-centre-number-seven"
# Words a browser may not break by itself: a company name, an address.
UNBROKEN = "Outdoorandcampingsuppliesinternationalholdingsandsubsidiaries"
SUPPORT = "customer-success-and-support-team@dockside-warehouse-connections.example"
CATALOG = {
    slug: {"integration_name": slug, "display_name": name, "logo_url": ""}
    for slug, name in [
        ("shipbob", "ShipBob"),
        ("shiphero", "ShipHero"),
        ("extensiv", "Extensiv (3PL Central) Warehouse Manager with a very long name"),
        ("deposco", "Deposco"),
        ("logiwa", "Logiwa"),
        ("skubana", "Skubana"),
        ("infoplus", "Infoplus"),
        ("shipmonk", "ShipMonk"),
        ("red_stag", "Red Stag Fulfillment"),
    ]
}


@pytest.fixture
def shots():
    root = os.environ.get("PHONE_SCREENSHOTS")
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
        yield Path(root)
    else:
        with tempfile.TemporaryDirectory(prefix="dockside-phones-") as tmp:
            yield Path(tmp)


@pytest.fixture
def portal_data(settings):
    """Acme with awkward data: connections with long names and a long error, inventory and
    orders with long SKUs, a second company for the chooser."""
    settings.TRACKSTAR_LINK_SCRIPT_URL = SCRIPT_URL
    settings.DOCKSIDE_SUPPORT_EMAIL = SUPPORT
    cache.set(CACHE_KEY, CATALOG, 600)
    customer = make_customer(name=f"Acme {UNBROKEN}")
    owner = make_user(
        username="acme",
        customer=customer,
        email="operations.team.lead.with.a.long.address@acme-outdoor-and-camping.example",
    )
    Membership.objects.create(user=owner, customer=make_customer(name="Bright Botanicals"))
    healthy = make_connection(customer=customer, label=f"ShipBob{UNBROKEN}")
    make_connection(
        customer=customer,
        integration_name="shiphero",
        status=Connection.Status.NEEDS_RECONNECT,
        last_error="ShipHero no longer accepts the saved credentials. Reconnect to resume "
        "syncing: " + "x" * 80,
        connected_at=timezone.now() - timedelta(days=40),
    )
    records_upsert(
        connection=healthy,
        resource="warehouses",
        records=[{"id": "wh_1", "name": f"Reno {LONG}"}],
    )
    records_upsert(
        connection=healthy,
        resource="inventory",
        records=[
            {
                "id": f"inv_{i}",
                "sku": f"SKU-{LONG.upper()}-{i:04d}",
                "name": f"Ultralight tent {LONG} {i}",
                "onhand": 12000 + i,
                "fulfillable": 11000,
                "committed": 1000,
                "created_date": "2026-10-01T00:00:00Z",
                "updated_date": "2026-11-01T00:00:00Z",
                "inventory_by_warehouse_id": {"wh_1": {"onhand": 12000 + i, "fulfillable": 8}},
            }
            for i in range(5)
        ],
    )
    records_upsert(
        connection=healthy,
        resource="orders",
        records=[
            {
                "id": f"ord_{i}",
                "order_number": f"#ORDER-{LONG.upper()}-{i:05d}",
                "reference_id": f"REF-{LONG}-{i}",
                "status": "open",
                "created_date": "2026-11-02T12:00:00Z",
                "updated_date": "2026-11-02T12:00:00Z",
                "ship_to_address": {
                    "full_name": "Ada Augusta King, Countess of Lovelace",
                    "city": "London",
                },
                "line_items": [
                    {
                        "sku": f"SKU-{LONG.upper()}-0001",
                        "product_name": f"Ultralight tent {LONG}",
                        "quantity": 2,
                        "unit_price": 1249.5,
                    }
                ],
            }
            for i in range(5)
        ],
    )
    yield customer, owner, healthy
    cache.delete(CACHE_KEY)


def _check(context, url: str, name: str, width: int, shots: Path, failures: list) -> object:
    page = context.new_page()
    page.goto(url)
    page.wait_for_load_state("networkidle")
    _measure(page, name, width, shots, failures)
    return page


def _measure(page, name: str, width: int, shots: Path, failures: list) -> None:
    scroll_width, inner_width = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]"
    )
    page.screenshot(path=str(shots / f"{width}-{name}.png"), full_page=True)
    assert inner_width == width
    if scroll_width > inner_width:
        failures.append(f"{name}: {scroll_width}px wide in a {inner_width}px window")


def _login(context, live_server, username: str) -> None:
    page = context.new_page()
    page.goto(f"{live_server.url}/portal/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/portal/**")
    page.close()


def _context(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 844})
    context.set_default_timeout(10_000)
    context.route(
        SCRIPT_URL,
        lambda route: route.fulfill(body=STUB_MAIN_JS, content_type="text/javascript"),
    )
    return context


def _reset_path(user, route="portal:password_reset_confirm") -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse(route, args=[uid, default_token_generator.make_token(user)])


@pytest.mark.parametrize("device", WIDTHS)
def test_portal_pages_fit_the_screen(browser, live_server, portal_data, shots, device):
    width = WIDTHS[device]
    customer, owner, healthy = portal_data
    base = live_server.url
    failures: list[str] = []
    context = _context(browser, width)
    try:
        # Logged out: login (also with its warning), the reset pages, a set-password form.
        for name, path in [
            ("login", "/portal/login/"),
            ("password-reset", "/portal/password-reset/"),
            ("password-reset-sent", "/portal/password-reset/sent/"),
            ("password-link-invalid", "/portal/password-reset/MQ/not-a-token/"),
        ]:
            _check(context, base + path, name, width, shots, failures).close()
        warned = context.new_page()
        warned.goto(f"{base}/portal/login/")
        for _ in range(3):
            warned.get_by_label("Username").fill(f"{LONG}-nobody")
            warned.get_by_label("Password").fill("wrong")
            warned.get_by_role("button", name="Log in").click()
            warned.wait_for_load_state()
        assert "2 tries left" in warned.content()
        _measure(warned, "login-tries-left", width, shots, failures)
        warned.close()
        newcomer = make_user(username=f"new-{device}", email=f"new-{device}@acme.example")
        newcomer.set_unusable_password()
        newcomer.save()
        for name, path in [
            ("password-reset-form", _reset_path(newcomer)),
            ("invitation-form", _reset_path(newcomer, "portal:password_set")),
        ]:
            page = _check(context, base + path, name, width, shots, failures)
            assert page.get_by_label("New password").is_visible()
            page.close()

        _login(context, live_server, "acme")
        pages = [
            ("choose-customer", "/portal/choose/"),
            ("dashboard", "/portal/"),
            ("inventory", "/portal/inventory/"),
            ("orders", "/portal/orders/"),
            ("rename", f"/portal/connections/{healthy.pk}/rename"),
            ("disconnect-confirm", f"/portal/connections/{healthy.pk}/disconnect"),
        ]
        order = Order.objects.filter(customer=customer).order_by("pk").first()
        assert order is not None, "portal_data made no order"
        pages.append(("order-detail", reverse("portal:order_detail", args=[order.pk])))
        chooser = context.new_page()
        chooser.goto(f"{base}/portal/choose/")
        chooser.get_by_role("button", name=customer.name).click()
        chooser.close()
        for name, path in pages:
            page = _check(context, base + path, name, width, shots, failures)
            if name == "dashboard":
                _check_dashboard(page, width, shots, failures)
            page.close()
    finally:
        context.close()
    assert failures == []


def _check_dashboard(page, width: int, shots: Path, failures: list) -> None:
    row = page.locator("#connections-table tbody tr").first
    cell = row.locator("td[data-th=Status]")
    display = row.evaluate("(tr) => getComputedStyle(tr).display")
    label = cell.evaluate("(td) => getComputedStyle(td, '::before').content")
    if width <= 640:
        assert display == "block"  # a stacked row
        assert "Status" in label
    else:
        assert display == "table-row"
        assert label in ("none", "normal")
    # Our picker: the whole phone screen; a dialog in the middle on a desktop.
    page.get_by_role("button", name="Connect your WMS").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="ShipHero").wait_for()
    box = dialog.bounding_box()
    _measure(page, "dashboard-picker", width, shots, failures)
    if width <= 640:
        assert (box["x"], box["y"], box["width"]) == (0, 0, width)
        assert box["height"] == 844
    else:
        assert box["width"] < width / 2
    assert box["x"] + box["width"] <= width


@pytest.mark.parametrize("device", WIDTHS)
def test_magic_link_pages_fit_the_screen(browser, live_server, portal_data, shots, device):
    width = WIDTHS[device]
    customer, _, _ = portal_data
    sender = make_user(username="jane", first_name="Jane", last_name="Doe-Montgomery-Smythe")
    failures: list[str] = []
    context = _context(browser, width)
    try:
        fresh = magic_link_service.magic_link_issue(customer=customer, created_by=sender)
        page = context.new_page()
        page.goto(live_server.url + _path(fresh.url))
        page.wait_for_load_state("networkidle")
        assert "Jane Doe-Montgomery-Smythe, your account manager at Dockside" in page.content()
        _measure(page, "connect", width, shots, failures)
        page.get_by_role("button", name="Connect your WMS").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="ShipBob").wait_for()
        _measure(page, "connect-picker", width, shots, failures)
        box = dialog.bounding_box()
        if width <= 640:  # the whole screen
            assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, width, 844)
        else:
            assert box["width"] < width / 2
        page.close()
        for name, spend in [
            ("connect-used", {"use_count": 1}),
            ("connect-expired", {"expires_at": timezone.now() - timedelta(days=1)}),
            ("connect-withdrawn", {"revoked_at": timezone.now()}),
        ]:
            issued = magic_link_service.magic_link_issue(customer=customer, created_by=sender)
            MagicLink.objects.filter(pk=issued.link.pk).update(**spend)
            _check(context, live_server.url + _path(issued.url), name, width, shots, failures)
        invalid = f"{live_server.url}/connect/{'not-a-real-token-' * 4}/"
        _check(context, invalid, "connect-invalid", width, shots, failures)
        no_grant = f"{live_server.url}/connect/?link=nothing"
        _check(context, no_grant, "connect-no-grant", width, shots, failures)
    finally:
        context.close()
    assert failures == []


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]
