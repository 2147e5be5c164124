import subprocess
import sys
import time

import pytest
import requests

from tests.plugins.sandbox import ROOT, SandboxServer, _free_port

pytestmark = pytest.mark.integration


def _run(state_file, port):
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--state-file", str(state_file)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = SandboxServer(f"http://127.0.0.1:{port}", "sandbox-key", "")
    for _ in range(200):
        try:
            if server.get("/_sandbox/health", timeout=1).ok:
                return process, server
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("sandbox did not start")


def test_connections_survive_a_restart(tmp_path):
    state_file = tmp_path / "sandbox-state.json"
    process, server = _run(state_file, _free_port())
    try:
        linked = server.connect("shipbob", {"api_key": "k"})
        server.mutate(linked["connection_id"], "orders", count=3)
        before = server.wms(linked["access_token"], "/wms/orders").json()
    finally:
        process.terminate()
        process.wait(timeout=5)
    process, server = _run(state_file, _free_port())
    try:
        after = server.wms(linked["access_token"], "/wms/orders")
        assert after.status_code == 200
        assert after.json() == before
    finally:
        process.terminate()
        process.wait(timeout=5)
