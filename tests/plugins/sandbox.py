"""pytest fixtures that run the Trackstar sandbox (sandbox/) as a real subprocess.

sandbox_server (session): the running sandbox; sandbox (function): the same, reset first;
sandbox_process_factory (function): sandboxes of one test's own, with a state file.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sandbox-test-key"
TIMEOUT = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SandboxServer:
    def __init__(self, base_url: str, api_key: str, webhook_secret: str) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.session = requests.Session()

    @property
    def headers(self) -> dict:
        return {"x-trackstar-api-key": self.api_key}

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, json: dict | None = None, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.post(self.url(path), json=json, **kwargs)

    def _ok(self, response: requests.Response) -> dict:
        assert response.ok, f"{response.request.method} {response.url}: {response.text}"
        return response.json()

    # -- Trackstar API shortcuts (with the API key) -----------------------------------------
    def link_token(self, **body) -> str:
        response = self.post("/link/token", body, headers=self.headers)
        return self._ok(response)["link_token"]

    def exchange(self, auth_code: str, **body) -> dict:
        response = self.post(
            "/link/exchange", {"auth_code": auth_code, **body}, headers=self.headers
        )
        return self._ok(response)

    def connect(
        self, integration: str = "sandbox", credentials: dict | None = None, **token_body
    ) -> dict:
        """Link token → authorize → exchange; returns the exchange response."""
        auth_code = self.authorize(self.link_token(**token_body), integration, credentials or {})
        return self.exchange(auth_code)

    def wms(self, access_token: str, path: str, **kwargs) -> requests.Response:
        headers = {**self.headers, "x-trackstar-access-token": access_token}
        return self.get(path, headers=headers, **kwargs)

    def token_headers(self, access_token: str) -> dict:
        return {**self.headers, "x-trackstar-access-token": access_token}

    def get_connection(self, connection_id: str) -> dict:
        """GET /connections/{id}: the connection object (errors[], historical_sync_completed)."""
        response = self.get(f"/connections/{connection_id}", headers=self.headers)
        return self._ok(response)["data"]

    def force_sync(self, access_token: str, functions: list[str] | None = None) -> dict:
        """POST /connections/sync; connection.force-sync-completed follows."""
        body = {} if functions is None else {"functions_to_sync": functions}
        response = self.post("/connections/sync", body, headers=self.token_headers(access_token))
        return self._ok(response)

    def on_demand_sync(
        self, access_token: str, function_name: str, start_time: str, end_time: str
    ) -> requests.Response:
        body = {"function_name": function_name, "start_time": start_time, "end_time": end_time}
        return self.post(
            "/connections/on-demand-syncs", body, headers=self.token_headers(access_token)
        )

    def wait_until_synced(self, connection_id: str, timeout: float = 10.0) -> dict:
        """Poll until every resource's initial sync completed; returns the connection."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/connections/{connection_id}", headers=self.headers)
            # Key-only calls share one 10 GET/s budget with the code under test.
            if response.status_code != 429:
                connection = self._ok(response)["data"]
                if all(connection["historical_sync_completed"].values()):
                    return connection
            if time.monotonic() > deadline:
                raise AssertionError(f"initial sync not complete after {timeout}s: {response.text}")
            time.sleep(0.25)

    # -- /_sandbox/ controls ----------------------------------------------------------------
    def authorize(self, link_token: str, integration: str, credentials: dict) -> str:
        body = {
            "link_token": link_token,
            "integration_name": integration,
            "credentials": credentials,
        }
        return self._ok(self.post("/_sandbox/link/authorize", body))["auth_code"]

    def reset(self) -> None:
        self._ok(self.post("/_sandbox/reset"))

    def set_faults(
        self,
        rate: float = 1.0,
        statuses: list[int] | None = None,
        delay_ms: int = 0,
        paths: str | list[str] | None = None,
        count: int | None = None,
    ) -> dict:
        body = {
            "rate": rate,
            "statuses": [500] if statuses is None else statuses,
            "delay_ms": delay_ms,
            "paths": paths,
            "count": count,
        }
        return self._ok(self.post("/_sandbox/faults", body))

    def clear_faults(self) -> None:
        self._ok(self.session.delete(self.url("/_sandbox/faults"), timeout=TIMEOUT))

    def configure(self, **settings) -> dict:
        """webhook_url, get_rate, write_rate, link_token_ttl, auth_code_ttl,
        historical_sync_delay, force_sync_delay, on_demand_sync_delay, error_shape, api_key,
        webhook_retry_delays."""
        return self._ok(self.post("/_sandbox/config", settings))

    def dashboard_connect(
        self,
        integration: str = "sandbox",
        *,
        customer_id: str | None = None,
        webhook: bool = True,
    ) -> dict:
        """A connection made in Trackstar's dashboard (not through Dockside); returns it with
        its access token. webhook=False: its connection.created is never delivered."""
        body = {"integration_name": integration, "customer_id": customer_id, "webhook": webhook}
        return self._ok(self.post("/_sandbox/connections", body))

    def connection(self, connection_id: str) -> dict:
        return self._ok(self.get(f"/_sandbox/connections/{connection_id}"))

    def break_connection(self, connection_id: str, **body) -> dict:
        """No body: invalid_credentials. kind="missing_permission", resource="returns": only
        that resource answers 403."""
        return self._ok(self.post(f"/_sandbox/connections/{connection_id}/break", body or None))

    def repair_connection(self, connection_id: str) -> dict:
        return self._ok(self.post(f"/_sandbox/connections/{connection_id}/repair"))

    def mutate(self, connection_id: str, resource: str, count: int = 1, **body) -> dict:
        path = f"/_sandbox/connections/{connection_id}/mutate"
        return self._ok(self.post(path, {"resource": resource, "count": count, **body}))

    def ingest_late(self, connection_id: str, resource: str, count: int) -> list[str]:
        """Records with old WMS dates and new trackstar_* dates; returns their ids."""
        path = f"/_sandbox/connections/{connection_id}/ingest-late"
        return self._ok(self.post(path, {"resource": resource, "count": count}))["ids"]

    def requests(self, connection_id: str | None = None) -> list[dict]:
        """The API requests that reached the rate limit, oldest first (a 429 included):
        [{at, method, path, connection_id, status}], one connection's with connection_id."""
        params = {"connection_id": connection_id} if connection_id else None
        return self._ok(self.get("/_sandbox/requests", params=params))["requests"]

    def dataset(self, connection_id: str, **counts: int) -> dict:
        body = {"connection_id": connection_id, "counts": counts}
        return self._ok(self.post("/_sandbox/dataset", body))


