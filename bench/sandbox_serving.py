"""How fast does the sandbox serve orders? Starts it, sizes a connection to 200k orders,
fetches N 1000-record pages and prints pages/s and records/s.

    .venv/bin/python bench/sandbox_serving.py [--pages 50] [--orders 200000]
"""

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--orders", type=int, default=200_000)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--api-key", API_KEY],
        cwd=ROOT,
    )
    session = requests.Session()
    try:
        for _ in range(200):
            try:
                if session.get(f"{base}/_sandbox/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        session.post(
            f"{base}/_sandbox/config", json={"get_rate": 1e9, "historical_sync_delay": 0}, timeout=5
        )
        headers = {"x-trackstar-api-key": API_KEY}
        link_token = session.post(f"{base}/link/token", json={}, headers=headers, timeout=5).json()[
            "link_token"
        ]
        auth_code = session.post(
            f"{base}/_sandbox/link/authorize",
            json={"link_token": link_token, "integration_name": "sandbox", "credentials": {}},
            timeout=5,
        ).json()["auth_code"]
        conn = session.post(
            f"{base}/link/exchange", json={"auth_code": auth_code}, headers=headers, timeout=5
        ).json()
        session.post(
            f"{base}/_sandbox/dataset",
            json={"connection_id": conn["connection_id"], "counts": {"orders": args.orders}},
            timeout=5,
        )
        headers["x-trackstar-access-token"] = conn["access_token"]
        params: dict = {"limit": 1000}
        records = pages = 0
        nbytes = 0
        started = time.perf_counter()
        while pages < args.pages:
            response = session.get(f"{base}/wms/orders", params=params, headers=headers, timeout=30)
            response.raise_for_status()
            body = orjson.loads(response.content)
            nbytes += len(response.content)
            records += len(body["data"])
            pages += 1
            if not body["next_token"]:
                break
            params["page_token"] = body["next_token"]
        elapsed = time.perf_counter() - started
        print(
            f"{pages} pages, {records} orders, {nbytes / 1e6:.1f} MB in {elapsed:.2f} s: "
            f"{pages / elapsed:.1f} pages/s, {records / elapsed:,.0f} records/s "
            f"(client parse included)"
        )
    finally:
        process.terminate()
        process.wait(timeout=5)


if __name__ == "__main__":
    main()
