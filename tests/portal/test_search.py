"""Finding things on the portal's inventory and orders pages: contains-search, the
connection filter (the customer's own connections only), filters that cannot be used
explained rather than silently ignored, Clear filters, pagers, and the pg_trgm indexes that
keep the searches fast on large tables."""

import re

import pytest
from django.db import connection as db

from connections.models import ResourceSync
from connections.selectors.records import inventory_list, order_list
from connections.sync.upsert import records_upsert
from tests.builders import make_connection
from tests.portal.records import item, order


@pytest.fixture
def portal(client, portal_user):
    client.force_login(portal_user)
    return client


def shown_skus(response) -> list[str]:
    return [row.sku for row in response.context["page"].object_list]


def shown_orders(response) -> list[str]:
    return [row.order_number for row in response.context["page"].object_list]


def text(response) -> str:
    return response.content.decode()


# --- Inventory -------------------------------------------------------------------------------


@pytest.fixture
def stock(connection):
    records_upsert(
        connection=connection,
        resource="inventory",
        records=[
            item(1, sku="TENT-2P-GRN", name="Trail tent, two person"),
            item(2, sku="BAG-20L", name="Day pack"),
            item(3, sku="STOVE-1", name="Camp stove with TENT stakes"),
        ],
    )


def test_inventory_finds_a_sku_by_any_part_of_it_whatever_the_case(portal, stock):
    response = portal.get("/portal/inventory/", {"q": "2p-g"})

    assert shown_skus(response) == ["TENT-2P-GRN"]
    assert "1 item with “2p-g” in the SKU or name" in text(response)


def test_inventory_finds_an_item_by_its_name(portal, stock):
    response = portal.get("/portal/inventory/", {"q": "day PA"})

    assert shown_skus(response) == ["BAG-20L"]


def test_inventory_search_matches_sku_or_name(portal, stock):
    response = portal.get("/portal/inventory/", {"q": "tent"})

    assert shown_skus(response) == ["STOVE-1", "TENT-2P-GRN"]


def test_inventory_search_that_finds_nothing_says_so_and_offers_to_clear(portal, stock):
    response = portal.get("/portal/inventory/", {"q": "kayak"})

    assert shown_skus(response) == []
    page = text(response)
    assert "nothing has “kayak” in its SKU or name" in page
    assert 'href="/portal/inventory/">Clear filters</a>' in page


def test_a_search_for_like_wildcards_matches_them_literally(portal, stock):
    assert shown_skus(portal.get("/portal/inventory/", {"q": "%"})) == []
    assert shown_skus(portal.get("/portal/inventory/", {"q": "_"})) == []


def test_the_old_sku_parameter_still_searches(portal, stock):
    assert shown_skus(portal.get("/portal/inventory/?sku=bag")) == ["BAG-20L"]


def test_inventory_search_never_finds_another_customers_items(portal, stock, other_customer):
    theirs = make_connection(customer=other_customer)
    records_upsert(connection=theirs, resource="inventory", records=[item(9, sku="TENT-XL")])

    response = portal.get("/portal/inventory/", {"q": "tent"})

    assert "TENT-XL" not in shown_skus(response)
    assert "TENT-XL" not in text(response)


# --- Orders ----------------------------------------------------------------------------------


@pytest.fixture
def order_book(connection):
    records_upsert(
        connection=connection,
        resource="orders",
        records=[
            order(1, order_number="#SB-1001", reference_id="PO-ALPHA"),
            order(2, order_number="#SB-2002", reference_id="shopify-7781"),
            order(3, order_number="#SB-3003", reference_id="PO-BETA", status="fulfilled"),
        ],
    )


def test_orders_found_by_part_of_the_order_number(portal, order_book):
    response = portal.get("/portal/orders/", {"q": "b-20"})

    assert shown_orders(response) == ["#SB-2002"]


def test_orders_found_by_part_of_the_reference(portal, order_book):
    response = portal.get("/portal/orders/", {"q": "po-"})

    assert sorted(shown_orders(response)) == ["#SB-1001", "#SB-3003"]
    assert "2 orders with “po-” in the order number or reference" in text(response)


def test_an_order_search_that_finds_nothing_says_so(portal, order_book):
    response = portal.get("/portal/orders/", {"q": "#ZZ"})

    assert shown_orders(response) == []
    assert "No orders match these filters." in text(response)
    assert 'href="/portal/orders/">Clear filters</a>' in text(response)


def test_search_and_status_together(portal, order_book):
    response = portal.get("/portal/orders/", {"q": "po-", "status": "fulfilled"})

    assert shown_orders(response) == ["#SB-3003"]


def test_a_status_that_is_no_order_status_is_explained_and_not_applied(portal, order_book):
    response = portal.get("/portal/orders/", {"status": "teleported"})

    assert len(shown_orders(response)) == 3
    assert "“teleported” is not an order status, so the list shows every status." in text(response)


