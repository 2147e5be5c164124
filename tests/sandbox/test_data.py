"""In-process checks of the generator (no server): orders are rendered from templates, so
the rendered text must equal the record and match the spec in every status."""

import orjson
import pytest

from sandbox.data import DAY_MS, ORDER_STATUSES, Dataset, iso
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


def test_old_three_element_mutation_entries_still_load(ds):
    stamp = ds.anchor_ms + 5000
    old = Dataset(
        "conn_test",
        {"orders": 5000},
        anchor_ms=ds.anchor_ms,
        mutations={"orders": {"7": [2, stamp, None]}, "products": {"10": [0, stamp, stamp]}},
        extra={"products": 1},
    )
    order = old.record("orders", 7)
    assert order["updated_date"] == order["trackstar_updated_date"] == iso(stamp)
    assert order["trackstar_created_date"] == ds.record("orders", 7)["trackstar_created_date"]
    product = old.record("products", 10)
    assert product["trackstar_created_date"] == product["created_date"] == iso(stamp)
    # Saved again in the new format, and loaded back the same.
    again = Dataset("conn_test", **old.dump())
    assert again.mut["orders"][7] == [2, stamp, None, stamp, None]
    assert again.render("orders", 7) == old.render("orders", 7)


def test_rendered_order_has_the_trackstar_dates_of_its_record(ds):
    ds.touch("orders", 3)
    late = ds.append_at("orders", ds.anchor_ms - 10 * DAY_MS, ds.anchor_ms - 9 * DAY_MS, 42)
    for i in (0, 3, 4999, late):
        record = orjson.loads(ds.render("orders", i))
        assert record["trackstar_created_date"] == iso(ds.ts_created_ms("orders", i))
        assert record["trackstar_updated_date"] == iso(ds.ts_updated_ms("orders", i))
    assert ds.record("orders", late)["trackstar_updated_date"] == iso(42)


def test_floor_raises_trackstar_dates_only(ds):
    floor = ds.anchor_ms + 60_000  # when a re-sync of the resource completes
    before = ds.record("returns", 2)
    ds.set_floor("returns", floor)
    after = ds.record("returns", 2)
    assert after["updated_date"] == before["updated_date"]
    assert after["trackstar_updated_date"] == after["trackstar_created_date"] == iso(floor)
    # A change in the WMS keeps its own stamp; Trackstar's copy holds it no earlier than the
    # floor, and a change after the floor moves past it.
    ds.touch("returns", 2)
    assert ds.updated_ms("returns", 2) < floor
    assert ds.ts_updated_ms("returns", 2) == floor
    ds.set_floor("returns", ds.anchor_ms - 1)  # floors never go back
    assert ds.ts_updated_ms("returns", 2) == floor
    ds.touch("returns", 3)
    ds.mut["returns"][3][1] = ds.mut["returns"][3][3] = floor + 1
    assert ds.record("returns", 3)["trackstar_updated_date"] == iso(floor + 1)


def test_iso_matches_the_standard_library():
    from datetime import UTC, datetime

    for ms in (0, 1, 59_999, 60_000, 86_399_999, 1_780_000_000_123, 4_102_444_799_999):
        expected = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert iso(ms) == f"{expected}.{ms % 1000:03d}Z"
