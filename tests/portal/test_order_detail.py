"""An order's own page in the portal: its line items named after the products, prices in
the order's currency, times in the customer's time zone, status colours, tenant-scoped."""

import re

import pytest

from connections.models import Order
from connections.sync.upsert import records_upsert
from tests.builders import make_connection
from tests.portal.records import item, order


@pytest.fixture
def portal(client, portal_user):
    client.force_login(portal_user)
    return client


def save_order(connection, n: int = 1, **fields) -> Order:
    records_upsert(connection=connection, resource="orders", records=[order(n, **fields)])
    return Order.objects.get(connection=connection, trackstar_id=f"ord_{n}")


def detail(portal, order_row: Order) -> str:
    response = portal.get(f"/portal/orders/{order_row.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def cells(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
        ]
        for row in rows
    ]


def test_line_items_show_product_names_quantities_and_prices_with_headers(portal, connection):
    records_upsert(
        connection=connection,
        resource="products",
        records=[{"id": "prod_1", "sku": "TENT-2P", "name": "Trail tent, two person"}],
    )
    # No product for this one: its inventory item names it.
    records_upsert(
        connection=connection, resource="inventory", records=[item(5, sku="MUG-1", name="Camp mug")]
    )
    row = save_order(
        connection,
        line_items=[
            {"product_id": "prod_1", "sku": "TENT-2P", "quantity": 1200, "unit_price": 1249.5},
            {"product_id": "prod_gone", "sku": "MUG-1", "quantity": 3, "unit_price": 4},
            {"product_id": "prod_x", "sku": "UNKNOWN", "quantity": 1, "unit_price": None},
        ],
        total_price=1499412,
        total_shipping=5.99,
        total_tax=0,
    )

    html = detail(portal, row)

    assert cells(html, "line-items") == [
        ["Product", "SKU", "Quantity", "Unit price (USD)", "Line total"],
        ["Trail tent, two person", "TENT-2P", "1,200", "$1,249.50", "$1,499,400.00"],
        ["Camp mug", "MUG-1", "3", "$4.00", "$12.00"],
        ["—", "UNKNOWN", "1", "—", "—"],
    ]
    totals = html.split('id="order-totals">', 1)[1].split("</dl>", 1)[0]
    assert re.sub(r"<[^>]+>", " ", totals).split() == [
        "Total", "price", "$1,499,412.00", "Shipping", "$5.99",
    ]  # fmt: skip


def test_prices_are_in_the_orders_currency(portal, connection):
    row = save_order(
        connection,
        invoice_currency_code="EUR",
        line_items=[{"sku": "A", "quantity": 2, "unit_price": 10, "discount_amount": 1.5}],
    )

    table = cells(detail(portal, row), "line-items")

    assert table[0] == ["Product", "SKU", "Quantity", "Unit price (EUR)", "Discount", "Line total"]
    assert table[1][3:] == ["€10.00", "€1.50", "€18.50"]


def test_a_currency_without_a_symbol_is_named(portal, connection):
    row = save_order(
        connection,
        invoice_currency_code="SEK",
        line_items=[{"sku": "A", "quantity": 1, "unit_price": 1234}],
    )

    assert cells(detail(portal, row), "line-items")[1][3] == "1,234.00 SEK"


def test_times_are_in_the_customers_time_zone(portal, customer, connection):
    customer.timezone = "Asia/Tokyo"
    customer.save()
    row = save_order(connection, created_date="2026-11-01T20:30:00Z")

    html = detail(portal, row)
    listing = portal.get("/portal/orders/").content.decode()

    # 20:30 UTC is 05:30 the next morning in Tokyo.
    assert "Nov 2, 2026 05:30 JST" in html
    assert "Times are shown in Asia/Tokyo time." in html
    assert "Nov 2, 2026 05:30 JST" in listing


def test_times_are_utc_for_a_customer_who_did_not_choose(portal, connection):
    html = detail(portal, save_order(connection, created_date="2026-11-01T20:30:00Z"))

    assert "Nov 1, 2026 20:30 UTC" in html


@pytest.mark.parametrize(
    ("status", "tone", "words"),
    [
        ("fulfilled", "ok", "Fulfilled"),
        ("open", "progress", "Open"),
        ("backordered", "warn", "Backordered"),
        ("exception", "bad", "Exception"),
        ("cancelled", "muted", "Cancelled"),
    ],
)
def test_status_badges_are_coloured_by_meaning(portal, connection, status, tone, words):
    row = save_order(connection, status=status)

    html = detail(portal, row)
    listing = portal.get("/portal/orders/").content.decode()

    badge = f'<span class="badge order-status tone-{tone}" id="order-status">{words}</span>'
    assert badge in html
    assert f'<span class="badge order-status tone-{tone}">{words}</span>' in listing