def test_a_date_that_is_no_date_is_explained(portal, order_book):
    response = portal.get("/portal/orders/", {"from": "yesterday"})

    assert response.status_code == 200
    assert len(shown_orders(response)) == 3
    assert "“From” needs a date like 2026-11-30." in text(response)


def test_a_reversed_date_range_is_explained_not_silently_empty(portal, order_book):
    response = portal.get("/portal/orders/", {"from": "2026-11-30", "to": "2026-11-01"})

    page = text(response)
    assert "“From” (Nov. 30, 2026) is after “To” (Nov. 1, 2026)" in page
    assert "Swap them" in page
    assert len(shown_orders(response)) == 3  # not an empty list
    # The dates stay in the form, marked, for the user to fix.
    assert re.search(r'id="from" name="from" value="2026-11-30" aria-invalid="true"', page)


def test_a_date_range_is_read_in_the_customers_time_zone(portal, customer, connection):
    customer.timezone = "America/Los_Angeles"
    customer.save()
    records_upsert(
        connection=connection,
        resource="orders",
        records=[
            # 21:00 on Nov 1 in Los Angeles, Nov 2 in UTC.
            order(1, order_number="#LATE", created_date="2026-11-02T05:00:00Z"),
            # 23:30 on Oct 31 in Los Angeles, Nov 1 in UTC.
            order(2, order_number="#EARLY", created_date="2026-11-01T06:30:00Z"),
        ],
    )

    response = portal.get("/portal/orders/", {"from": "2026-11-01", "to": "2026-11-01"})

    assert shown_orders(response) == ["#LATE"]


# --- The connection filter -------------------------------------------------------------------


@pytest.fixture
def two_connections(customer, connection):
    second = make_connection(customer=customer, label="ShipBob EU")
    for n, conn in enumerate((connection, second)):
        records_upsert(connection=conn, resource="inventory", records=[item(n, sku=f"TENT-{n}")])
        records_upsert(
            connection=conn,
            resource="orders",
            records=[order(n, order_number=f"#C{n}")],
        )
    return connection, second


@pytest.mark.parametrize("url", ["/portal/inventory/", "/portal/orders/"])
def test_the_lists_filter_by_one_of_the_customers_connections(portal, two_connections, url):
    first, second = two_connections

    response = portal.get(url, {"connection": second.pk})

    rows = response.context["page"].object_list
    assert [row.connection_id for row in rows] == [second.pk]
    assert f'<option value="{second.pk}" selected>ShipBob EU</option>' in text(response)


@pytest.mark.parametrize("url", ["/portal/inventory/", "/portal/orders/"])
def test_another_customers_connection_is_not_found_and_shows_none_of_their_data(
    portal, two_connections, other_customer, url
):
    theirs = make_connection(customer=other_customer, label="Globex WMS")
    records_upsert(connection=theirs, resource="inventory", records=[item(7, sku="GLOBEX-1")])
    records_upsert(connection=theirs, resource="orders", records=[order(7, order_number="#GLOBEX")])

    response = portal.get(url, {"connection": theirs.pk})

    page = text(response)
    assert response.status_code == 200
    assert "We could not find that connection, so the list shows all your connections." in page
    assert "GLOBEX" not in page and "Globex WMS" not in page
    rows = response.context["page"].object_list
    assert {row.connection_id for row in rows} == {c.pk for c in two_connections}


@pytest.mark.parametrize("value", ["abc", "99999999999999999999999", "²", "1 OR 1=1"])
def test_a_connection_value_that_names_nothing_is_explained(portal, two_connections, value):
    response = portal.get("/portal/orders/", {"connection": value})

    assert response.status_code == 200
    assert "We could not find that connection" in text(response)
    assert len(shown_orders(response)) == 2


# --- Clear filters, pagers -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/portal/inventory/", "/portal/orders/"])
def test_clear_filters_is_offered_only_when_something_is_filtered(portal, order_book, url):
    assert "Clear filters" not in text(portal.get(url))
    assert "Clear filters" not in text(portal.get(url, {"page": "2"}))

    filtered = text(portal.get(url, {"q": "1"}))

    assert f'<a class="clear-filters" href="{url}">Clear filters</a>' in filtered


def test_long_lists_have_a_pager_at_top_and_bottom_with_separated_counts(portal, connection):
    records_upsert(
        connection=connection, resource="inventory", records=[item(n) for n in range(1234)]
    )

    page = text(portal.get("/portal/inventory/", {"q": "sku", "page": "2"}))

    assert page.count('<nav class="pager') == 2
    assert page.count("51–100 of 1,234 · page 2 of 25") == 2
    assert "1,234 items with “sku” in the SKU or name" in page
    # The pager keeps the search.
    assert 'href="?q=sku&amp;page=3" rel="next"' in page


