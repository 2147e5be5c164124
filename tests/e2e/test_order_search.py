"""Finding an order and opening it, in a real browser: search, the detail page, Clear
filters; the data pages fit a 390-px phone and a 1280-px screen without sideways scroll."""

import pytest
from playwright.sync_api import expect

from connections.sync.upsert import records_upsert
from tests.builders import make_connection
from tests.e2e.conftest import login
from tests.portal.records import item, order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def synced(acme):
    connection = make_connection(customer=acme)
    records_upsert(
        connection=connection,
        resource="products",
        records=[{"id": "prod_1", "sku": "TENT-2P", "name": "Trail tent, two person"}],
    )
    records_upsert(
        connection=connection,
        resource="inventory",
        records=[item(n) for n in range(60)] + [item(99, sku="TENT-2P", name="Trail tent")],
    )
    records_upsert(
        connection=connection,
        resource="orders",
        records=[order(n) for n in range(60)]
        + [order(999, order_number="#SB-TENT", reference_id="PO-7781", status="backordered")],
    )
    return connection


def test_a_customer_finds_an_order_and_opens_it(page, live_server, synced, csp_violations):
    login(page, live_server, "acme")
    page.goto(f"{live_server.url}/portal/orders/")
    expect(page.locator("nav.pager")).to_have_count(2)  # 61 orders: two pages

    page.get_by_label("Order number or reference").fill("7781")
    page.get_by_role("button", name="Search").click()

    rows = page.locator("#orders-table > tbody > tr")
    expect(rows).to_have_count(1)
    expect(page.get_by_text("1 order with “7781” in the order number or reference")).to_be_visible()
    rows.get_by_role("link", name="#SB-TENT").click()

    expect(page.get_by_role("heading", name="Order #SB-TENT")).to_be_visible()
    expect(page.locator("#order-status")).to_have_text("Backordered")
    line = page.locator("#line-items tbody tr").first
    expect(line).to_contain_text("Trail tent, two person")
    expect(line).to_contain_text("$9.50")

    page.get_by_role("link", name="All orders").click()
    page.get_by_label("Order number or reference").fill("nothing-like-this")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No orders match these filters.")).to_be_visible()
    page.get_by_role("link", name="Clear filters").first.click()
    expect(page.locator("#orders-table > tbody > tr")).to_have_count(50)
    assert csp_violations == []


@pytest.mark.parametrize("width", [390, 1280])
def test_the_data_pages_fit_the_screen(page, live_server, synced, width):
    page.set_viewport_size({"width": width, "height": 800})
    login(page, live_server, "acme")
    urls = [
        "/portal/inventory/?q=tent",
        "/portal/inventory/",
        "/portal/orders/?from=2026-12-01&to=2026-11-01&status=nope&connection=x",
        "/portal/orders/",
    ]
    for url in urls:
        page.goto(f"{live_server.url}{url}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), url
    page.locator("a.order-link").first.click()
    expect(page.locator("#line-items")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url