def test_an_other_status_shows_the_wms_own_words(portal, connection):
    row = save_order(connection, status="other", raw_status="ON HOLD")

    assert ">Other: ON HOLD</span>" in detail(portal, row)


@pytest.mark.parametrize("raw_status", ["OTHER", "other", " Other "])
def test_an_other_status_does_not_repeat_a_wms_word_that_only_says_other(
    portal, connection, raw_status
):
    row = save_order(connection, status="other", raw_status=raw_status)

    html = detail(portal, row)
    listing = portal.get("/portal/orders/").content.decode()

    assert '<span class="badge order-status tone-neutral" id="order-status">Other</span>' in html
    assert '<span class="badge order-status tone-neutral">Other</span>' in listing
    assert "Other:" not in html + listing


def test_an_other_status_lists_the_wms_own_words_too(portal, connection):
    save_order(connection, status="other", raw_status="ON HOLD")

    listing = portal.get("/portal/orders/").content.decode()

    assert '<span class="badge order-status tone-neutral">Other: ON HOLD</span>' in listing


def test_shipments_link_tracking_only_to_web_addresses(portal, connection):
    row = save_order(
        connection,
        status="fulfilled",
        shipments=[
            {
                "status": "shipped",
                "shipped_date": "2026-11-02T10:00:00Z",
                "packages": [
                    {
                        "tracking_number": "1Z999",
                        "tracking_url": "https://track.example.com/1Z999",
                        "carrier_name": "UPS",
                    },
                    {"tracking_number": "EVIL1", "tracking_url": "javascript:alert(1)"},
                ],
            }
        ],
    )

    html = detail(portal, row)

    assert 'href="https://track.example.com/1Z999"' in html and ">1Z999</a>" in html
    assert "javascript:" not in html and "EVIL1" in html
    assert '<span class="badge order-status tone-ok">Shipped</span>' in html


def test_each_order_row_links_to_its_detail(portal, connection):
    row = save_order(connection, order_number="#SB-77")

    listing = portal.get("/portal/orders/").content.decode()

    assert f'href="/portal/orders/{row.pk}/"><strong>#SB-77</strong></a>' in listing


def test_another_customers_order_is_not_found(portal, other_customer):
    theirs = save_order(make_connection(customer=other_customer), order_number="#GLOBEX")

    response = portal.get(f"/portal/orders/{theirs.pk}/")

    assert response.status_code == 404
    assert b"GLOBEX" not in response.content


@pytest.mark.parametrize("path", ["0", "99999999999999999999", "abc", "1.5", "-1"])
def test_an_id_that_names_no_order_is_not_found(portal, connection, path):
    assert portal.get(f"/portal/orders/{path}/").status_code == 404


def test_the_order_page_needs_a_login(client, connection):
    row = save_order(connection)

    response = client.get(f"/portal/orders/{row.pk}/")

    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/")


def test_the_order_page_takes_only_get(portal, connection):
    row = save_order(connection)

    assert portal.post(f"/portal/orders/{row.pk}/").status_code == 405


@pytest.mark.parametrize(
    "fields",
    [
        {"line_items": "not a list", "shipments": {"a": 1}},
        {"line_items": [None, 3, {"quantity": "many", "unit_price": "abc"}]},
        {"line_items": [{"quantity": 10**15, "unit_price": 1e308, "discount_amount": True}]},
        {"invoice_currency_code": "<b>", "total_price": "NaN", "ship_to_address": "x"},
        {"shipments": [{"packages": "x", "shipped_date": "yesterday"}, None]},
    ],
)
def test_odd_data_from_the_wms_still_gives_a_page(portal, connection, fields):
    row = save_order(connection, **fields)

    html = detail(portal, row)

    assert "<b>" not in html.split("<main", 1)[1]


@pytest.mark.parametrize("lines", [1, 500])
def test_the_order_page_runs_a_constant_number_of_queries(
    portal, connection, lines, django_assert_max_num_queries
):
    records_upsert(
        connection=connection,
        resource="products",
        records=[
            {"id": f"prod_{n}", "sku": f"P-{n}", "name": f"Product {n}"} for n in range(lines)
        ],
    )
    row = save_order(
        connection,
        line_items=[
            {"product_id": f"prod_{n}", "sku": f"P-{n}", "quantity": 1, "unit_price": 1}
            for n in range(lines)
        ]
        + [{"sku": "ONLY-IN-INVENTORY", "quantity": 1}],
    )

    # Session, user, membership/customer, the order, its products, inventory names.
    with django_assert_max_num_queries(6):
        html = detail(portal, row)
    assert f"Product {lines - 1}" in html


def test_staff_set_a_customers_time_zone_in_admin(client, staff_user, customer):
    client.force_login(staff_user)
    url = f"/admin/customers/customer/{customer.pk}/change/"

    page = client.get(url).content.decode()

    assert '<select name="timezone"' in page
    assert '<option value="Europe/Berlin">Europe/Berlin</option>' in page
