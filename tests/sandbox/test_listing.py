from datetime import UTC, datetime, timedelta

import pytest

from tests.sandbox.conftest import WMS_RESOURCES
from tests.sandbox.spec import validate


def _all_pages(sandbox, token, path, **params):
    ids, pages = [], 0
    while True:
        body = validate("GET", path, sandbox.wms(token, path, params=params))
        assert body["total_count"] == len(body["data"])
        ids += [r["id"] for r in body["data"]]
        pages += 1
        if body["next_token"] is None:
            return ids, pages
        params["page_token"] = body["next_token"]


@pytest.mark.parametrize("resource", sorted(WMS_RESOURCES))
def test_pagination_sees_every_record_once(sandbox, linked, resource):
    counts = sandbox.connection(linked["connection_id"])["counts"]
    ids, pages = _all_pages(sandbox, linked["access_token"], WMS_RESOURCES[resource], limit=3)
    assert len(ids) == len(set(ids)) == counts[resource]
    assert pages == -(-counts[resource] // 3)


def test_status_filter(sandbox, linked):
    token = linked["access_token"]
    everything, _ = _all_pages(sandbox, token, "/wms/orders")
    open_orders = sandbox.wms(token, "/wms/orders", params={"status": "open"}).json()["data"]
    assert open_orders and all(o["status"] == "open" for o in open_orders)
    others = sandbox.wms(token, "/wms/orders", params={"status[neq]": "open"}).json()["data"]
    assert len(open_orders) + len(others) == len(everything)
    some = sandbox.wms(token, "/wms/orders", params={"status[in]": "open,fulfilled"}).json()
    assert {o["status"] for o in some["data"]} <= {"open", "fulfilled"}
    paged, _ = _all_pages(sandbox, token, "/wms/orders", limit=2, status="open")
    assert paged == [o["id"] for o in open_orders]


def test_ids_in_ignores_other_params(sandbox, linked):
    token = linked["access_token"]
    orders = sandbox.wms(token, "/wms/orders", params={"limit": 5}).json()["data"]
    wanted = [orders[3]["id"], orders[1]["id"], "ord_nope_1"]
    body = sandbox.wms(
        token, "/wms/orders", params={"ids[in]": ",".join(wanted), "status": "nonsense-ignored"}
    ).json()
    assert [o["id"] for o in body["data"]] == wanted[:2]


def test_date_filters_are_index_ranges(sandbox, linked):
    token = linked["access_token"]
    orders, _ = _all_pages(sandbox, token, "/wms/orders")
    records = sandbox.wms(token, "/wms/orders", params={"ids[in]": ",".join(orders)}).json()["data"]
    pivot = sorted(r["created_date"] for r in records)[20]
    newer = sandbox.wms(token, "/wms/orders", params={"created_date[gte]": pivot}).json()["data"]
    assert {r["id"] for r in newer} == {r["id"] for r in records if r["created_date"] >= pivot}
    older = sandbox.wms(token, "/wms/orders", params={"created_date[lt]": pivot}).json()["data"]
    assert len(older) + len(newer) == len(records)


def test_mutate_moves_updated_date(sandbox, linked):
    token, cid = linked["access_token"], linked["connection_id"]
    before = datetime.now(UTC) - timedelta(milliseconds=5)
    since = before.isoformat().replace("+00:00", "Z")
    assert (
        sandbox.wms(token, "/wms/orders", params={"updated_date[gte]": since}).json()["data"] == []
    )
    changed = sandbox.mutate(cid, "orders", count=7)["updated_ids"]
    ids, _ = _all_pages(sandbox, token, "/wms/orders", limit=2, **{"updated_date[gte]": since})
    assert sorted(ids) == sorted(changed)
    # A mutated record keeps its place in the full listing and is not duplicated.
    everything, _ = _all_pages(sandbox, token, "/wms/orders", limit=9)
    assert len(everything) == len(set(everything)) == 50
    inventory = sandbox.mutate(cid, "inventory", count=2)["updated_ids"]
    body = sandbox.wms(token, "/wms/inventory", params={"updated_date[gte]": since}).json()
    assert sorted(r["id"] for r in body["data"]) == sorted(inventory)


def test_mutate_can_create_records(sandbox, linked):
    token, cid = linked["access_token"], linked["connection_id"]
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    created = sandbox.mutate(cid, "products", count=0, create=2)["created_ids"]
    body = sandbox.wms(token, "/wms/products", params={"updated_date[gte]": since}).json()
    assert [r["id"] for r in body["data"]] == created
    ids, _ = _all_pages(sandbox, token, "/wms/products")
    assert len(ids) == 12


def test_a_million_orders_cost_nothing_until_read(sandbox, linked):
    token, cid = linked["access_token"], linked["connection_id"]
    sandbox.dataset(cid, orders=1_000_000)
    assert sandbox.connection(cid)["counts"]["orders"] == 1_000_000
    first = sandbox.wms(token, "/wms/orders", params={"limit": 1000}).json()
    assert len(first["data"]) == 1000
    last_id = first["data"][0]["id"].rsplit("_", 1)[0] + "_999999"
    body = validate("GET", "/wms/orders/{order_id}", sandbox.wms(token, f"/wms/orders/{last_id}"))
    tail = sandbox.wms(
        token, "/wms/orders", params={"updated_date[gte]": body["data"]["updated_date"]}
    ).json()
    assert [r["id"] for r in tail["data"]] == [last_id]
    assert tail["next_token"] is None


def test_data_is_deterministic_per_connection(sandbox, linked):
    token = linked["access_token"]
    a = sandbox.wms(token, "/wms/orders", params={"limit": 5}).json()
    b = sandbox.wms(token, "/wms/orders", params={"limit": 5}).json()
    assert a == b
    other = sandbox.connect("shipbob", {"api_key": "k"})
    c = sandbox.wms(other["access_token"], "/wms/orders", params={"limit": 5}).json()
    assert {r["id"] for r in c["data"]}.isdisjoint(r["id"] for r in a["data"])


def _ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.parametrize("resource", sorted(WMS_RESOURCES))
def test_every_record_carries_trackstar_dates(sandbox, linked, resource):
    token = linked["access_token"]
    anchor = _ms(sandbox.connection(linked["connection_id"])["anchor"])
    body = sandbox.wms(token, WMS_RESOURCES[resource]).json()
    assert body["data"]
    for record in body["data"]:
        for field in ("created_date", "updated_date"):
            # Trackstar saw each base change 90 s later, never after the dataset's anchor.
            assert _ms(record["trackstar_" + field]) == min(_ms(record[field]) + 90_000, anchor)
            assert record["trackstar_" + field].endswith("Z")


def test_trackstar_date_filters_are_index_ranges(sandbox, linked):
    token = linked["access_token"]
    records, _ = _all_pages(sandbox, token, "/wms/orders")
    body = sandbox.wms(token, "/wms/orders", params={"ids[in]": ",".join(records)}).json()
    stamps = sorted(r["trackstar_updated_date"] for r in body["data"])
    pivot = stamps[10]
    ids, _ = _all_pages(
        sandbox, token, "/wms/orders", limit=4, **{"trackstar_updated_date[gte]": pivot}
    )
    assert sorted(ids) == sorted(
        r["id"] for r in body["data"] if r["trackstar_updated_date"] >= pivot
    )
    older = sandbox.wms(token, "/wms/orders", params={"trackstar_created_date[lt]": pivot}).json()
    assert {r["id"] for r in older["data"]} == {
        r["id"] for r in body["data"] if r["trackstar_created_date"] < pivot
    }
    for params in ({"trackstar_updated_date[contains]": "x"}, {"trackstar_updated_date": "x"}):
        response = sandbox.wms(token, "/wms/orders", params=params)
        assert response.status_code == 422, params
    warehouses = sandbox.wms(
        token, "/wms/warehouses", params={"trackstar_created_date[gte]": pivot}
    )
    assert warehouses.status_code == 200


def test_mutation_moves_trackstar_updated_date(sandbox, linked):
    token, cid = linked["access_token"], linked["connection_id"]
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    (changed,) = sandbox.mutate(cid, "inventory", count=1)["updated_ids"]
    record = sandbox.wms(token, f"/wms/inventory/{changed}").json()["data"]
    assert record["trackstar_updated_date"] == record["updated_date"] >= since
    assert record["trackstar_created_date"] < since
    body = sandbox.wms(token, "/wms/inventory", params={"trackstar_updated_date[gte]": since})
    assert [r["id"] for r in body.json()["data"]] == [changed]


def test_late_ingested_records_show_only_with_the_trackstar_filter(
    sandbox, webhook_receiver, linked
):
    token, cid = linked["access_token"], linked["connection_id"]
    everything, _ = _all_pages(sandbox, token, "/wms/orders")
    mark = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    ids = sandbox.ingest_late(cid, "orders", 5)
    assert len(ids) == 5 and not set(ids) & set(everything)

    late, _ = _all_pages(
        sandbox, token, "/wms/orders", limit=2, **{"trackstar_updated_date[gte]": mark}
    )
    assert late == ids
    assert (
        sandbox.wms(token, "/wms/orders", params={"updated_date[gte]": mark}).json()["data"] == []
    )
    anchor = sandbox.connection(cid)["anchor"]
    records = sandbox.wms(token, "/wms/orders", params={"ids[in]": ",".join(ids)}).json()["data"]
    for record in records:
        assert record["created_date"] < record["updated_date"] < anchor
        assert record["trackstar_created_date"] >= mark
        assert record["trackstar_updated_date"] >= mark
    # Older than the updated_date of every record read before (any high-water mark).
    newest = max(
        r["updated_date"]
        for r in sandbox.wms(
            token, "/wms/orders", params={"ids[in]": ",".join(everything[-50:])}
        ).json()["data"]
    )
    assert max(r["updated_date"] for r in records) < newest
    # No webhooks for them: one thread delivers in order, so once a later change's webhook
    # has arrived, any for the late records would have arrived before it.
    marker = sandbox.mutate(cid, "inventory", count=1)["updated_ids"]
    webhook_receiver.wait_for(
        lambda e: e["event_type"] == "inventory.updated" and e["data"]["id"] == marker[0]
    )
    assert not [e for e in webhook_receiver.events() if e["event_type"].startswith("order.")]


@pytest.mark.parametrize(
    "body",
    [
        {"resource": "orders", "count": 0},
        {"resource": "orders", "count": 10_001},
        {"resource": "orders"},
        {"resource": "orders", "count": "5"},
        {"resource": "unicorns", "count": 1},
    ],
)
def test_ingest_late_refuses_bad_input(sandbox, linked, body):
    response = sandbox.post(f"/_sandbox/connections/{linked['connection_id']}/ingest-late", body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_ingest_late_accepts_underscore_names(sandbox, linked):
    ids = sandbox.ingest_late(linked["connection_id"], "inbound_shipments", 2)
    response = sandbox.wms(linked["access_token"], f"/wms/inbound-shipments/{ids[1]}")
    assert response.status_code == 200
