"""Sync tests run against the real sandbox over HTTP and the real database (the `connect`
and `no_enqueue` fixtures are in tests/connections/conftest.py)."""

import time

from connections.models import Connection

# The sandbox names some resources differently from the client (its URL segments).
SANDBOX_NAMES = {
    "warehouses": "warehouses",
    "products": "products",
    "inventory": "inventory",
    "orders": "orders",
    "inbound_shipments": "inbound-shipments",
    "returns": "returns",
    "shipping_methods": "shipping-methods",
}


def sandbox_counts(sandbox, connection: Connection) -> dict[str, int]:
    counts = sandbox.connection(connection.trackstar_connection_id)["counts"]
    return {resource: counts[name] for resource, name in SANDBOX_NAMES.items()}


def sandbox_records(sandbox, connection: Connection, resource: str) -> dict[str, dict]:
    """Every record the sandbox holds for this resource, by id."""
    records: dict[str, dict] = {}
    params: dict = {"limit": 1000}
    path = "/wms/" + SANDBOX_NAMES[resource]
    while True:
        response = sandbox.wms(connection.access_token, path, params=params)
        if response.status_code == 429:
            # Same access token as the sync just used: the sandbox's 10 GET/s applies.
            time.sleep(float(response.headers.get("retry-after", "1")))
            continue
        assert response.ok, response.text
        body = response.json()
        records.update((record["id"], record) for record in body["data"])
        if not body["next_token"]:
            return records
        params = {"limit": 1000, "page_token": body["next_token"]}