def test_quantities_have_thousands_separators(portal, connection):
    records_upsert(
        connection=connection,
        resource="inventory",
        records=[item(1, onhand=1234567, fulfillable=12000, committed=0)],
    )

    page = text(portal.get("/portal/inventory/"))

    assert '<td data-th="On hand" class="num">1,234,567</td>' in page
    assert '<td data-th="Fulfillable" class="num">12,000</td>' in page


@pytest.mark.parametrize(
    "query",
    [
        "q=" + "x" * 5000,
        "q=%ED%A0%80",
        "page=9999999999999999999999",
        "page=-3",
        "page=1e999",
        "from=0001-01-01&to=0001-01-01",
        "from=9999-12-31&to=9999-12-31",
        "connection=" + "9" * 400,
        "status=" + "s" * 5000,
    ],
)
@pytest.mark.parametrize("url", ["/portal/inventory/", "/portal/orders/"])
def test_odd_query_strings_give_a_clean_page(portal, order_book, url, query):
    response = portal.get(f"{url}?{query}")

    assert response.status_code == 200
    assert "x" * 101 not in text(response) and "s" * 101 not in text(response)


# --- Query counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 500])
def test_searching_runs_a_constant_number_of_queries(
    portal, customer, connection, rows, django_assert_max_num_queries
):
    second = make_connection(customer=customer)
    for conn in (connection, second):
        records_upsert(
            connection=conn,
            resource="inventory",
            records=[item(n, sku=f"SKU-{conn.pk}-{n}") for n in range(rows)],
        )
        records_upsert(
            connection=conn,
            resource="orders",
            records=[order(n, order_number=f"#{conn.pk}-{n}") for n in range(rows)],
        )
        ResourceSync.objects.create(connection=conn, resource="orders")
    urls = [
        f"/portal/inventory/?q=sku&connection={second.pk}",
        f"/portal/orders/?q=%23&connection={second.pk}&status=open&from=2026-01-01&to=2026-12-31",
        "/portal/orders/?from=2026-12-31&to=2026-01-01&status=nope&page=2",
    ]
    # Session, user, membership/customer, connections, freshness, warehouses, count, page.
    for url in urls:
        with django_assert_max_num_queries(9):
            assert portal.get(url).status_code == 200


# --- The indexes (PostgreSQL) ----------------------------------------------------------------

TRIGRAM_INDEXES = {
    "connections_inventoryitem": {"inventory_sku_trgm": "sku", "inventory_name_trgm": "name"},
    "connections_order": {
        "order_number_trgm": "order_number",
        "order_reference_trgm": "reference_id",
    },
}


@pytest.mark.skipif(db.vendor != "postgresql", reason="pg_trgm is PostgreSQL's")
@pytest.mark.django_db
def test_the_migration_made_trigram_indexes_for_the_searched_columns():
    with db.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        assert cursor.fetchone() is not None
        cursor.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE indexname LIKE %s",
            ["%_trgm"],
        )
        found = {(table, name): definition for table, name, definition in cursor.fetchall()}
    for table, indexes in TRIGRAM_INDEXES.items():
        for name, column in indexes.items():
            definition = found[(table, name)]
            assert "USING gin" in definition
            assert f"upper(({column})::text) gin_trgm_ops" in definition


@pytest.mark.skipif(db.vendor != "postgresql", reason="pg_trgm is PostgreSQL's")
@pytest.mark.parametrize("resource", ["inventory", "orders"])
def test_the_planner_answers_the_portal_searches_from_the_trigram_indexes(
    customer, connection, resource
):
    """On a table where the customer's rows are many and few match, PostgreSQL reads the
    matches from the trigram indexes instead of scanning the customer's rows: the indexed
    expression is the one the portal's query writes (UPPER(col) LIKE UPPER('%x%'))."""
    many = 20_000
    if resource == "inventory":
        records = [item(n) for n in range(many)] + [item(many, sku="TENT-2P", name="Trail tent")]
        search, table = (
            inventory_list(customer=customer, search="tent-2"),
            "connections_inventoryitem",
        )
    else:
        records = [order(n) for n in range(many)] + [order(many, order_number="#SB-TENT")]
        search, table = order_list(customer=customer, search="sb-te"), "connections_order"
    records_upsert(connection=connection, resource=resource, records=records)
    with db.cursor() as cursor:
        # What autovacuum does in time: merge GIN's list of pending entries into the index.
        for name in TRIGRAM_INDEXES[table]:
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [name])
        cursor.execute(f"ANALYZE {table}")

    plan = search.explain()

    assert any(name in plan for name in TRIGRAM_INDEXES[table]), plan
    assert "Seq Scan on " + table not in plan, plan
