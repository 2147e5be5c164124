import json

import pytest
from werkzeug import Response

from connections.trackstar import (
    RESOURCE_ACTIONS,
    RESOURCES,
    SYNC_FUNCTIONS,
    ExchangeResult,
    TrackstarClient,
    TrackstarError,
    TrackstarNotFound,
)

from .conftest import ACCESS_TOKEN, API_KEY

CONNECTION = {
    "connection_id": "conn_1",
    "integration_name": "shipbob",
    "customer_id": "cust_1",
    "available_actions": ["get_orders"],
}


def only_request(httpserver):
    assert len(httpserver.log) == 1
    return httpserver.log[0][0]


def test_key_only_call_sends_api_key_and_no_access_token(httpserver, client):
    httpserver.expect_request("/link/token", method="POST").respond_with_json(
        {"link_token": "lt_1"}
    )

    assert client.create_link_token(customer_id="cust_1", connection_id="conn_1") == "lt_1"

    request = only_request(httpserver)
    assert request.headers["x-trackstar-api-key"] == API_KEY
    assert "x-trackstar-access-token" not in request.headers
    assert request.headers["User-Agent"] == "Dockside/1.0"
    assert request.get_json() == {"customer_id": "cust_1", "connection_id": "conn_1"}


def test_link_token_without_arguments_sends_empty_body(httpserver, client):
    httpserver.expect_request("/link/token", method="POST").respond_with_json(
        {"link_token": "lt_1"}
    )

    client.create_link_token()

    assert only_request(httpserver).get_json() == {}


def test_token_call_sends_api_key_and_access_token(httpserver, client):
    httpserver.expect_request("/connections", method="DELETE").respond_with_json(
        {"id": "conn_1", "object": "connection", "deleted": True}
    )

    assert client.delete_connection(access_token=ACCESS_TOKEN)["deleted"] is True

    request = only_request(httpserver)
    assert request.headers["x-trackstar-api-key"] == API_KEY
    assert request.headers["x-trackstar-access-token"] == ACCESS_TOKEN


def test_exchange_auth_code_returns_result_fields(httpserver, client):
    httpserver.expect_request("/link/exchange", method="POST").respond_with_json(
        {
            "access_token": ACCESS_TOKEN,
            "connection_id": "conn_1",
            "integration_name": "shipbob",
            "customer_id": "cust_1",
            "available_actions": ["get_inventory", "get_orders"],
            "available_endpoints": ["GET /inventory"],
        }
    )

    result = client.exchange_auth_code(auth_code="ac_1", customer_id="cust_1")

    assert result == ExchangeResult(
        access_token=ACCESS_TOKEN,
        connection_id="conn_1",
        integration_name="shipbob",
        customer_id="cust_1",
        available_actions=["get_inventory", "get_orders"],
    )
    request = only_request(httpserver)
    assert request.get_json() == {"auth_code": "ac_1", "customer_id": "cust_1"}
    assert "x-trackstar-access-token" not in request.headers
    assert ACCESS_TOKEN not in repr(result)


def test_exchange_without_access_token_is_an_error(httpserver, client):
    httpserver.expect_request("/link/exchange").respond_with_json(
        {"connection_id": "conn_1", "integration_name": "shipbob", "available_actions": []}
    )

    with pytest.raises(TrackstarError, match="access_token"):
        client.exchange_auth_code(auth_code="ac_1")


@pytest.mark.parametrize(
    "envelope",
    [{"data": CONNECTION}, {"data": [CONNECTION], "next_token": None, "total_count": 1}],
    ids=["object", "list"],
)
def test_get_connection_accepts_both_envelopes(httpserver, client, envelope):
    httpserver.expect_request("/connections/conn_1", method="GET").respond_with_json(envelope)

    assert client.get_connection("conn_1") == CONNECTION
    assert "x-trackstar-access-token" not in only_request(httpserver).headers


def test_get_connection_empty_list_is_malformed_not_a_deletion(httpserver, client):
    """Only Trackstar's 404 (which names the id) may say a connection is gone: deciding so
    erases its token."""
    httpserver.expect_request("/connections/conn_1").respond_with_json({"data": []})

    with pytest.raises(TrackstarError) as excinfo:
        client.get_connection("conn_1")
    assert not isinstance(excinfo.value, TrackstarNotFound)


def test_get_connection_refuses_a_different_connection(httpserver, client):
    other = {**CONNECTION, "connection_id": "conn_2"}
    httpserver.expect_request("/connections/conn_1").respond_with_json({"data": [other]})

    with pytest.raises(TrackstarError):
        client.get_connection("conn_1")


def test_ids_are_quoted_into_one_path_segment(httpserver, client):
    # The server decodes the path before matching; RAW_URI shows what was sent.
    httpserver.expect_request("/wms/orders/a/b?c").respond_with_json({"data": {"id": "a/b?c"}})

    assert client.get_record("orders", "a/b?c", access_token=ACCESS_TOKEN) == {"id": "a/b?c"}
    request = only_request(httpserver)
    assert request.environ["RAW_URI"] == "/wms/orders/a%2Fb%3Fc"
    assert request.query_string == b""


def test_list_connections_paginates_and_filters_by_customer(httpserver, client):
    other = {**CONNECTION, "connection_id": "conn_2", "customer_id": "cust_2"}
    httpserver.expect_ordered_request("/connections").respond_with_json(
        {"data": [CONNECTION], "next_token": "t1", "total_count": 1}
    )
    httpserver.expect_ordered_request("/connections").respond_with_json(
        {"data": [other], "next_token": None, "total_count": 1}
    )

    connections = list(client.list_connections(customer_id="cust_1"))

    # GET /connections takes page_token only (anything else is a 422, API.md §10): the
    # client picks the customer's connections out itself.
    assert connections == [CONNECTION]
    first, second = (request for request, _ in httpserver.log)
    assert first.args.to_dict() == {}
    assert second.args.to_dict() == {"page_token": "t1"}


