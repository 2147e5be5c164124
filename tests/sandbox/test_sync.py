"""Trackstar's sync model (API.md §5, §10): the initial sync gates reads, force syncs pull
changes held in the WMS, on-demand syncs backfill a window."""

import json
import time
from datetime import UTC, datetime

import pytest

from tests.sandbox.spec import validate, validate_error, validate_webhook

EMPTY = {"data": [], "next_token": None, "total_count": 0}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _events(receiver, event_type: str) -> list[dict]:
    return [e for e in receiver.events() if e["event_type"] == event_type]


# -- initial sync --------------------------------------------------------------------------
def test_reads_return_nothing_until_the_initial_sync_completes(sandbox, webhook_receiver):
    sandbox.configure(historical_sync_delay=0.6)
    linked = sandbox.connect("shipbob", {"api_key": "k"})
    cid, token = linked["connection_id"], linked["access_token"]
    order_id = sandbox.mutate(cid, "orders", count=1)["updated_ids"][0]

    response = sandbox.wms(token, "/wms/orders", params={"limit": 10})
    assert validate("GET", "/wms/orders", response) == EMPTY
    assert sandbox.wms(token, f"/wms/orders/{order_id}").status_code == 404
    # Filters are still checked.
    assert sandbox.wms(token, "/wms/orders", params={"colour": "red"}).status_code == 422
    conn = sandbox.get_connection(cid)
    assert set(conn["historical_sync_completed"].values()) == {False}
    assert {s["sync_status"] for s in conn["sync_schedules"]} == {"first_sync_in_progress"}

    done = webhook_receiver.wait_for(
        lambda e: (
            e["event_type"] == "connection.historical-sync-completed"
            and e["data"]["resource"] == "orders"
        )
    )
    validate_webhook("connection.historical-sync-completed", json.loads(done[0][1]))
    conn = sandbox.get_connection(cid)
    assert conn["historical_sync_completed"]["get_orders"] is True
    assert set(conn["historical_sync_completed"]) == set(linked["available_actions"])
    assert sandbox.wms(token, "/wms/orders").json()["data"]
    assert sandbox.wms(token, f"/wms/orders/{order_id}").status_code == 200

    # A reinstall keeps the history: no new initial sync.
    link_token = sandbox.link_token(connection_id=cid)
    sandbox.exchange(sandbox.authorize(link_token, "shipbob", {"api_key": "k2"}))
    assert all(sandbox.get_connection(cid)["historical_sync_completed"].values())
    assert sandbox.wms(token, "/wms/orders").json()["data"]


def test_zero_delay_means_ready_at_once(sandbox):
    sandbox.configure(historical_sync_delay=0)
    linked = sandbox.connect("deposco", {"company_code": "c", "username": "u", "password": "p"})
    assert all(
        sandbox.get_connection(linked["connection_id"])["historical_sync_completed"].values()
    )
    assert sandbox.wms(linked["access_token"], "/wms/inventory").json()["data"]


def test_reset_restores_the_default_delay(sandbox):
    sandbox.configure(historical_sync_delay=0)
    sandbox.reset()
    assert sandbox.configure()["historical_sync_delay"] == 1.0
    linked = sandbox.connect("shipbob", {"api_key": "k"})
    assert sandbox.wms(linked["access_token"], "/wms/orders").json() == EMPTY


# -- force sync and changes held in the WMS -----------------------------------------------
def test_force_sync_applies_changes_held_in_the_wms(sandbox, webhook_receiver, linked):
    cid, token = linked["connection_id"], linked["access_token"]
    sandbox.configure(force_sync_delay=0.3)
    mark = _now()
    held = sandbox.mutate(cid, "orders", count=2, create=1, in_wms_only=True)
    assert held["pending"] is True and len(held["updated_ids"]) == 2
    assert held["created_ids"] == []
    assert sandbox.connection(cid)["pending"] == {"orders": {"updates": 2, "creates": 1}}
    since = {"updated_date[gte]": mark}
    assert sandbox.wms(token, "/wms/orders", params=since).json()["data"] == []

    # A force sync of other functions leaves them pending.
    body = sandbox.force_sync(token, ["get_inventory"])
    assert body == {"id": cid, "syncing": True, "functions_to_sync": ["get_inventory"]}
    webhook_receiver.wait_for(lambda e: e["event_type"] == "connection.force-sync-completed")
    assert sandbox.wms(token, "/wms/orders", params=since).json()["data"] == []
    assert not _events(webhook_receiver, "order.updated")

    response = sandbox.post(
        "/connections/sync",
        {"functions_to_sync": ["get_orders"]},
        headers=sandbox.token_headers(token),
    )
    assert validate("POST", "/connections/sync", response)["functions_to_sync"] == ["get_orders"]
    done = webhook_receiver.wait_for(
        lambda e: (
            e["event_type"] == "connection.force-sync-completed"
            and e["data"]["functions_to_sync"] == ["get_orders"]
        )
    )
    event = json.loads(done[0][1])
    assert event["integration_type"] == "general" and event["connection_id"] == cid
    assert event["data"]["completed_date"] >= mark

    changed = sandbox.wms(token, "/wms/orders", params=since).json()["data"]
    assert len(changed) == 3
    assert {r["id"] for r in changed} >= set(held["updated_ids"])
    assert all(r["trackstar_updated_date"] >= mark for r in changed)
    updated = webhook_receiver.wait_for(
        lambda e: e["event_type"] == "order.updated" and e["data"]["id"] == held["updated_ids"][1]
    )
    validate_webhook("order.updated", json.loads(updated[0][1]))
    webhook_receiver.wait_for(lambda e: e["event_type"] == "order.created")
    assert sandbox.connection(cid)["pending"] == {}


