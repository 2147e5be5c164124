import email.utils
import pickle
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

from connections.trackstar import (
    TrackstarAuthError,
    TrackstarBadRequest,
    TrackstarClient,
    TrackstarError,
    TrackstarForbidden,
    TrackstarNotFound,
    TrackstarNotImplemented,
    TrackstarRateLimited,
    TrackstarUnavailable,
    TrackstarValidationError,
    parse_retry_after,
)

from .conftest import ACCESS_TOKEN, API_KEY


def fail_orders(httpserver, status, body=None, headers=None):
    httpserver.expect_request("/wms/orders/ord_1").respond_with_json(
        body if body is not None else {"error": f"status {status}", "origin": "trackstar"},
        status=status,
        headers={"X-Request-Id": "req_123", **(headers or {})},
    )


def get_order(client):
    return client.get_record("orders", "ord_1", access_token=ACCESS_TOKEN)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, TrackstarBadRequest),
        (401, TrackstarAuthError),
        (403, TrackstarForbidden),  # a missing permission, not bad credentials
        (409, TrackstarBadRequest),
        (500, TrackstarUnavailable),
        (501, TrackstarNotImplemented),
        (503, TrackstarUnavailable),
    ],
)
def test_status_maps_to_error_class(httpserver, client, status, error_class):
    fail_orders(httpserver, status)

    with pytest.raises(error_class) as excinfo:
        get_order(client)

    error = excinfo.value
    assert error.status_code == status
    assert error.message == f"status {status}"
    assert error.origin == "trackstar"
    assert error.request_id == "req_123"
    assert error.path == "/wms/orders/ord_1"
    assert str(error) == (
        f"status {status} (HTTP {status}, GET /wms/orders/ord_1, origin trackstar,"
        " request id req_123)"
    )


def test_400_keeps_trackstars_message(httpserver, client):
    httpserver.expect_request("/link/exchange").respond_with_json(
        {"error": "Auth code expired", "origin": "trackstar"}, status=400
    )

    with pytest.raises(TrackstarBadRequest, match="Auth code expired"):
        client.exchange_auth_code(auth_code="ac_1")


def test_404_carries_object_id(httpserver, client):
    fail_orders(httpserver, 404, {"error": "Order not found", "id": "ord_1"})

    with pytest.raises(TrackstarNotFound) as excinfo:
        get_order(client)

    assert excinfo.value.object_id == "ord_1"
    assert excinfo.value.message == "Order not found"


def test_422_carries_detail(httpserver, client):
    detail = {"query": {"status[foo]": ["Unknown field."]}}
    fail_orders(httpserver, 422, {"error": "Validation error", "detail": detail})

    with pytest.raises(TrackstarValidationError) as excinfo:
        get_order(client)

    assert excinfo.value.detail == detail


def test_integration_origin_message_is_passed_on(httpserver, client):
    fail_orders(httpserver, 400, {"error": "SKU ABC does not exist", "origin": "integration"})

    with pytest.raises(TrackstarBadRequest) as excinfo:
        get_order(client)

    assert excinfo.value.origin == "integration"
    assert excinfo.value.message == "SKU ABC does not exist"


def test_429_with_retry_after_seconds(httpserver, client):
    fail_orders(httpserver, 429, headers={"retry-after": "7", "x-ratelimit-reset": "1"})

    with pytest.raises(TrackstarRateLimited) as excinfo:
        get_order(client)

    assert excinfo.value.retry_after == 7.0


def test_429_with_http_date_retry_after(httpserver, client):
    when = datetime.now(UTC) + timedelta(seconds=30)
    fail_orders(httpserver, 429, headers={"retry-after": email.utils.format_datetime(when, True)})

    with pytest.raises(TrackstarRateLimited) as excinfo:
        get_order(client)

    assert 25 <= excinfo.value.retry_after <= 30


def test_429_with_only_ratelimit_reset(httpserver, client):
    fail_orders(httpserver, 429, headers={"x-ratelimit-reset": str(int(time.time()) + 20)})

    with pytest.raises(TrackstarRateLimited) as excinfo:
        get_order(client)

    assert 15 <= excinfo.value.retry_after <= 20


def test_429_without_headers_defaults_to_one_second(httpserver, client):
    fail_orders(httpserver, 429)

    with pytest.raises(TrackstarRateLimited) as excinfo:
        get_order(client)

    assert excinfo.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "Thu, 01 Jan 2026 00:00:00 GMT"}, 0.0),  # in the past
        ({"retry-after": "soon"}, 1.0),
        ({"retry-after": "nan"}, 1.0),
        ({"x-ratelimit-reset": "1800000005"}, 5.0),
        ({"x-ratelimit-reset": "1799999990"}, 0.0),
        ({"x-ratelimit-reset": "3"}, 3.0),  # a small number is a delta, not an epoch
        ({"retry-after": "Fri, 15 Jan 2027 08:00:10 GMT"}, 10.0),
    ],
)
def test_parse_retry_after(headers, expected):
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert parse_retry_after(headers, now=now) == pytest.approx(expected)


def test_non_json_502_is_unavailable(httpserver, client):
    httpserver.expect_request("/wms/orders/ord_1").respond_with_data(
        "<html><body>Bad Gateway</body></html>", status=502, content_type="text/html"
    )

    with pytest.raises(TrackstarUnavailable) as excinfo:
        get_order(client)

    assert excinfo.value.status_code == 502
    assert "html" not in str(excinfo.value).lower()


def test_timeout_is_unavailable(httpserver, slow_response):
    httpserver.expect_request("/integrations/wms").respond_with_handler(slow_response)
    client = TrackstarClient(httpserver.url_for("/"), API_KEY, timeout=(1.0, 0.1))

    with pytest.raises(TrackstarUnavailable, match="did not answer in time") as excinfo:
        client.list_integrations()

    assert excinfo.value.__cause__ is not None
    assert excinfo.value.path == "/integrations/wms"


def test_connection_refused_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = TrackstarClient(f"http://127.0.0.1:{port}", API_KEY, timeout=(1.0, 1.0))

    with pytest.raises(TrackstarUnavailable, match="Could not connect") as excinfo:
        client.list_integrations()

    assert excinfo.value.__cause__ is not None


def test_errors_survive_pickling():
    # Celery serialises exceptions (task results, retries); the attributes must survive.
    error = TrackstarRateLimited("slow down", retry_after=4.0, status_code=429, path="/x")

    restored = pickle.loads(pickle.dumps(error))

    assert isinstance(restored, TrackstarRateLimited)
    assert (restored.retry_after, restored.status_code, str(restored)) == (
        4.0,
        429,
        str(error),
    )


def test_all_errors_are_trackstar_errors():
    for error_class in (
        TrackstarAuthError,
        TrackstarBadRequest,
        TrackstarNotFound,
        TrackstarNotImplemented,
        TrackstarRateLimited,
        TrackstarUnavailable,
        TrackstarValidationError,
    ):
        assert issubclass(error_class, TrackstarError)
