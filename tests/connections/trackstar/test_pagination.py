from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from connections.trackstar import (
    Page,
    TrackstarClient,
    TrackstarPaginationError,
    encode_filters,
)

from .conftest import ACCESS_TOKEN, API_KEY

FILTERS = {
    "updated_date": {"gte": datetime(2026, 1, 1, tzinfo=UTC)},
    "status": "open",
    "ids": {"in": ["a", "b"]},
    "sku": {"contains": "X"},
}
EXPECTED_FILTER_PARAMS = {
    "updated_date[gte]": "2026-01-01T00:00:00Z",
    "status": "open",
    "ids[in]": "a,b",
    "sku[contains]": "X",
}


def serve_pages(httpserver, path, pages):
    for page in pages:
        httpserver.expect_ordered_request(path, method="GET").respond_with_json(page)


def test_pages_repeat_filters_and_limit(httpserver, client):
    serve_pages(
        httpserver,
        "/wms/orders",
        [
            {"data": [{"id": "o1"}, {"id": "o2"}], "next_token": "t1", "total_count": 2},
            {"data": [{"id": "o3"}], "next_token": "t2", "total_count": 1},
            {"data": [], "next_token": None, "total_count": 0},
        ],
    )

    pages = list(client.iter_pages("orders", access_token=ACCESS_TOKEN, filters=FILTERS, limit=2))

    assert pages == [
        Page(records=[{"id": "o1"}, {"id": "o2"}], next_token="t1", total_count=2, page_number=1),
        Page(records=[{"id": "o3"}], next_token="t2", total_count=1, page_number=2),
        Page(records=[], next_token=None, total_count=0, page_number=3),
    ]
    queries = [request.args.to_dict() for request, _ in httpserver.log]
    assert queries == [
        {**EXPECTED_FILTER_PARAMS, "limit": "2"},
        {**EXPECTED_FILTER_PARAMS, "limit": "2", "page_token": "t1"},
        {**EXPECTED_FILTER_PARAMS, "limit": "2", "page_token": "t2"},
    ]
    for request, _ in httpserver.log:
        assert request.headers["x-trackstar-access-token"] == ACCESS_TOKEN
        assert request.headers["x-trackstar-api-key"] == API_KEY


def test_iter_records_flattens_pages(httpserver, client):
    serve_pages(
        httpserver,
        "/wms/inbound-shipments",
        [
            {"data": [{"id": "a1"}], "next_token": "t1"},
            {"data": [{"id": "a2"}, {"id": "a3"}], "next_token": ""},
        ],
    )

    records = client.iter_records("inbound_shipments", access_token=ACCESS_TOKEN)

    assert [r["id"] for r in records] == ["a1", "a2", "a3"]
    assert httpserver.log[0][0].args.to_dict() == {"limit": "1000"}


def test_page_cap_stops_pagination(httpserver):
    for n in range(3):
        httpserver.expect_ordered_request("/wms/products").respond_with_json(
            {"data": [{"id": f"p{n}"}], "next_token": f"t{n}"}
        )
    client = TrackstarClient(httpserver.url_for("/"), API_KEY, max_pages=2)

    pages = client.iter_pages("products", access_token=ACCESS_TOKEN)
    received = [next(pages), next(pages)]
    with pytest.raises(TrackstarPaginationError, match="2 pages"):
        next(pages)

    assert [page.page_number for page in received] == [1, 2]
    assert len(httpserver.log) == 2


def test_repeated_token_stops_pagination(httpserver, client):
    serve_pages(
        httpserver,
        "/wms/inventory",
        [
            {"data": [{"id": "i1"}], "next_token": "t1"},
            {"data": [{"id": "i2"}], "next_token": "t2"},
            {"data": [{"id": "i3"}], "next_token": "t1"},
        ],
    )

    records = []
    with pytest.raises(TrackstarPaginationError, match="repeated a page token"):
        for record in client.iter_records("inventory", access_token=ACCESS_TOKEN):
            records.append(record["id"])

    assert records == ["i1", "i2", "i3"]
    assert len(httpserver.log) == 3


def test_unknown_resource_is_value_error(httpserver, client):
    with pytest.raises(ValueError, match="shipments"):
        client.iter_pages("shipments", access_token=ACCESS_TOKEN)
    with pytest.raises(ValueError):
        client.get_record("labor", "x", access_token=ACCESS_TOKEN)
    assert httpserver.log == []


@pytest.mark.parametrize("limit", [0, 1001])
def test_limit_out_of_range_is_value_error(client, limit):
    with pytest.raises(ValueError, match="limit"):
        client.iter_pages("orders", access_token=ACCESS_TOKEN, limit=limit)


def test_bad_filter_fails_before_any_request(httpserver, client):
    with pytest.raises(ValueError, match="like"):
        client.iter_pages("orders", access_token=ACCESS_TOKEN, filters={"sku": {"like": "X"}})
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"active": True}, {"active": "true"}),
        ({"active": {"neq": False}}, {"active[neq]": "false"}),
        ({"status": {"nin": ("a", "b", "c")}}, {"status[nin]": "a,b,c"}),
        ({"status": ["a", "b"]}, {"status": "a,b"}),
        (
            {"updated_date": {"gte": datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))}},
            {"updated_date[gte]": "2026-01-01T00:00:00Z"},
        ),
        (
            {"created_date": {"lt": datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)}},
            {"created_date[lt]": "2026-03-04T05:06:07.890000Z"},
        ),
        ({"required_ship_date": date(2026, 5, 1)}, {"required_ship_date": "2026-05-01"}),
        ({"quantity": {"gt": 5, "lte": 10}}, {"quantity[gt]": "5", "quantity[lte]": "10"}),
        ({"order_number": {"eq-insensitive": "ab1"}}, {"order_number[eq-insensitive]": "ab1"}),
        (None, {}),
    ],
)
def test_encode_filters(filters, expected):
    assert encode_filters(filters) == expected


@pytest.mark.parametrize(
    "filters",
    [
        {"sku": {"like": "X"}},
        {"sku": {}},
        {"ids": {"in": []}},
        {"ids": {"in": [str(n) for n in range(101)]}},
        {"ids": {"in": ["a,b"]}},
        {"updated_date": {"gte": datetime(2026, 1, 1)}},  # noqa: DTZ001 - naive on purpose
        {"status": None},
        {"status": object()},
        {"limit": 5},
        {"page_token": "x"},
        {"sku[eq]": "X"},
    ],
)
def test_encode_filters_rejects(filters):
    with pytest.raises(ValueError):
        encode_filters(filters)