def test_force_sync_sends_functions(httpserver, client):
    httpserver.expect_request("/connections/sync", method="POST").respond_with_json(
        {"id": "conn_1", "syncing": True, "functions_to_sync": ["get_orders"]}
    )

    result = client.force_sync(access_token=ACCESS_TOKEN, functions=["get_orders"])

    assert result["syncing"] is True
    request = only_request(httpserver)
    assert request.get_json() == {"functions_to_sync": ["get_orders"]}
    assert request.headers["x-trackstar-access-token"] == ACCESS_TOKEN


def test_force_sync_rejects_unknown_function(httpserver, client):
    with pytest.raises(ValueError, match="get_order"):
        client.force_sync(access_token=ACCESS_TOKEN, functions=["get_order"])
    assert httpserver.log == []


def test_list_integrations(httpserver, client):
    integrations = [{"integration_name": "shipbob", "display_name": "ShipBob"}]
    httpserver.expect_request("/integrations/wms", method="GET").respond_with_json(
        {"data": integrations}
    )

    assert client.list_integrations() == integrations
    assert "x-trackstar-access-token" not in only_request(httpserver).headers


def test_get_record_returns_data(httpserver, client):
    httpserver.expect_request("/wms/billing/bill_1").respond_with_json(
        {"data": {"id": "bill_1", "amount": 3.5}}
    )

    assert client.get_record("bills", "bill_1", access_token=ACCESS_TOKEN) == {
        "id": "bill_1",
        "amount": 3.5,
    }
    assert only_request(httpserver).headers["x-trackstar-access-token"] == ACCESS_TOKEN


def test_redirects_are_not_followed(httpserver, client):
    # Following one would send the API key header to wherever the Location points.
    httpserver.expect_request("/integrations/wms").respond_with_response(
        Response(status=302, headers={"Location": httpserver.url_for("/elsewhere")})
    )

    with pytest.raises(TrackstarError) as excinfo:
        client.list_integrations()

    assert excinfo.value.status_code == 302
    assert [request.path for request, _ in httpserver.log] == ["/integrations/wms"]


def test_success_body_that_is_not_json_is_an_error(httpserver, client):
    httpserver.expect_request("/integrations/wms").respond_with_data("<html>ok</html>")

    with pytest.raises(TrackstarError, match="not a JSON object") as excinfo:
        client.list_integrations()

    assert isinstance(excinfo.value.__cause__, json.JSONDecodeError)


# The functions_to_sync enum of ConnectionResourceSyncSchema in openapi.json (2025-10-13).
OPENAPI_SYNC_FUNCTIONS = {
    "get_inventory",
    "get_products",
    "get_inbound_shipments",
    "get_orders",
    "get_warehouses",
    "get_shipping_methods",
    "get_returns",
    "get_bills",
    "get_warehouse_customers",
    "get_warehouse_locations",
    "get_inventory_ledger",
    "get_shipments",
}


def test_action_names_match_openapi_enum():
    assert SYNC_FUNCTIONS == OPENAPI_SYNC_FUNCTIONS
    assert set(RESOURCE_ACTIONS) == set(RESOURCES)
    assert set(RESOURCE_ACTIONS.values()) <= OPENAPI_SYNC_FUNCTIONS


@pytest.mark.parametrize("base_url", ["", "ftp://example.com", "example.com"])
def test_base_url_must_be_http(base_url):
    with pytest.raises(ValueError):
        TrackstarClient(base_url, API_KEY)


JOB = {
    "id": "job_1",
    "connection_id": "conn_1",
    "function_name": "get_orders",
    "status": "open",
    "requested_start_time": "2025-12-01T00:00:00Z",
    "requested_end_time": "2026-01-01T00:00:00Z",
    "created_at": "2026-11-30T10:00:00Z",
}


@pytest.mark.parametrize(
    "envelope", [lambda job: {"data": job}, lambda job: job], ids=["data-envelope", "bare"]
)
def test_on_demand_syncs_create_get_and_cancel(httpserver, client, envelope):
    from datetime import UTC, datetime

    httpserver.expect_request("/connections/on-demand-syncs", method="POST").respond_with_json(
        envelope(JOB)
    )
    httpserver.expect_request("/connections/on-demand-syncs/job_1").respond_with_json(envelope(JOB))
    httpserver.expect_request(
        "/connections/on-demand-syncs/job_1/cancel", method="POST"
    ).respond_with_json(envelope({**JOB, "status": "cancelled"}))

    created = client.create_on_demand_sync(
        access_token=ACCESS_TOKEN,
        function_name="get_orders",
        start_time=datetime(2025, 12, 1, tzinfo=UTC),
        end_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    fetched = client.get_on_demand_sync("job_1", access_token=ACCESS_TOKEN)
    cancelled = client.cancel_on_demand_sync("job_1", access_token=ACCESS_TOKEN)

    assert created == fetched == JOB
    assert cancelled["status"] == "cancelled"
    post = httpserver.log[0][0]
    assert post.get_json() == {
        "function_name": "get_orders",
        "start_time": "2025-12-01T00:00:00Z",
        "end_time": "2026-01-01T00:00:00Z",
    }
    assert post.headers["x-trackstar-access-token"] == ACCESS_TOKEN
