import time

import pytest

from tests.sandbox.conftest import WMS_RESOURCES
from tests.sandbox.spec import template_for, validate, validate_error


def _wms(sandbox, token, path, **params):
    return sandbox.wms(token, path, params=params)


def test_every_response_has_a_request_id(sandbox):
    response = sandbox.get("/connections", headers=sandbox.headers)
    assert response.headers["x-request-id"].startswith("req_")
    assert sandbox.get("/nope").headers["x-request-id"]


def test_wrong_api_key_is_401(sandbox):
    response = sandbox.get("/connections", headers={"x-trackstar-api-key": "nope"})
    assert response.status_code == 401
    assert validate_error(response)["origin"] == "trackstar"
    assert sandbox.get("/connections").status_code == 401


def test_wms_needs_a_known_access_token(sandbox, linked):
    assert _wms(sandbox, "trackstar_unknown", "/wms/orders").status_code == 401
    response = sandbox.get("/wms/orders", headers=sandbox.headers)
    assert response.status_code == 401
    assert "access-token" in validate_error(response)["error"]


def test_link_token_and_exchange_match_the_spec(sandbox):
    response = sandbox.post("/link/token", {"customer_id": "cust_9"}, headers=sandbox.headers)
    link_token = validate("POST", "/link/token", response)["link_token"]
    auth_code = sandbox.authorize(link_token, "shiphero", {"username": "u", "password": "p"})
    response = sandbox.post("/link/exchange", {"auth_code": auth_code}, headers=sandbox.headers)
    body = validate("POST", "/link/exchange", response)
    assert body["integration_name"] == "shiphero"
    assert body["customer_id"] == "cust_9"
    assert "get_orders" in body["available_actions"]


def test_an_exchange_answers_with_the_customer_of_the_link_token_that_made_the_code(sandbox):
    # API.md §3: the customer_id given to /link/token is stored on the connection.
    link_token = sandbox.link_token(customer_id="cust_a")
    auth_code = sandbox.authorize(link_token, "shipbob", {"api_key": "k"})

    body = sandbox.exchange(auth_code)

    assert body["customer_id"] == "cust_a"
    assert sandbox.connection(body["connection_id"])["customer_id"] == "cust_a"


def test_auth_code_is_single_use(sandbox):
    auth_code = sandbox.authorize(sandbox.link_token(), "shipbob", {"api_key": "k"})
    sandbox.exchange(auth_code)
    response = sandbox.post("/link/exchange", {"auth_code": auth_code}, headers=sandbox.headers)
    assert response.status_code == 422
    assert "already been used" in validate("POST", "/link/exchange", response)["error"]


def test_unknown_auth_code_is_422(sandbox):
    response = sandbox.post("/link/exchange", {"auth_code": "ac_nope"}, headers=sandbox.headers)
    assert response.status_code == 422
    assert validate("POST", "/link/exchange", response)["detail"]["json"]["auth_code"]


def test_auth_code_expires(sandbox):
    sandbox.configure(auth_code_ttl=0.2)
    auth_code = sandbox.authorize(sandbox.link_token(), "shipbob", {"api_key": "k"})
    time.sleep(0.4)
    response = sandbox.post("/link/exchange", {"auth_code": auth_code}, headers=sandbox.headers)
    assert response.status_code == 422
    assert "expired" in response.json()["error"]


def test_link_token_expires(sandbox):
    sandbox.configure(link_token_ttl=0.2)
    link_token = sandbox.link_token()
    time.sleep(0.4)
    body = {
        "link_token": link_token,
        "integration_name": "shipbob",
        "credentials": {"api_key": "k"},
    }
    response = sandbox.post("/_sandbox/link/authorize", body)
    assert response.status_code == 400
    assert "expired" in response.json()["error"]


