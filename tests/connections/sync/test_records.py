from datetime import UTC, datetime

from connections.models import InventoryItem, Order
from connections.sync.upsert import records_upsert
from tests.builders import make_connection


def order(i: int, *, updated: str = "2026-01-02T03:04:05.123Z", status: str = "open") -> dict:
    return {
        "id": f"ord_{i}",
        "created_date": "2026-01-01T00:00:00Z",
        "updated_date": updated,
        "order_number": f"SO-{i}",
        "reference_id": f"#{i}",
        "status": status,
        "warehouse_id": "wh_1",
        "channel_object": {"channel_name": "shopify"},
        "type": "d2c",
        "line_items": [{"sku": "SKU-1", "quantity": 1}],
        "additional_fields": {},
    }


def test_one_statement_for_a_page_of_a_thousand(connection, django_assert_num_queries):
    with django_assert_num_queries(1):
        written = records_upsert(
            connection=connection, resource="orders", records=[order(i) for i in range(1000)]
        )

    assert written == 1000
    row = Order.objects.get(trackstar_id="ord_7")
    assert row.customer_id == connection.customer_id
    assert row.order_number == "SO-7"
    assert row.status == "open"
    assert row.channel == "shopify"
    assert row.updated_date == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert row.data["line_items"] == [{"sku": "SKU-1", "quantity": 1}]


def test_upsert_updates_in_place_and_keeps_connections_apart(connection, customer):
    other = make_connection(customer=customer)
    records_upsert(connection=connection, resource="orders", records=[order(1)])
    records_upsert(connection=other, resource="orders", records=[order(1)])

    records_upsert(
        connection=connection,
        resource="orders",
        records=[order(1, status="fulfilled", updated="2026-02-01T00:00:00Z")],
    )

    assert Order.objects.count() == 2
    assert Order.objects.get(connection=connection).status == "fulfilled"
    assert Order.objects.get(connection=other).status == "open"


def test_only_if_newer_never_overwrites_a_newer_row(connection):
    records_upsert(
        connection=connection,
        resource="orders",
        records=[order(1, status="shipped", updated="2026-03-01T00:00:00Z")],
    )

    stale = records_upsert(
        connection=connection,
        resource="orders",
        only_if_newer=True,
        records=[order(1, status="open", updated="2026-02-01T00:00:00Z")],
    )
    newer = records_upsert(
        connection=connection,
        resource="orders",
        only_if_newer=True,
        records=[
            order(2, status="open", updated="2026-02-01T00:00:00Z"),
            order(1, status="cancelled", updated="2026-03-01T00:00:01Z"),
        ],
    )

    assert stale == 0
    assert newer == 2
    assert Order.objects.get(trackstar_id="ord_1").status == "cancelled"
    assert Order.objects.get(trackstar_id="ord_2").status == "open"


def test_a_repeated_id_in_one_page_keeps_the_newest_copy(connection):
    records_upsert(
        connection=connection,
        resource="orders",
        records=[
            order(1, status="packed", updated="2026-03-02T00:00:00Z"),
            order(1, status="open", updated="2026-03-01T00:00:00Z"),
        ],
    )

    assert Order.objects.get().status == "packed"


def test_inventory_columns(connection):
    records_upsert(
        connection=connection,
        resource="inventory",
        records=[
            {
                "id": "inv_1",
                "sku": "SKU-1",
                "name": "Mug",
                "active": True,
                "onhand": 10,
                "fulfillable": 7,
                "committed": 2,
                "unfulfillable": 1,
                "awaiting": 4,
                "created_date": "2026-01-01T00:00:00Z",
                "updated_date": "2026-01-01T00:00:00Z",
            },
            {"id": "", "sku": "no id is skipped"},
        ],
    )

    item = InventoryItem.objects.get()
    assert (item.sku, item.onhand, item.fulfillable, item.committed) == ("SKU-1", 10, 7, 2)
