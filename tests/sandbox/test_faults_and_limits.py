import time

import pytest

from tests.sandbox.spec import validate, validate_error


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


def _statuses_by_window(log: list[dict], limit: int) -> list[int]:
    """The status each logged call of one token and kind should have had under the
    sandbox's fixed one-second windows: 200 while fewer than `limit` calls got through
    earlier in its second, else 429."""
    through: dict[int, int] = {}
    statuses = []
    for call in log:
        second = int(call["at"])
        if through.get(second, 0) < limit:
            through[second] = through.get(second, 0) + 1
            statuses.append(200)
        else:
            statuses.append(429)
    return statuses


def _until_limited(call, most: int = 20) -> list:
    """call() until it answers 429 (the last response); a machine too slow to make
    `most` calls before the window has room again fails here."""
    responses = []
    while not responses or responses[-1].status_code != 429:
        assert len(responses) < most, [r.status_code for r in responses]
        responses.append(call())
    return responses


def test_rate_limit_per_access_token(sandbox, linked):
    sandbox.configure(get_rate=3)
    token, connection_id = linked["access_token"], linked["connection_id"]
    other = sandbox.connect("shipbob", {"api_key": "k"})["access_token"]
    # Start at the top of a second so the burst most likely lands in one window; which
    # calls were refused is checked against the seconds the sandbox saw them in.
    time.sleep(1 - time.time() % 1)
    responses = _until_limited(lambda: sandbox.wms(token, "/wms/warehouses"))
    codes = [r.status_code for r in responses]
    log = sandbox.requests(connection_id)
    assert [r["status"] for r in log] == codes
    assert codes == _statuses_by_window(log, limit=3)
    ok, limited = responses[0], responses[-1]
    assert ok.headers["x-ratelimit-limit"] == "3"
    assert ok.headers["x-ratelimit-remaining"] == "2"
    assert ok.headers["x-ratelimit-reset"] == str(int(log[0]["at"]) + 1)
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
    codes = [r.status_code for r in _until_limited(lambda: sandbox.wms(token, "/wms/orders"))]
    after = time.time()

    log = sandbox.requests(connection_id)
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/wms/orders", code) for code in codes
    ]
    assert codes == _statuses_by_window(log, limit=2)  # the 429 is logged too
    assert all(before <= r["at"] <= after for r in log)
    assert {r["connection_id"] for r in sandbox.requests()} >= {connection_id}
    sandbox.reset()
    assert sandbox.requests() == []


def test_write_rate_is_separate(sandbox, linked):
    sandbox.configure(get_rate=1, write_rate=100)
    token, connection_id = linked["access_token"], linked["connection_id"]
    for _ in range(2):  # once more if the three calls straddled two seconds
        time.sleep(1 - time.time() % 1)
        gets = [sandbox.wms(token, "/wms/orders").status_code for _ in range(2)]
        response = sandbox.post("/connections/sync", {}, headers=sandbox.token_headers(token))
        calls = sandbox.requests(connection_id)[-3:]
        if len({int(call["at"]) for call in calls}) == 1:
            break
    else:
        pytest.fail(f"two GETs and a POST never fell in one second: {calls}")
    assert [call["method"] for call in calls] == ["GET", "GET", "POST"]
    assert gets == [200, 429]  # that second's one GET is spent...
    assert response.status_code == 200  # ...and its writes are not
    assert response.headers["x-ratelimit-limit"] == "100"
    assert response.headers["x-ratelimit-remaining"] == "99"
