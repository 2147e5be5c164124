"""The synced data in the portal: inventory and orders, tenant-scoped, paginated, with a
constant number of queries whatever the data size."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import ResourceSync
from connections.sync.upsert import records_upsert
from tests.builders import make_connection


def inventory(n: int, *, prefix: str = "SKU", warehouse: str = "wh_1") -> list[dict]:
    return [
        {
            "id": f"inv_{prefix}_{i}",
            "sku": f"{prefix}-{i:04d}",
            "name": f"Item {i}",
            "onhand": 10 + i,
            "fulfillable": 8,
            "committed": 2,
            "created_date": "2026-10-01T00:00:00Z",
            "updated_date": "2026-11-01T00:00:00Z",
            "inventory_by_warehouse_id": {warehouse: {"onhand": 10 + i, "fulfillable": 8}},
        }
        for i in range(n)
    ]


def orders(n: int, *, status: str = "open", day: int = 1, prefix: str = "A") -> list[dict]:
    return [
        {
            "id": f"ord_{prefix}{i}",
            "order_number": f"#{prefix}{i:05d}",
            "status": status,
            "created_date": f"2026-11-{day:02d}T12:00:00Z",
            "updated_date": f"2026-11-{day:02d}T12:00:00Z",
            "ship_to_address": {"full_name": "Ada Lovelace", "city": "London"},
            "line_items": [{"sku": "SKU-0001", "quantity": 2, "unit_price": 9.5}],
        }
        for i in range(n)
    ]


@pytest.fixture
def portal(client, portal_user):
    client.force_login(portal_user)
    return client


def test_inventory_search_by_sku_shows_quantities_per_warehouse(portal, customer, connection):
    records_upsert(
        connection=connection, resource="warehouses", records=[{"id": "wh_1", "name": "Reno DC"}]
    )
    records_upsert(
        connection=connection,
        resource="inventory",
        records=inventory(3) + inventory(2, prefix="TEE"),
    )

    page = portal.get("/portal/inventory/?sku=tee").content.decode()

    assert "TEE-0000" in page and "TEE-0001" in page
    assert "SKU-0000" not in page
    assert "Reno DC" in page and "10 on hand" in page


def test_inventory_never_shows_another_customers_items(portal, other_customer):
    theirs = make_connection(customer=other_customer)
    records_upsert(connection=theirs, resource="inventory", records=inventory(2, prefix="THEIRS"))

    page = portal.get("/portal/inventory/").content.decode()

    assert "THEIRS" not in page
    assert "No inventory synced yet" in page


def test_orders_filter_by_status_and_date_with_line_items(portal, connection):
    records_upsert(
        connection=connection,
        resource="orders",
        records=orders(2, status="open", day=1, prefix="O")
        + orders(2, status="shipped", day=3, prefix="S")
        + orders(1, status="open", day=9, prefix="L"),
    )

    response = portal.get("/portal/orders/?status=open&from=2026-11-01&to=2026-11-05")

    rows = [o.order_number for o in response.context["page"].object_list]
    assert sorted(rows) == ["#O00000", "#O00001"]
    html = response.content.decode()
    assert "SKU-0001" in html and "Ada Lovelace" in html


def test_bad_filter_values_are_ignored_not_errors(portal, connection):
    response = portal.get("/portal/orders/?from=not-a-date&page=abc")

    assert response.status_code == 200


@pytest.mark.parametrize("rows", [1, 500])
def test_data_pages_run_a_constant_number_of_queries(
    portal, connection, rows, django_assert_max_num_queries
):
    records_upsert(connection=connection, resource="inventory", records=inventory(rows))
    records_upsert(connection=connection, resource="orders", records=orders(rows))
    for resource in ("inventory", "orders"):
        ResourceSync.objects.create(
            connection=connection, resource=resource, last_success_at=timezone.now()
        )

    # Session, user, membership/customer, freshness, statuses/warehouses, count, page.
    for url in ("/portal/", "/portal/inventory/", "/portal/orders/", "/portal/orders/?page=3"):
        with django_assert_max_num_queries(9):
            assert portal.get(url).status_code == 200


def test_freshness_says_how_old_the_data_is_and_when_it_is_stale(portal, connection):
    now = timezone.now()
    ResourceSync.objects.create(
        connection=connection,
        resource="orders",
        interval_seconds=900,
        last_success_at=now - timedelta(minutes=4),
    )
    ResourceSync.objects.create(
        connection=connection,
        resource="inventory",
        interval_seconds=900,
        last_success_at=now - timedelta(hours=2),
    )

    orders_page = portal.get("/portal/orders/").content.decode()
    inventory_page = portal.get("/portal/inventory/").content.decode()
    overview = portal.get("/portal/").content.decode()

    assert "Orders: updated 4\xa0minutes ago" in orders_page
    assert "Inventory" not in orders_page.split('aria-label="Data freshness"')[1][:300]
    assert "Inventory: updated 2\xa0hours ago (stale)" in inventory_page
    assert "Orders: updated" in overview and "Inventory: updated" in overview
