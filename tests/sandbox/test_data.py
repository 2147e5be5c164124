"""In-process checks of the generator (no server): orders are rendered from templates, so
the rendered text must equal the record and match the spec in every status."""

import orjson
import pytest

from sandbox.data import ORDER_STATUSES, Dataset
from tests.sandbox.spec import _validate as validate_schema
from tests.sandbox.spec import response_schema, spec


@pytest.fixture
def ds():
    return Dataset("conn_test", {"orders": 5000})


def test_rendered_orders_are_valid_and_cover_every_status(ds):
    schema = response_schema("GET", "/wms/orders/{order_id}", 200)
    statuses = set()
    for i in range(0, 5000, 7):
        record = orjson.loads(ds.render("orders", i))
        validate_schema(schema, {"data": record})
        statuses.add(record["status"])
    assert statuses == set(ORDER_STATUSES)


def test_same_connection_same_data_other_connection_other_data(ds):
    again = Dataset("conn_test", {"orders": 5000}, anchor_ms=ds.anchor_ms)
    assert ds.render("orders", 1234) == again.render("orders", 1234)
    other = Dataset("conn_other", {"orders": 5000}, anchor_ms=ds.anchor_ms)
    assert ds.record("orders", 1234)["id"] != other.record("orders", 1234)["id"]


def test_set_order_status_and_touch_move_updated_date(ds):
    before = ds.record("orders", 10)
    ds.set_order_status(10, ORDER_STATUSES.index("fulfilled"))
    after = ds.record("orders", 10)
    assert after["status"] == "fulfilled" and after["shipments"]
    assert after["updated_date"] > before["updated_date"]
    assert ds.updated_ms("orders", 10) > ds.anchor_ms


def test_base_dates_are_monotonic_and_before_the_anchor(ds):
    for res in ("orders", "inventory", "warehouses"):
        n = ds.counts[res]
        updated = [ds.base_updated_ms(res, i) for i in range(n)]
        assert updated == sorted(updated)
        assert updated[-1] < ds.anchor_ms


@pytest.mark.parametrize(
    "path",
    [p for p in ("/wms/inventory", "/wms/products", "/wms/inbound-shipments", "/wms/returns")],
)
def test_other_resources_match_the_spec(ds, path):
    res = path.rsplit("/", 1)[1]
    ds.touch(res, 1)
    schema = spec()["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    for i in range(3):
        validate_schema(schema["schema"], {"data": [ds.record(res, i)], "total_count": 1})
