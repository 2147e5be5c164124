import json
import time


def test_connections_survive_a_restart(tmp_path, sandbox_process_factory):
    state_file = tmp_path / "sandbox-state.json"
    process, server = sandbox_process_factory(state_file)
    try:
        server.configure(historical_sync_delay=0)
        linked = server.connect("shipbob", {"api_key": "k"})
        server.mutate(linked["connection_id"], "orders", count=3)
        before = server.wms(linked["access_token"], "/wms/orders").json()
    finally:
        process.terminate()
        process.wait(timeout=5)
    process, server = sandbox_process_factory(state_file)
    try:
        after = server.wms(linked["access_token"], "/wms/orders")
        assert after.status_code == 200
        assert before["data"] and after.json() == before
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_state_files_of_older_sandboxes_still_load(tmp_path, sandbox_process_factory):
    """A running demo's state file from before connection errors, history gating and the
    trackstar dates: a broken flag and 3-element mutation entries."""
    now = time.time()
    anchor_ms = int(now * 1000) - 60_000
    state_file = tmp_path / "old-state.json"
    state_file.write_text(
        json.dumps(
            {
                "connections": [
                    {
                        "connection_id": "conn_old",
                        "integration_name": "shipbob",
                        "access_token": "trackstar_old",
                        "customer_id": "cust_old",
                        "created_at": now - 3600,
                        "last_used": now - 3600,
                        "times_used": 3,
                        "broken": True,
                        "broken_since": now - 600,
                        "webhooks_disabled": False,
                        "credentials": {},
                        "dataset": {
                            "counts": {"orders": 50},
                            "anchor_ms": anchor_ms,
                            "mutations": {"orders": {"4": [1, anchor_ms + 1000, None]}},
                            "extra": {"orders": 0},
                        },
                    }
                ],
                "link_tokens": {},
                "auth_codes": {},
                "magic_links": {},
                "sandbox_connection_id": None,
            }
        )
    )
    process, server = sandbox_process_factory(state_file)
    try:
        view = server.connection("conn_old")
        assert view["broken"] is True
        assert [e["kind"] for e in view["errors"]] == ["invalid_credentials"]
        conn = server.get_connection("conn_old")
        assert all(conn["historical_sync_completed"].values())
        (order,) = server.wms(
            "trackstar_old", "/wms/orders", params={"updated_date[gt]": view["anchor"]}
        ).json()["data"]
        assert order["id"].endswith("_4")
        assert order["trackstar_updated_date"] == order["updated_date"]
        assert server.wms("trackstar_old", "/wms/orders").status_code == 200
        server.repair_connection("conn_old")
        # Saved in the new format and loaded again.
    finally:
        process.terminate()
        process.wait(timeout=5)
    process, server = sandbox_process_factory(state_file)
    try:
        assert server.connection("conn_old")["errors"] == []
        assert len(server.wms("trackstar_old", "/wms/orders").json()["data"]) == 50
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_open_jobs_and_pending_changes_survive_a_restart(tmp_path, sandbox_process_factory):
    state_file = tmp_path / "sandbox-state.json"
    process, server = sandbox_process_factory(state_file)
    try:
        server.configure(historical_sync_delay=0, on_demand_sync_delay=1.5)
        linked = server.connect("sandbox")
        token = linked["access_token"]
        server.mutate(linked["connection_id"], "orders", count=2, in_wms_only=True)
        response = server.on_demand_sync(
            token, "get_orders", "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z"
        )
        job = response.json()["data"]
    finally:
        process.terminate()
        process.wait(timeout=5)
    process, server = sandbox_process_factory(state_file)
    try:
        view = server.connection(linked["connection_id"])
        assert view["pending"] == {"orders": {"updates": 2, "creates": 0}}
        path = f"/connections/on-demand-syncs/{job['id']}"
        deadline = time.monotonic() + 10
        while server.wms(token, path).json()["data"]["status"] == "open":
            assert time.monotonic() < deadline
            time.sleep(0.3)  # under the token's 10 GET/s
        assert server.wms(token, path).json()["data"]["status"] == "completed"
    finally:
        process.terminate()
        process.wait(timeout=5)
