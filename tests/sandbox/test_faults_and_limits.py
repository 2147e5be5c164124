import time

import pytest

from tests.sandbox.spec import validate, validate_error

pytestmark = pytest.mark.integration


def test_faults_hit_every_wms_call_until_cleared(sandbox, linked):
    token = linked["access_token"]
    sandbox.set_faults(rate=1.0, statuses=[429, 500, 503], paths="/wms/")
    seen = set()
    for _ in range(12):
        response = sandbox.wms(token, "/wms/orders")
        assert response.status_code in (429, 500, 503)
        validate_error(response)
        if response.status_code == 429:
            assert response.headers["retry-after"]
        seen.add(response.status_code)
    assert len(seen) > 1
    # Faults never touch controls or the Link script, nor paths outside their prefix.
    assert sandbox.get("/_sandbox/health").ok
    assert sandbox.get("/link/main.js").ok
    assert sandbox.get("/connections", headers=sandbox.headers).ok
    sandbox.clear_faults()
    assert validate("GET", "/wms/orders", sandbox.wms(token, "/wms/orders"))["data"]


def test_fault_count_then_recovery(sandbox, linked):
    sandbox.set_faults(rate=1.0, statuses=[503], count=2)
    codes = [sandbox.wms(linked["access_token"], "/wms/orders").status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_fault_delay(sandbox, linked):
    sandbox.set_faults(rate=1.0, statuses=[], delay_ms=300, paths="/wms/")
    started = time.monotonic()
    assert sandbox.wms(linked["access_token"], "/wms/warehouses").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_rate_limit_per_access_token(sandbox, linked):
    sandbox.configure(get_rate=3)
    token = linked["access_token"]
    other = sandbox.connect("shipbob", {"api_key": "k"})["access_token"]
    # Start at the top of a second so the burst lands in one window.
    time.sleep(1 - time.time() % 1)
    responses = [sandbox.wms(token, "/wms/warehouses") for _ in range(5)]
    codes = [r.status_code for r in responses]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    ok, limited = responses[0], responses[codes.index(429)]
    assert ok.headers["x-ratelimit-limit"] == "3"
    assert ok.headers["x-ratelimit-remaining"] == "2"
    assert int(ok.headers["x-ratelimit-reset"]) >= int(time.time())
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"
    validate_error(limited)
    # Another connection has its own budget.
    assert sandbox.wms(other, "/wms/warehouses").status_code == 200
    time.sleep(1.05)
    assert sandbox.wms(token, "/wms/warehouses").status_code == 200


def test_request_log_records_each_call_with_its_connection_time_and_status(sandbox, linked):
    sandbox.configure(get_rate=2)
    token, connection_id = linked["access_token"], linked["connection_id"]
    time.sleep(1 - time.time() % 1)
    before = time.time()
    codes = [sandbox.wms(token, "/wms/orders").status_code for _ in range(3)]

    log = sandbox.requests(connection_id)
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/wms/orders", code) for code in codes
    ]
    assert codes == [200, 200, 429]  # the 429 is logged too
    assert all(before <= r["at"] <= time.time() for r in log)
    assert {r["connection_id"] for r in sandbox.requests()} >= {connection_id}
    sandbox.reset()
    assert sandbox.requests() == []


def test_write_rate_is_separate(sandbox, linked):
    sandbox.configure(get_rate=1, write_rate=100)
    headers = {**sandbox.headers, "x-trackstar-access-token": linked["access_token"]}
    time.sleep(1 - time.time() % 1)
    sandbox.wms(linked["access_token"], "/wms/orders")
    response = sandbox.post("/connections/sync", {}, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "100"
