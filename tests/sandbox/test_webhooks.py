import json
import time

import pytest
from svix.webhooks import Webhook

from tests.sandbox.spec import validate_webhook


def _verified(sandbox, delivery) -> dict:
    headers, body = delivery
    # Raises WebhookVerificationError unless the svix-signature matches.
    Webhook(sandbox.webhook_secret).verify(body, headers)
    return json.loads(body)


def test_connection_lifecycle_webhooks_are_signed(sandbox, webhook_receiver):
    sandbox.configure(historical_sync_delay=0.2)
    linked = sandbox.connect("shipbob", {"api_key": "k"})
    cid = linked["connection_id"]
    created = webhook_receiver.wait_for(lambda e: e["event_type"] == "connection.created")
    payload = _verified(sandbox, created[0])
    validate_webhook("connection.created", payload)
    assert payload["connection_id"] == cid
    assert payload["data"]["access_token"] == linked["access_token"]

    synced = webhook_receiver.wait_for(
        lambda e: (
            e["event_type"] == "connection.historical-sync-completed"
            and e["data"]["resource"] == "orders"
        )
    )
    validate_webhook("connection.historical-sync-completed", _verified(sandbox, synced[0]))

    sandbox.break_connection(cid)
    broke = webhook_receiver.wait_for(lambda e: e["event_type"] == "connection-error.created")
    validate_webhook("connection-error.created", _verified(sandbox, broke[0]))
    sandbox.repair_connection(cid)
    fixed = webhook_receiver.wait_for(lambda e: e["event_type"] == "connection-error.deleted")
    validate_webhook("connection-error.deleted", _verified(sandbox, fixed[0]))

    headers = {**sandbox.headers, "x-trackstar-access-token": linked["access_token"]}
    sandbox.session.delete(sandbox.url("/connections"), headers=headers, timeout=5)
    gone = webhook_receiver.wait_for(lambda e: e["event_type"] == "connection.deleted")
    validate_webhook("connection.deleted", _verified(sandbox, gone[0]))


@pytest.mark.parametrize(
    ("resource", "event"),
    [
        ("orders", "order.updated"),
        ("inventory", "inventory.updated"),
        ("inbound-shipments", "inbound-shipment.updated"),
        ("products", "product.updated"),
        ("returns", "return.updated"),
        ("warehouses", "warehouse.updated"),
        ("billing", "bill.updated"),
    ],
)
def test_mutate_sends_updated_events(sandbox, webhook_receiver, linked, resource, event):
    changed = sandbox.mutate(linked["connection_id"], resource, count=2)["updated_ids"]
    deliveries = webhook_receiver.wait_for(
        lambda e: e["event_type"] == event and e["data"]["id"] == changed[-1]
    )
    payload = _verified(sandbox, deliveries[0])
    validate_webhook(event, payload)
    assert payload["previous_attributes"]
    token = linked["access_token"]
    path = {"billing": "/wms/billing"}.get(resource, f"/wms/{resource}")
    current = sandbox.wms(token, f"{path}/{changed[-1]}").json()["data"]
    assert payload["data"] == current


def test_created_event(sandbox, webhook_receiver, linked):
    created = sandbox.mutate(linked["connection_id"], "orders", count=0, create=1)["created_ids"]
    deliveries = webhook_receiver.wait_for(lambda e: e["event_type"] == "order.created")
    payload = _verified(sandbox, deliveries[0])
    validate_webhook("order.created", payload)
    assert payload["data"]["id"] == created[0]


def test_failed_delivery_is_retried_with_the_same_svix_id(sandbox, webhook_receiver, linked):
    webhook_receiver.fail_all_first = True
    changed = sandbox.mutate(linked["connection_id"], "orders", count=1)["updated_ids"]
    deadline = time.monotonic() + 10
    deliveries = []
    while len(deliveries) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        deliveries = [
            d
            for d in webhook_receiver.deliveries
            if json.loads(d[1])["data"].get("id") == changed[0]
        ]
    assert len(deliveries) >= 2
    first, second = deliveries[0][0], deliveries[1][0]
    assert first["svix-id"] == second["svix-id"]
    _verified(sandbox, deliveries[1])


def _webhook_log_through(sandbox, svix_id: str, timeout: float = 10.0) -> list[dict]:
    """GET /_sandbox/webhooks once it lists svix_id (logged after the receiver answered)."""
    deadline = time.monotonic() + timeout
    while True:
        made = sandbox.get("/_sandbox/webhooks").json()["deliveries"]
        if svix_id in {d["id"] for d in made}:
            return made
        assert time.monotonic() < deadline, made
        time.sleep(0.05)


def test_no_webhook_url_means_no_delivery_and_no_error(sandbox, webhook_receiver, linked):
    cid = linked["connection_id"]
    sandbox.configure(webhook_url=None)
    unheard = sandbox.mutate(cid, "orders", count=1)["updated_ids"]
    sandbox.configure(webhook_url=webhook_receiver.url)
    heard = sandbox.mutate(cid, "inventory", count=1)["updated_ids"]
    (headers, _), *_ = webhook_receiver.wait_for(
        lambda e: e["event_type"] == "inventory.updated" and e["data"]["id"] == heard[0]
    )

    # One thread delivers in order: had the orders change been queued, it came first.
    assert unheard
    assert not [e for e in webhook_receiver.events() if e["event_type"] == "order.updated"]
    # Nor was it tried elsewhere: each delivery the sandbox made reached the receiver, once.
    made = _webhook_log_through(sandbox, headers["svix-id"])
    assert {d["status"] for d in made} == {204}
    assert {d["id"] for d in made} <= {h["svix-id"] for h, _ in webhook_receiver.deliveries}


def test_webhooks_disabled_silences_resource_events(sandbox, webhook_receiver, linked):
    headers = {**sandbox.headers, "x-trackstar-access-token": linked["access_token"]}
    sandbox.session.patch(
        sandbox.url("/connections"), json={"webhooks_disabled": True}, headers=headers, timeout=5
    )
    sandbox.mutate(linked["connection_id"], "orders", count=1)
    sandbox.break_connection(linked["connection_id"])
    webhook_receiver.wait_for(lambda e: e["event_type"] == "connection-error.created")
    assert not [e for e in webhook_receiver.events() if e["event_type"] == "order.updated"]
