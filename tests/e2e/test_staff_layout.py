"""Staff admin pages in Chromium at 390 px (a phone) and at 1280 px: the "Needs attention"
page, the "Magic link issued" page and a customer's change page. Nothing scrolls sideways
(document.documentElement.scrollWidth is at most window.innerWidth, as in test_phones.py);
the attention tables stack into labelled rows on the phone; the customer page's object
tools wrap below its headings instead of covering them.

The data is made to be awkward: a long contact email (it is in a button), long errors.
Screenshots go to pytest's tmp_path; they are for people looking at a failure."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from playwright.sync_api import expect

from connections.integrations import CACHE_KEY
from connections.link import magic_links as magic_link_service
from connections.models import (
    Connection,
    MagicLink,
    ResourceSync,
    SyncRun,
    UnassignedConnection,
)
from tests.builders import make_connection, make_customer, make_user
from tests.e2e.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

PHONE, DESKTOP = 390, 1280
NEEDS_ATTENTION = "/admin/connections/connection/needs-attention/"
SECTIONS = ["reconnect", "no_access", "failing", "stale", "unassigned", "links"]
EMAIL = "customer-success-and-support-team@acme-outdoor-and-camping.example"
LONG_ERROR = (
    "ShipHero no longer accepts the saved credentials: the API user was deactivated by the "
    "warehouse administrator on the account's security page"
)


@pytest.fixture
def acme():
    return make_customer(name="Acme Outdoor", contact_email=EMAIL)


@pytest.fixture
def staff(settings, live_server):
    # Magic-link URLs are built from the site's public address: here, the live server.
    settings.DOCKSIDE_BASE_URL = live_server.url
    cache.set(CACHE_KEY, {"shipbob": {"integration_name": "shipbob", "display_name": "ShipBob"}})
    yield make_user(username="ops", is_staff=True, is_superuser=True)
    cache.delete(CACHE_KEY)


@pytest.fixture
def attention_rows(acme):
    """One row in every section of the "Needs attention" page."""
    now = timezone.now()
    make_connection(
        customer=acme,
        integration_name="shiphero",
        status=Connection.Status.NEEDS_RECONNECT,
        reconnect_cause=Connection.ReconnectCause.INVALID_CREDENTIALS,
        last_error=LONG_ERROR,
        label="Reno ShipHero",
    )
    no_access = make_connection(customer=acme, label="Reno ShipBob")
    ResourceSync.objects.create(
        connection=no_access,
        resource="returns",
        permission_error="The API user has no access to returns: " + LONG_ERROR,
        permission_error_at=now,
        last_success_at=now,
    )
    retrying = make_connection(customer=acme, label="Sparks ShipBob")
    run = SyncRun.objects.create(
        connection=retrying,
        resource="orders",
        kind="initial",
        attempts=3,
        error="Trackstar is busy or unreachable; will retry (timeout).",
    )
    ResourceSync.objects.create(
        connection=retrying, resource="orders", current_run=run, last_success_at=now
    )
    failed = make_connection(customer=acme, label="Carson ShipBob")
    ResourceSync.objects.create(
        connection=failed,
        resource="inventory",
        last_error="Trackstar refused the sync: bad filter",
        last_success_at=now,
    )
    stale = make_connection(customer=acme, label="Elko ShipBob")
    ResourceSync.objects.create(
        connection=stale,
        resource="orders",
        interval_seconds=900,
        last_success_at=now - timedelta(hours=1),
    )
    UnassignedConnection.objects.create(
        trackstar_connection_id="conn_unassigned_0123456789abcdef0123456789abcdef",
        integration_name="shiphero",
        seen_via=UnassignedConnection.SeenVia.RECONCILE,
    )
    link = magic_link_service.magic_link_issue(customer=acme, created_by=None).link
    MagicLink.objects.filter(pk=link.pk).update(expires_at=now + timedelta(hours=5))


def _staff_page(browser, live_server, width: int):
    context = browser.new_context(viewport={"width": width, "height": 844})
    context.set_default_timeout(10_000)
    page = context.new_page()
    login(page, live_server, "ops", url="/admin/login/")
    return page


def _overflow(page, name: str, width: int, shots) -> str | None:
    """What scrolls sideways, or None; and a screenshot."""
    page.screenshot(path=str(shots / f"{width}-{name}.png"), full_page=True)
    scroll_width, inner_width = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert inner_width == width
    if scroll_width > inner_width:
        return f"{name}: {scroll_width}px wide in a {inner_width}px window"
    return None


def _overlaps(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_needs_attention_fits_the_screen(
    browser, live_server, staff, attention_rows, tmp_path, width
):
    page = _staff_page(browser, live_server, width)
    try:
        page.goto(f"{live_server.url}{NEEDS_ATTENTION}")
        for key in SECTIONS:
            expect(page.locator(f"#{key} tbody tr").first).to_be_visible()
        assert _overflow(page, "needs-attention", width, tmp_path) is None

        # The summary pills are pills, not a bulleted list.
        bullets = page.locator(".attention-summary li").evaluate_all(
            "(lis) => lis.map((li) => getComputedStyle(li).listStyleType)"
        )
        assert bullets == ["none"] * len(SECTIONS)

        for key in SECTIONS:
            section = page.locator(f"#{key}")
            headers = section.locator("thead th").all_inner_texts()
            row = section.locator("tbody tr").first
            display = row.evaluate("(tr) => getComputedStyle(tr).display")
            labels = row.locator("td").evaluate_all(
                "(tds) => tds.map((td) => getComputedStyle(td, '::before').content)"
            )
            if width == PHONE:  # stacked rows, each cell labelled with its column
                assert display == "block", key
                assert len(labels) == len(headers), (key, labels)
                for header, label in zip(headers, labels, strict=True):
                    assert header.strip().lower() in label.lower(), (key, header, label)
            else:  # the table as it was
                assert display == "table-row", key
                assert set(labels) <= {"none", "normal"}, (key, labels)

        # Every button is on the screen, its text wrapped if need be.
        for box in page.locator("#content-main .attention-actions .button").evaluate_all(
            "(bs) => bs.map((b) => b.getBoundingClientRect().right)"
        ):
            assert box <= width
    finally:
        page.context.close()


def test_magic_link_issued_page_fits_the_screen(browser, live_server, staff, acme, tmp_path):
    for width in (PHONE, DESKTOP):
        page = _staff_page(browser, live_server, width)
        try:
            page.goto(f"{live_server.url}/admin/customers/customer/{acme.pk}/change/")
            page.get_by_role("link", name="Issue a magic link").click()
            expect(page.locator("#id_customer")).to_have_value(str(acme.pk))
            page.get_by_role("button", name="Issue the link").click()
            expect(page.get_by_role("heading", name="Magic link issued")).to_be_visible()

            assert _overflow(page, "magic-link-issued", width, tmp_path) is None
            field = page.locator("#magic-link-url")
            assert field.input_value().startswith(f"{live_server.url}/connect/")
            copy = page.get_by_role("button", name="Copy")
            for box in (field.bounding_box(), copy.bounding_box()):
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (width, box)
            page.context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=live_server.url
            )
            copy.click()
            expect(page.get_by_text("Copied.")).to_be_visible()
            assert page.evaluate("navigator.clipboard.readText()") == field.input_value()
        finally:
            page.context.close()


def test_customer_object_tools_wrap_clear_of_the_heading(
    browser, live_server, staff, acme, tmp_path
):
    for width in (PHONE, DESKTOP):
        page = _staff_page(browser, live_server, width)
        try:
            page.goto(f"{live_server.url}/admin/customers/customer/{acme.pk}/change/")
            tools = page.locator("#content-main .object-tools li")
            expect(tools.last).to_have_text("History")
            assert tools.count() == 6  # connect, magic link, token, audit log, invite, history
            assert _overflow(page, "customer-change", width, tmp_path) is None

            assert page.locator("#content > h2").inner_text() == "Acme Outdoor"
            headings = {
                name: page.locator(f"#content > {name}").bounding_box() for name in ("h1", "h2")
            }
            names = tools.all_inner_texts()
            boxes = [tools.nth(i).bounding_box() for i in range(len(names))]
            for i, (name, box) in enumerate(zip(names, boxes, strict=True)):
                for heading, heading_box in headings.items():
                    assert not _overlaps(box, heading_box), (
                        f"{width}px: {name!r} covers the {heading}"
                    )
                assert box["x"] >= 0 and box["x"] + box["width"] <= width, (width, name)
                for other_name, other in zip(names[:i], boxes[:i], strict=True):
                    assert not _overlaps(box, other), f"{width}px: {name!r} covers {other_name!r}"
        finally:
            page.context.close()
