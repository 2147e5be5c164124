"""Connection errors as Trackstar's 2026 docs describe them (API.md §10): invalid credentials
block syncing but reads keep answering from Trackstar's copy; a missing permission is a 403
on that one resource only."""

import json
import time
from datetime import UTC, datetime

import pytest

from tests.sandbox.spec import validate, validate_error, validate_webhook

OAS_WEBHOOK_FIELDS = {
    "failed_url",
    "affected_endpoints",
    "integration_name",
    "error_message",
    "created_date",
    "updated_date",
    "last_seen",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _connection(sandbox, cid) -> dict:
    response = sandbox.get(f"/connections/{cid}", headers=sandbox.headers)
    return validate("GET", "/connections/{connection_id}", response)["data"]


def test_invalid_credentials_keep_reads_answering_with_the_last_data(sandbox, linked):
    cid, token = linked["connection_id"], linked["access_token"]
    orders = sandbox.wms(token, "/wms/orders").json()
    one = orders["data"][0]["id"]
    view = sandbox.break_connection(cid)
    assert view["broken"] is True
    assert [e["kind"] for e in view["errors"]] == ["invalid_credentials"]

    assert sandbox.wms(token, "/wms/orders").json() == orders
    assert sandbox.wms(token, f"/wms/orders/{one}").status_code == 200
    assert sandbox.wms(token, "/wms/returns").status_code == 200

    conn = _connection(sandbox, cid)
    (err,) = conn["errors"]
    # Both documented shapes at once by default.
    assert err["error_type"] == "invalid_credentials"
    assert err["resource"] is None
    assert (
        err["message"]
        == err["error_message"]
        == ("ShipBob rejected the stored credentials (401 Unauthorized).")
    )
    assert {a["endpoint"] for a in err["affected_endpoints"]} >= {
        "GET /wms/orders",
        "GET /wms/inventory",
        "GET /wms/returns",
    }
    assert len(err["affected_endpoints"]) == len(linked["available_actions"])
    assert all(a["preventing_sync"] for a in err["affected_endpoints"])
    assert err["first_seen"] <= err["last_seen"]
    assert {s["sync_status"] for s in conn["sync_schedules"]} == {"error"}


def test_missing_permission_is_403_on_that_resource_only(sandbox, linked):
    cid, token = linked["connection_id"], linked["access_token"]
    returns = sandbox.wms(token, "/wms/returns").json()["data"]
    sandbox.break_connection(cid, kind="missing_permission", resource="returns")

    for path in ("/wms/returns", f"/wms/returns/{returns[0]['id']}"):
        response = sandbox.wms(token, path)
        assert response.status_code == 403, path
        validate_error(response)
        assert response.json() == {
            "error": "The credentials for this ShipBob connection do not have access to returns.",
            "origin": "integration",
        }
    for path in ("/wms/orders", "/wms/inventory", "/wms/inbound-shipments", "/wms/billing"):
        response = sandbox.wms(token, path)
        assert response.status_code == 200, path
        assert response.json()["data"]

    conn = _connection(sandbox, cid)
    (err,) = conn["errors"]
    assert err["error_type"] == "missing_permission"
    assert err["resource"] == "returns"
    assert err["affected_endpoints"] == [{"endpoint": "GET /wms/returns", "preventing_sync": True}]
    statuses = {s["function_name"]: s["sync_status"] for s in conn["sync_schedules"]}
    assert statuses["get_returns"] == "error" and statuses["get_orders"] == "enabled"


def test_missing_permission_accepts_hyphen_or_underscore_names(sandbox, linked):
    cid, token = linked["connection_id"], linked["access_token"]
    sandbox.break_connection(cid, kind="missing_permission", resource="inbound_shipments")
    sandbox.break_connection(cid, kind="missing_permission", resource="warehouse-customers")
    assert sandbox.wms(token, "/wms/inbound-shipments").status_code == 403
    response = sandbox.wms(token, "/wms/warehouse-customers")
    assert response.status_code == 403
    assert "do not have access to warehouse customers." in response.json()["error"]
    errors = _connection(sandbox, cid)["errors"]
    assert [e["resource"] for e in errors] == ["inbound_shipments", "warehouse_customers"]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "nope"},
        {"kind": "missing_permission"},
        {"kind": "missing_permission", "resource": "unicorns"},
        {"kind": "invalid_credentials", "resource": "returns"},
    ],
)
def test_break_refuses_a_bad_kind_or_resource(sandbox, linked, body):
    response = sandbox.post(f"/_sandbox/connections/{linked['connection_id']}/break", body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert sandbox.connection(linked["connection_id"])["errors"] == []


def test_missing_permission_needs_a_resource_of_the_integration(sandbox):
    conn = sandbox.connect("infoplus", {"domain": "acme", "api_key": "k"})
    body = {"kind": "missing_permission", "resource": "returns"}  # Infoplus has no returns
    response = sandbox.post(f"/_sandbox/connections/{conn['connection_id']}/break", body)
    assert response.status_code == 400


def test_several_errors_at_once_and_their_webhooks(sandbox, webhook_receiver, linked):
    cid = linked["connection_id"]
    sandbox.break_connection(cid)
    created = webhook_receiver.wait_for(lambda e: e["event_type"] == "connection-error.created")
    first = json.loads(created[0][1])
    validate_webhook("connection-error.created", first)
    assert set(first["data"]) == OAS_WEBHOOK_FIELDS
    assert len(first["data"]["affected_endpoints"]) == len(linked["available_actions"])

    time.sleep(0.01)
    sandbox.break_connection(cid, kind="invalid_credentials")  # already open: updated
    updated = webhook_receiver.wait_for(lambda e: e["event_type"] == "connection-error.updated")
    again = json.loads(updated[0][1])
    validate_webhook("connection-error.updated", again)
    assert again["data"]["created_date"] == first["data"]["created_date"]
    assert again["data"]["last_seen"] > first["data"]["last_seen"]
    assert again["previous_attributes"]["last_seen"] == first["data"]["last_seen"]

    sandbox.break_connection(cid, kind="missing_permission", resource="returns")
    webhook_receiver.wait_for(
        lambda e: (
            e["event_type"] == "connection-error.created"
            and e["data"]["affected_endpoints"]
            == [{"endpoint": "GET /wms/returns", "preventing_sync": True}]
        )
    )
    view = sandbox.connection(cid)
    assert [(e["kind"], e["resource"]) for e in view["errors"]] == [
        ("invalid_credentials", None),
        ("missing_permission", "returns"),
    ]
    errors = _connection(sandbox, cid)["errors"]
    assert errors[0]["last_seen"] > errors[0]["first_seen"]

    repaired = sandbox.repair_connection(cid)
    assert repaired["errors"] == [] and repaired["broken"] is False
    deleted = [
        json.loads(body)
        for _, body in webhook_receiver.wait_for(
            lambda e: e["event_type"].endswith(".deleted"), count=2
        )
    ]
    assert len(deleted) == 2
    for event in deleted:
        validate_webhook("connection-error.deleted", event)
        assert set(event["data"]) == OAS_WEBHOOK_FIELDS
    assert _connection(sandbox, cid)["errors"] == []


def test_error_shape_can_be_either_documented_shape(sandbox, linked):
    cid = linked["connection_id"]
    sandbox.break_connection(cid, kind="missing_permission", resource="orders")
    sandbox.configure(error_shape="doc")
    (err,) = sandbox.get_connection(cid)["errors"]
    assert err == {
        "error_type": "missing_permission",
        "resource": "orders",
        "message": "The credentials for this ShipBob connection do not have access to orders.",
    }
    sandbox.configure(error_shape="oas")
    (err,) = _connection(sandbox, cid)["errors"]
    assert set(err) == {"error_message", "affected_endpoints", "first_seen", "last_seen"}
    response = sandbox.post("/_sandbox/config", {"error_shape": "xml"})
    assert response.status_code == 400
    sandbox.reset()
    assert sandbox.configure()["error_shape"] == "both"


def test_reinstall_fixes_credentials_but_not_a_missing_permission(sandbox, linked):
    cid, token = linked["connection_id"], linked["access_token"]
    sandbox.break_connection(cid)
    sandbox.break_connection(cid, kind="missing_permission", resource="returns")
    link_token = sandbox.link_token(connection_id=cid)
    sandbox.exchange(sandbox.authorize(link_token, "shipbob", {"api_key": "same"}))
    errors = sandbox.get_connection(cid)["errors"]
    assert [(e["error_type"], e["resource"]) for e in errors] == [("missing_permission", "returns")]
    assert sandbox.wms(token, "/wms/returns").status_code == 403
    assert sandbox.connection(cid)["broken"] is False


def test_repaired_permission_is_a_new_initial_sync_of_that_resource(
    sandbox, linked, webhook_receiver
):
    # linked before webhook_receiver: the connection's own initial-sync events go nowhere.
    cid, token = linked["connection_id"], linked["access_token"]
    sandbox.break_connection(cid, kind="missing_permission", resource="returns")
    mark = _now()
    sandbox.configure(historical_sync_delay=0.4)
    sandbox.repair_connection(cid)
    synced = sandbox.get_connection(cid)["historical_sync_completed"]
    assert synced["get_returns"] is False and synced["get_orders"] is True
    assert sandbox.wms(token, "/wms/returns").json()["data"] == []

    event = webhook_receiver.wait_for(
        lambda e: e["event_type"] == "connection.historical-sync-completed"
    )
    payload = json.loads(event[0][1])
    validate_webhook("connection.historical-sync-completed", payload)
    assert payload["data"]["resource"] == "returns"
    sandbox.wait_until_synced(cid)

    # Trackstar newly sees every return: trackstar_updated_date moved, updated_date did not.
    everything = sandbox.wms(token, "/wms/returns").json()["data"]
    assert everything
    seen = sandbox.wms(token, "/wms/returns", params={"trackstar_updated_date[gte]": mark})
    assert [r["id"] for r in seen.json()["data"]] == [r["id"] for r in everything]
    assert all(r["trackstar_updated_date"] >= mark for r in everything)
    changed = sandbox.wms(token, "/wms/returns", params={"updated_date[gte]": mark})
    assert changed.json()["data"] == []
    # Other resources are untouched.
    orders = sandbox.wms(token, "/wms/orders", params={"trackstar_updated_date[gte]": mark})
    assert orders.json()["data"] == []


def test_401_only_for_a_wrong_key_or_an_unknown_token(sandbox, linked):
    token = linked["access_token"]
    sandbox.break_connection(linked["connection_id"])
    assert sandbox.wms(token, "/wms/orders").status_code == 200
    wrong_key = sandbox.get(
        "/wms/orders",
        headers={"x-trackstar-api-key": "nope", "x-trackstar-access-token": token},
    )
    assert wrong_key.status_code == 401
    headers = sandbox.token_headers(token)
    sandbox.session.delete(sandbox.url("/connections"), headers=headers, timeout=5)
    assert sandbox.wms(token, "/wms/orders").status_code == 401