def test_force_sync_while_credentials_are_broken_applies_nothing(sandbox, webhook_receiver, linked):
    cid, token = linked["connection_id"], linked["access_token"]
    sandbox.configure(force_sync_delay=0.1)
    mark = _now()
    held = sandbox.mutate(cid, "products", count=1, in_wms_only=True)["updated_ids"]
    sandbox.break_connection(cid)
    sandbox.force_sync(token)
    webhook_receiver.wait_for(lambda e: e["event_type"] == "connection.force-sync-completed")
    since = {"updated_date[gte]": mark}
    assert sandbox.wms(token, "/wms/products", params=since).json()["data"] == []
    assert sandbox.connection(cid)["pending"] == {"products": {"updates": 1, "creates": 0}}

    sandbox.repair_connection(cid)
    sandbox.force_sync(token, ["get_products"])
    webhook_receiver.wait_for(
        lambda e: e["event_type"] == "product.updated" and e["data"]["id"] == held[0]
    )
    body = sandbox.wms(token, "/wms/products", params=since).json()
    assert [r["id"] for r in body["data"]] == held


def test_force_sync_refuses_unknown_functions(sandbox, linked):
    headers = sandbox.token_headers(linked["access_token"])
    for functions in (["get_unicorns"], "get_orders", [1]):
        body = {"functions_to_sync": functions}
        response = sandbox.post("/connections/sync", body, headers=headers)
        assert response.status_code == 422, functions
        validate("POST", "/connections/sync", response)


def test_mutate_refuses_a_non_boolean_in_wms_only(sandbox, linked):
    path = f"/_sandbox/connections/{linked['connection_id']}/mutate"
    response = sandbox.post(path, {"resource": "orders", "in_wms_only": "yes"})
    assert response.status_code == 400


# -- on-demand syncs -----------------------------------------------------------------------
START, END = "2024-01-01T00:00:00Z", "2024-01-11T00:00:00Z"


def test_on_demand_sync_backfills_the_window(sandbox, webhook_receiver, linked):
    cid, token = linked["connection_id"], linked["access_token"]
    sandbox.configure(on_demand_sync_delay=0.3)
    mark = _now()
    response = sandbox.on_demand_sync(token, "get_orders", START, "2024-01-11T00:00:00+00:00")
    assert response.status_code == 200, response.text
    job = response.json()["data"]
    assert set(job) == {
        "id",
        "connection_id",
        "function_name",
        "status",
        "requested_start_time",
        "requested_end_time",
        "created_at",
    }
    assert job["connection_id"] == cid and job["function_name"] == "get_orders"
    assert job["status"] == "open"
    assert job["requested_start_time"].startswith("2024-01-01T00:00:00")
    assert job["requested_end_time"].startswith("2024-01-11T00:00:00")
    path = f"/connections/on-demand-syncs/{job['id']}"
    assert sandbox.wms(token, path).json() == {"data": job}

    done = webhook_receiver.wait_for(lambda e: e["event_type"] == "connection.sync-job-completed")
    event = json.loads(done[0][1])
    assert event["integration_type"] == "general"
    assert event["data"] == {**job, "status": "completed"}
    assert sandbox.wms(token, path).json()["data"]["status"] == "completed"

    window = {"updated_date[gte]": START, "updated_date[lte]": END}
    backfilled = sandbox.wms(token, "/wms/orders", params=window).json()["data"]
    assert len(backfilled) == 10  # one per day of the window
    assert all(
        _ms(START) <= _ms(r["created_date"]) < _ms(r["updated_date"]) <= _ms(END)
        for r in backfilled
    )
    assert all(r["trackstar_updated_date"] >= mark for r in backfilled)
    fresh = sandbox.wms(token, "/wms/orders", params={"trackstar_updated_date[gte]": mark})
    assert {r["id"] for r in fresh.json()["data"]} == {r["id"] for r in backfilled}
    # No per-record webhooks for backfilled records.
    assert not _events(webhook_receiver, "order.created")

    cancel = sandbox.post(f"{path}/cancel", headers=sandbox.token_headers(token))
    assert cancel.status_code == 400
    assert cancel.json() == {
        "error": "Only open sync jobs can be cancelled.",
        "origin": "trackstar",
    }


