import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

WMS_RESOURCES = {
    "warehouses": "/wms/warehouses",
    "warehouse-customers": "/wms/warehouse-customers",
    "inventory": "/wms/inventory",
    "products": "/wms/products",
    "orders": "/wms/orders",
    "inbound-shipments": "/wms/inbound-shipments",
    "returns": "/wms/returns",
    "shipping-methods": "/wms/shipping-methods",
    "billing": "/wms/billing",
}


@pytest.fixture
def linked(sandbox) -> dict:
    """A fresh ShipBob connection: the /link/exchange response. Rate limits are raised so
    tests can page freely (the rate-limit tests lower them again), and the initial sync takes
    no time, so data reads right after connecting (the history tests set a delay)."""
    sandbox.configure(get_rate=10_000, write_rate=10_000, historical_sync_delay=0)
    return sandbox.connect("shipbob", {"api_key": "sk_test_123"}, customer_id="cust_1")


class WebhookReceiver:
    def __init__(self) -> None:
        self.deliveries: list[tuple[dict, bytes]] = []
        self.fail_ids: set[str] = set()  # svix-ids to refuse once with a 500
        self.fail_all_first = False
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.deliveries.append((headers, body))
                    first = headers["svix-id"] not in receiver._seen
                    receiver._seen.add(headers["svix-id"])
                fail = first and (
                    receiver.fail_all_first or headers["svix-id"] in receiver.fail_ids
                )
                self.send_response(500 if fail else 204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/trackstar"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.deliveries]

    def wait_for(
        self, predicate, timeout: float = 10.0, count: int = 1
    ) -> list[tuple[dict, bytes]]:
        """The deliveries whose payload matches, once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                matching = [d for d in self.deliveries if predicate(json.loads(d[1]))]
            if len(matching) >= count:
                return matching
            time.sleep(0.05)
        raise AssertionError(
            f"fewer than {count} matching webhooks within {timeout}s; got {self.events()}"
        )


@pytest.fixture
def webhook_receiver(sandbox):
    receiver = WebhookReceiver()
    sandbox.configure(webhook_url=receiver.url, webhook_retry_delays=[0.2, 0.4, 0.8])
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