@pytest.mark.parametrize(
    ("integration", "credentials", "message"),
    [
        ("shipbob", {"api_key": "wrong"}, "ShipBob rejected these credentials: invalid API key."),
        ("shiphero", {"username": "a", "password": "so-wrong"}, "ShipHero rejected"),
        ("extensiv-3pl-central", {"client_id": "a", "tpl_guid": "g"}, "Client secret"),
        ("shipbob", {}, "Please fill in: API key."),
    ],
)
def test_authorize_refuses_bad_credentials(sandbox, integration, credentials, message):
    body = {
        "link_token": sandbox.link_token(),
        "integration_name": integration,
        "credentials": credentials,
    }
    response = sandbox.post("/_sandbox/link/authorize", body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_reinstall_keeps_connection_id_and_token_and_repairs(sandbox, linked):
    cid = linked["connection_id"]
    sandbox.break_connection(cid)
    # Broken credentials never stop reads: Trackstar serves its own copy.
    assert _wms(sandbox, linked["access_token"], "/wms/orders").status_code == 200
    link_token = sandbox.link_token(connection_id=cid)
    wrong = {"link_token": link_token, "integration_name": "shiphero", "credentials": {}}
    assert sandbox.post("/_sandbox/link/authorize", wrong).status_code == 400
    again = sandbox.exchange(sandbox.authorize(link_token, "shipbob", {"api_key": "new"}))
    assert again["connection_id"] == cid
    assert again["access_token"] == linked["access_token"]
    assert _wms(sandbox, linked["access_token"], "/wms/orders").status_code == 200
    assert sandbox.connection(cid)["broken"] is False
    assert sandbox.get_connection(cid)["errors"] == []


def test_reinstall_modal_data_names_the_integration(sandbox, linked):
    link_token = sandbox.link_token(connection_id=linked["connection_id"])
    body = sandbox.get("/_sandbox/link/integrations", params={"link_token": link_token}).json()
    assert body["reinstall"] == "shipbob"


def test_link_token_for_unknown_connection_is_422(sandbox):
    response = sandbox.post("/link/token", {"connection_id": "conn_x"}, headers=sandbox.headers)
    assert response.status_code == 422
    validate("POST", "/link/token", response)


def test_break_and_repair(sandbox, linked):
    token = linked["access_token"]
    before = _wms(sandbox, token, "/wms/inventory").json()
    sandbox.break_connection(linked["connection_id"])
    response = _wms(sandbox, token, "/wms/inventory")
    assert response.status_code == 200
    assert response.json() == before
    listed = validate("GET", "/connections", sandbox.get("/connections", headers=sandbox.headers))
    assert listed["data"][0]["errors"][0]["error_message"]
    sandbox.repair_connection(linked["connection_id"])
    assert _wms(sandbox, token, "/wms/inventory").status_code == 200
    assert sandbox.get_connection(linked["connection_id"])["errors"] == []


def test_connections_list_and_get(sandbox):
    first = sandbox.connect("shipbob", {"api_key": "k"}, customer_id="a")
    sandbox.connect("deposco", {"company_code": "c", "username": "u", "password": "p"})
    response = sandbox.get("/connections", headers=sandbox.headers)
    listed = validate("GET", "/connections", response)
    assert len(listed["data"]) == 2 and listed["next_token"] is None
    assert listed["total_count"] == 2

    response = sandbox.get(f"/connections/{first['connection_id']}", headers=sandbox.headers)
    body = validate("GET", "/connections/{connection_id}", response)
    # The docs' object envelope, not the 2025 OAS's list (API.md §10).
    assert body["data"]["connection_id"] == first["connection_id"]
    assert body["data"]["customer_id"] == "a"
    assert set(body["data"]["historical_sync_completed"]) == set(first["available_actions"])
    response = sandbox.get("/connections/conn_nope", headers=sandbox.headers)
    assert response.status_code == 404
    assert validate("GET", "/connections/{connection_id}", response)["id"] == "conn_nope"


def test_patch_sync_and_delete_connection(sandbox, linked):
    headers = {**sandbox.headers, "x-trackstar-access-token": linked["access_token"]}
    response = sandbox.session.patch(
        sandbox.url("/connections"), json={"customer_id": "c2"}, headers=headers, timeout=5
    )
    assert validate("PATCH", "/connections", response)["updated"] is True
    assert sandbox.connection(linked["connection_id"])["customer_id"] == "c2"
    response = sandbox.post(
        "/connections/sync", {"functions_to_sync": ["get_orders"]}, headers=headers
    )
    assert validate("POST", "/connections/sync", response)["functions_to_sync"] == ["get_orders"]
    response = sandbox.post("/connections/sync", {"functions_to_sync": ["nope"]}, headers=headers)
    assert response.status_code == 422
    response = sandbox.session.delete(sandbox.url("/connections"), headers=headers, timeout=5)
    assert validate("DELETE", "/connections", response)["deleted"] is True
    assert _wms(sandbox, linked["access_token"], "/wms/orders").status_code == 401


def test_integrations(sandbox):
    response = sandbox.get("/integrations/wms", headers=sandbox.headers)
    body = validate("GET", "/integrations/{integration_type}", response)
    names = {i["integration_name"] for i in body["data"]}
    assert {
        "sandbox",
        "shipbob",
        "shiphero",
        "extensiv-3pl-central",
        "deposco",
        "infoplus",
    } <= names
    response = sandbox.get("/integrations/wms/infoplus", headers=sandbox.headers)
    infoplus = validate("GET", "/integrations/{integration_type}/{integration_name}", response)
    assert "get_returns" not in infoplus["data"][0]["available_actions"]
    logo = sandbox.get(infoplus["data"][0]["logo_url"].removeprefix(sandbox.base_url))
    assert logo.headers["content-type"].startswith("image/svg+xml")
    response = sandbox.get("/integrations/wms/nope", headers=sandbox.headers)
    assert response.status_code == 404
    validate("GET", "/integrations/{integration_type}/{integration_name}", response)


def test_magic_links(sandbox):
    body = {"integration_allow_list": ["shipbob"], "link_duration": 3, "customer_id": "c"}
    response = sandbox.post("/magic-links", body, headers=sandbox.headers)
    link = validate("POST", "/magic-links", response)["magic_link"]
    response = sandbox.get("/magic-links", headers=sandbox.headers)
    assert [m["id"] for m in validate("GET", "/magic-links", response)["magic_links"]] == [
        link["id"]
    ]
    response = sandbox.get(f"/magic-links/{link['id']}", headers=sandbox.headers)
    assert validate("GET", "/magic-links/{magic_link_id}", response)["magic_link"] == link
    response = sandbox.session.delete(
        sandbox.url(f"/magic-links/{link['id']}"), headers=sandbox.headers, timeout=5
    )
    assert validate("DELETE", "/magic-links/{magic_link_id}", response)["deleted"] is True
    response = sandbox.get(f"/magic-links/{link['id']}", headers=sandbox.headers)
    assert response.status_code == 404
    validate("GET", "/magic-links/{magic_link_id}", response)


def test_connections_list_takes_only_page_token(sandbox):
    sandbox.connect("shipbob", {"api_key": "k"}, customer_id="a")
    for params in ({"customer_id": "a"}, {"limit": "1"}, {"page_token": "c0", "x": "1"}):
        response = sandbox.get("/connections", headers=sandbox.headers, params=params)
        assert response.status_code == 422, params
        body = validate("GET", "/connections", response)
        assert set(body["detail"]["query"]) == set(params) - {"page_token"}
    response = sandbox.get("/connections", headers=sandbox.headers, params={"page_token": "zz"})
    assert response.status_code == 422


def test_connections_list_pages_by_100(sandbox):
    sandbox.configure(write_rate=10_000)
    ids = {sandbox.connect("sandbox")["connection_id"] for _ in range(101)}
    first = sandbox.get("/connections", headers=sandbox.headers).json()
    assert len(first["data"]) == 100 and first["next_token"]
    params = {"page_token": first["next_token"]}
    rest = validate(
        "GET", "/connections", sandbox.get("/connections", headers=sandbox.headers, params=params)
    )
    assert len(rest["data"]) == 1 and rest["next_token"] is None
    assert {c["connection_id"] for c in first["data"] + rest["data"]} == ids


def test_main_js_at_the_root(sandbox):
    root = sandbox.get("/main.js")
    linked = sandbox.get("/link/main.js")
    assert root.status_code == 200 and root.content == linked.content
    assert root.headers["content-type"].startswith("text/javascript")
    assert root.headers["access-control-allow-origin"] == "*"
    preflight = sandbox.session.options(sandbox.url("/main.js"), timeout=5)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"


def test_generate_sandbox_is_idempotent_and_fulfill_simulates(sandbox):
    sandbox.configure(historical_sync_delay=0)
    path = "/sandbox/generate-sandbox/{integration_type}"
    first = validate(
        "POST", path, sandbox.post("/sandbox/generate-sandbox/wms", headers=sandbox.headers)
    )
    again = validate(
        "POST", path, sandbox.post("/sandbox/generate-sandbox/wms", headers=sandbox.headers)
    )
    assert first["connection_id"] == again["connection_id"]
    assert first["integration_name"] == "sandbox"
    orders = _wms(sandbox, first["access_token"], "/wms/orders", **{"status[nin]": "fulfilled"})
    order_id = orders.json()["data"][0]["id"]
    response = sandbox.session.put(
        sandbox.url(f"/sandbox/simulate/orders/{order_id}/fulfill"),
        headers=sandbox.headers,
        timeout=5,
    )
    order = validate("PUT", "/sandbox/simulate/orders/{order_id}/fulfill", response)["data"]
    assert order["status"] == "fulfilled"
    assert order["shipments"][0]["packages"][0]["tracking_number"]


@pytest.mark.parametrize("resource", sorted(WMS_RESOURCES))
def test_each_resource_list_and_get_match_the_spec(sandbox, linked, resource):
    path = WMS_RESOURCES[resource]
    token = linked["access_token"]
    body = validate("GET", path, _wms(sandbox, token, path))
    assert body["data"], f"{resource} is empty"
    record = body["data"][0]
    for key in ("id", "created_date", "updated_date", "additional_fields"):
        assert key in record
    one = _wms(sandbox, token, f"{path}/{record['id']}")
    assert validate("GET", template_for(f"{path}/{record['id']}"), one)["data"] == record
    missing = _wms(sandbox, token, f"{path}/nope_123")
    assert missing.status_code == 404
    assert validate("GET", template_for(f"{path}/nope_123"), missing)["id"] == "nope_123"


def test_locations_under_a_warehouse(sandbox, linked):
    token = linked["access_token"]
    warehouse = _wms(sandbox, token, "/wms/warehouses").json()["data"][0]["id"]
    path = f"/wms/warehouses/{warehouse}/locations"
    body = validate("GET", "/wms/warehouses/{warehouse_id}/locations", _wms(sandbox, token, path))
    assert body["data"] and all(loc["warehouse_id"] == warehouse for loc in body["data"])
    loc = body["data"][0]["id"]
    one = _wms(sandbox, token, f"{path}/{loc}")
    validate("GET", "/wms/warehouses/{warehouse_id}/locations/{location_id}", one)
    assert _wms(sandbox, token, "/wms/warehouses/nope/locations").status_code == 404


def test_missing_endpoint_is_501(sandbox):
    conn = sandbox.connect("infoplus", {"domain": "acme", "api_key": "k"})
    response = _wms(sandbox, conn["access_token"], "/wms/returns")
    assert response.status_code == 501
    validate_error(response)
    assert response.json() == {
        "error": "Endpoint get_returns is not implemented for Infoplus",
        "origin": "trackstar",
    }
    assert "get_returns" not in conn["available_actions"]


def test_unknown_filter_or_operator_is_422(sandbox, linked):
    token = linked["access_token"]
    for params in ({"colour": "red"}, {"status[gt]": "open"}, {"limit": "5000"}):
        response = _wms(sandbox, token, "/wms/orders", **params)
        assert response.status_code == 422, params
        assert validate("GET", "/wms/orders", response)["detail"]["query"]


def test_invalid_page_token_is_422(sandbox, linked):
    token = linked["access_token"]
    response = _wms(sandbox, token, "/wms/orders", page_token="garbage")
    assert response.status_code == 422
    first = _wms(sandbox, token, "/wms/orders", limit=5).json()
    response = _wms(
        sandbox, token, "/wms/orders", limit=5, status="open", page_token=first["next_token"]
    )
    assert response.status_code == 422  # filters changed between pages


def test_config_api_key_changes_the_accepted_key(sandbox, linked):
    old = sandbox.api_key
    shown = sandbox.configure(api_key="rotated-key")
    assert shown["api_key_set"] is True and "api_key" not in shown
    config = sandbox.get("/_sandbox/config")
    assert "rotated-key" not in config.text and old not in config.text
    assert config.json()["api_key_set"] is True
    assert sandbox.get("/connections", headers=sandbox.headers).status_code == 401
    assert _wms(sandbox, linked["access_token"], "/wms/orders").status_code == 401
    new = {"x-trackstar-api-key": "rotated-key"}
    assert sandbox.get("/connections", headers=new).status_code == 200
    response = sandbox.get(
        "/wms/orders", headers={**new, "x-trackstar-access-token": linked["access_token"]}
    )
    assert response.status_code == 200
    for bad in ("", "  ", 5, None):
        assert sandbox.post("/_sandbox/config", {"api_key": bad}).status_code == 400
    sandbox.reset()
    assert sandbox.get("/connections", headers=sandbox.headers).status_code == 200
    assert sandbox.get("/connections", headers=new).status_code == 401


def test_config_refuses_unknown_settings_and_bad_delays(sandbox):
    assert sandbox.post("/_sandbox/config", {"nope": 1}).status_code == 400
    for key in ("historical_sync_delay", "force_sync_delay", "on_demand_sync_delay"):
        assert sandbox.post("/_sandbox/config", {key: -1}).status_code == 400
        assert sandbox.post("/_sandbox/config", {key: "1"}).status_code == 400
        assert sandbox.configure(**{key: 0.5})[key] == 0.5


@pytest.mark.parametrize("path", ["/_sandbox/config", "/_sandbox/faults", "/_sandbox/reset"])
def test_the_controls_answer_no_cross_origin_caller(sandbox, path):
    """A page on another origin cannot drive the sandbox's controls from a browser; the
    Link modal's own endpoints keep CORS."""
    preflight = sandbox.session.options(
        sandbox.url(path),
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=5,
    )
    answer = sandbox.get("/_sandbox/config", headers={"Origin": "https://evil.example"})

    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in answer.headers
    link = sandbox.session.options(
        sandbox.url("/_sandbox/link/authorize"),
        headers={"Origin": "http://127.0.0.1:8000", "Access-Control-Request-Method": "POST"},
        timeout=5,
    )
    assert link.headers["access-control-allow-origin"] == "*"