def test_cancelled_job_never_completes(sandbox, webhook_receiver, linked):
    token = linked["access_token"]
    sandbox.configure(on_demand_sync_delay=2)  # time enough to cancel it while it is open
    job = sandbox.on_demand_sync(token, "get_orders", START, END).json()["data"]
    path = f"/connections/on-demand-syncs/{job['id']}/cancel"
    cancelled = sandbox.post(path, headers=sandbox.token_headers(token))
    assert cancelled.status_code == 200
    assert cancelled.json()["data"] == {**job, "status": "cancelled"}
    # A job on another window, due after the cancelled one: the sandbox's timers run in
    # the order they are due, so once this one has completed, the cancelled one's is past.
    later = sandbox.on_demand_sync(
        token, "get_orders", "2023-06-01T00:00:00Z", "2023-06-03T00:00:00Z"
    ).json()["data"]
    webhook_receiver.wait_for(
        lambda e: (
            e["event_type"] == "connection.sync-job-completed" and e["data"]["id"] == later["id"]
        )
    )

    window = {"updated_date[gte]": START, "updated_date[lte]": END}
    assert sandbox.wms(token, "/wms/orders", params=window).json()["data"] == []
    completed = _events(webhook_receiver, "connection.sync-job-completed")
    assert [event["data"]["id"] for event in completed] == [later["id"]]
    status = sandbox.wms(token, f"/connections/on-demand-syncs/{job['id']}").json()["data"]
    assert status["status"] == "cancelled"
    again = sandbox.post(path, headers=sandbox.token_headers(token))
    assert again.status_code == 400


def test_a_short_window_backfills_one_record(sandbox, linked):
    sandbox.configure(on_demand_sync_delay=0)
    token = linked["access_token"]
    end = "2024-01-01T06:00:00Z"
    job = sandbox.on_demand_sync(token, "get_orders", START, end).json()["data"]
    deadline = time.monotonic() + 5
    path = f"/connections/on-demand-syncs/{job['id']}"
    while sandbox.wms(token, path).json()["data"]["status"] == "open":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    window = {"updated_date[gte]": START, "updated_date[lte]": end}
    assert len(sandbox.wms(token, "/wms/orders", params=window).json()["data"]) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"end_time": END, "function_name": "get_orders"}, "start_time"),
        ({"start_time": START, "function_name": "get_orders"}, "end_time"),
        ({"start_time": START, "end_time": END}, "function_name"),
        (
            {"start_time": "2024-01-01T00:00:00", "end_time": END, "function_name": "get_orders"},
            "start_time",
        ),
        ({"start_time": "yesterday", "end_time": END, "function_name": "get_orders"}, "start_time"),
        ({"start_time": END, "end_time": START, "function_name": "get_orders"}, "end_time"),
        ({"start_time": START, "end_time": END, "function_name": "get_unicorns"}, "function_name"),
    ],
)
def test_on_demand_sync_validation_is_422(sandbox, linked, body, field):
    headers = sandbox.token_headers(linked["access_token"])
    response = sandbox.post("/connections/on-demand-syncs", body, headers=headers)
    assert response.status_code == 422
    error = response.json()
    assert error["origin"] == "trackstar" and error["error"]
    assert field in error["detail"]["json"]


@pytest.mark.parametrize(
    ("integration", "credentials", "function"),
    [
        ("shipbob", {"api_key": "k"}, "get_returns"),
        ("sandbox", {}, "get_inventory"),
        ("deposco", {"company_code": "c", "username": "u", "password": "p"}, "get_orders"),
    ],
)
def test_unsupported_on_demand_pair_is_400(sandbox, integration, credentials, function):
    conn = sandbox.connect(integration, credentials)
    response = sandbox.on_demand_sync(conn["access_token"], function, START, END)
    assert response.status_code == 400
    validate_error(response)
    assert response.json() == {
        "error": f"On-demand sync is not enabled for {integration} {function}",
        "origin": "trackstar",
    }


def test_jobs_belong_to_their_connection(sandbox, linked):
    job = sandbox.on_demand_sync(linked["access_token"], "get_orders", START, END).json()["data"]
    other = sandbox.connect("shipbob", {"api_key": "k"})
    for token, job_id in ((other["access_token"], job["id"]), (linked["access_token"], "job_x")):
        response = sandbox.wms(token, f"/connections/on-demand-syncs/{job_id}")
        assert response.status_code == 404
        assert response.json()["id"] == job_id
        cancel = sandbox.post(
            f"/connections/on-demand-syncs/{job_id}/cancel", headers=sandbox.token_headers(token)
        )
        assert cancel.status_code == 404
    response = sandbox.post(
        "/connections/on-demand-syncs",
        {"start_time": START, "end_time": END, "function_name": "get_orders"},
        headers=sandbox.headers,
    )
    assert response.status_code == 401