def _start(port: int, env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="session")
def sandbox_server():
    from sandbox.config import DEFAULT_WEBHOOK_SECRET

    port = _free_port()
    env = {
        **os.environ,
        "TRACKSTAR_API_KEY": API_KEY,
        "TRACKSTAR_WEBHOOK_SECRET": DEFAULT_WEBHOOK_SECRET,
        "PYTHONPATH": str(ROOT),
    }
    env.pop("TRACKSTAR_SANDBOX_WEBHOOK_URL", None)
    # A file, not a pipe: a pipe nobody reads would eventually block the server.
    log = tempfile.TemporaryFile()
    process = _start(port, env, log)
    server = SandboxServer(f"http://127.0.0.1:{port}", API_KEY, DEFAULT_WEBHOOK_SECRET)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            pytest.fail(f"sandbox exited with {process.returncode}:\n{output}")
        try:
            if server.get("/_sandbox/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("sandbox did not become ready within 20 s")
        time.sleep(0.05)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def sandbox_process_factory():
    """start(state_file) → (process, server): a sandbox of the test's own on a free port,
    keeping its state in state_file, for tests that stop and start it again (a restart is
    another start on the same file). Whatever is still running at the end is stopped."""
    processes: list[subprocess.Popen] = []

    def start(state_file: Path) -> tuple[subprocess.Popen, SandboxServer]:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", str(port), "--state-file", str(state_file)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        server = SandboxServer(f"http://127.0.0.1:{port}", "sandbox-key", "")
        for _ in range(200):
            try:
                if server.get("/_sandbox/health", timeout=1).ok:
                    return process, server
            except requests.ConnectionError:
                time.sleep(0.05)
        process.kill()
        raise AssertionError("sandbox did not start")

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
