"""The API key and access tokens must never reach a log line, an error message or a repr."""

import logging
import socket

import pytest

from connections.trackstar import TrackstarClient, TrackstarError

from .conftest import ACCESS_TOKEN, API_KEY

AUTH_CODE = "authcode_secret_77aa"
SECRETS = (API_KEY, ACCESS_TOKEN, AUTH_CODE)


def assert_no_secrets(text):
    for secret in SECRETS:
        assert secret not in text


def test_client_repr_hides_api_key(client):
    assert_no_secrets(repr(client))
    assert_no_secrets(str(client))
    assert "TrackstarClient" in repr(client)


# Each status gets an error body that echoes every secret, as a careless server might.
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429, 500, 501, 503])
def test_error_messages_never_contain_secrets(httpserver, client, status, caplog):
    echo = f"bad key {API_KEY} token {ACCESS_TOKEN}"
    httpserver.expect_request("/wms/orders/ord_1").respond_with_json(
        {"error": echo, "origin": echo, "id": echo, "detail": {"body": {echo: [echo]}}},
        status=status,
        headers={"retry-after": "1"},
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(TrackstarError) as excinfo:
        client.get_record("orders", "ord_1", access_token=ACCESS_TOKEN)

    error = excinfo.value
    assert error.status_code == status
    assert "[redacted]" in error.message
    assert_no_secrets(str(error))
    assert_no_secrets(repr(error))
    assert_no_secrets(repr(vars(error)))
    assert_no_secrets(caplog.text)


def test_exchange_error_hides_auth_code(httpserver, client):
    httpserver.expect_request("/link/exchange").respond_with_json(
        {"error": f"Auth code {AUTH_CODE} expired"}, status=400
    )

    with pytest.raises(TrackstarError) as excinfo:
        client.exchange_auth_code(auth_code=AUTH_CODE)

    assert_no_secrets(str(excinfo.value))


def test_transport_errors_never_contain_secrets(httpserver, slow_response, caplog):
    caplog.set_level(logging.DEBUG)

    httpserver.expect_request("/connections/sync").respond_with_handler(slow_response)
    slow_client = TrackstarClient(httpserver.url_for("/"), API_KEY, timeout=(1.0, 0.1))
    with pytest.raises(TrackstarError) as timed_out:
        slow_client.force_sync(access_token=ACCESS_TOKEN)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed_client = TrackstarClient(f"http://127.0.0.1:{port}", API_KEY)
    with pytest.raises(TrackstarError) as refused:
        closed_client.delete_connection(access_token=ACCESS_TOKEN)

    # A newline in a header value makes requests raise InvalidHeader, quoting the value.
    bad_token = f"{ACCESS_TOKEN}\n"
    with pytest.raises(TrackstarError) as invalid:
        closed_client.delete_connection(access_token=bad_token)

    for excinfo in (timed_out, refused, invalid):
        assert_no_secrets(str(excinfo.value))
        assert_no_secrets(repr(excinfo.value))
        assert_no_secrets(str(excinfo.value.__cause__ or ""))
    assert_no_secrets(caplog.text)


def test_successful_calls_log_without_secrets(httpserver, client, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request("/link/exchange").respond_with_json(
        {
            "access_token": ACCESS_TOKEN,
            "connection_id": "conn_1",
            "integration_name": "sandbox",
            "customer_id": None,
            "available_actions": [],
        },
        headers={"X-Request-Id": "req_9"},
    )
    httpserver.expect_request("/wms/orders").respond_with_json({"data": [], "next_token": None})

    result = client.exchange_auth_code(auth_code=AUTH_CODE)
    list(client.iter_records("orders", access_token=result.access_token))

    messages = [r.getMessage() for r in caplog.records if r.name == "connections.trackstar.client"]
    assert len(messages) == 2
    assert messages[0].startswith("trackstar POST /link/exchange -> 200 in ")
    assert messages[0].endswith("(request id req_9)")
    assert messages[1].startswith("trackstar GET /wms/orders -> 200 in ")
    assert_no_secrets(caplog.text)
    assert_no_secrets(repr(result))
