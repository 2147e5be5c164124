"""Webhooks for real: the sandbox signs and sends them to the live server, the worker applies
them; and one delivery sent three times at once is applied once."""

import json
import threading
from datetime import UTC, datetime

import pytest
import requests
from svix.webhooks import Webhook

from connections.models import Connection, MagicLink, Order, WebhookEvent
from connections.webhooks import services as webhook_service
from tests.builders import make_connection, make_customer
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def connected(live_trackstar):
    customer = make_customer(name="Acme Outdoor")
    made = live_trackstar.connect("shipbob", {"api_key": "sk_1"}, customer_id=customer.public_id)
    return make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
        available_actions=[],
    )


def test_a_broken_connection_needs_reconnect_and_its_repair_clears_it(live_trackstar, connected):
    live_trackstar.break_connection(connected.trackstar_connection_id)

    wait_for(
        lambda: Connection.objects.get(pk=connected.pk).status == "needs_reconnect",
        message="connection-error.created to be applied",
    )
    link = MagicLink.objects.get()  # the contact's reconnect link, once per incident
    assert link.reinstall_connection_id == connected.pk and link.emailed_to

    live_trackstar.repair_connection(connected.trackstar_connection_id)
    wait_for(
        lambda: Connection.objects.get(pk=connected.pk).status == "active",
        message="connection-error.deleted to be applied",
    )
    assert MagicLink.objects.count() == 1


def test_the_same_delivery_three_times_at_once_is_applied_once(
    live_server, live_trackstar, connected
):
    body = json.dumps(
        {
            "connection_id": connected.trackstar_connection_id,
            "integration_name": "shipbob",
            "integration_type": "wms",
            "event_type": "order.created",
            "data": {
                "id": "ord_hook_1",
                "order_number": "#HOOK-1",
                "status": "open",
                "created_date": "2026-11-20T10:00:00Z",
                "updated_date": "2026-11-20T10:00:00Z",
            },
        }
    )
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "svix-id": "msg_concurrent_1",
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": Webhook(live_trackstar.webhook_secret).sign(
            "msg_concurrent_1", now, body
        ),
    }
    barrier = threading.Barrier(3)
    statuses = []

    def deliver():
        barrier.wait()
        statuses.append(
            requests.post(
                f"{live_server.url}/webhooks/trackstar/", data=body, headers=headers, timeout=10
            ).status_code
        )

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200, 200, 200]
    wait_for(
        lambda: WebhookEvent.objects.filter(status="processed").exists(),
        message="the worker to apply the event",
    )
    event = WebhookEvent.objects.get(svix_id="msg_concurrent_1")
    assert event.attempts == 1
    assert Order.objects.get().order_number == "#HOOK-1"
    # Applying it again (a redelivered task) changes nothing.
    webhook_service.webhook_apply(event_id=event.pk)
    assert WebhookEvent.objects.get(pk=event.pk).attempts == 1


def test_a_badly_signed_delivery_is_refused(live_server, live_trackstar, connected):
    response = requests.post(
        f"{live_server.url}/webhooks/trackstar/",
        data="{}",
        timeout=10,
        headers={"svix-id": "msg_x", "svix-timestamp": "1", "svix-signature": "v1,Zm9v"},
    )

    assert response.status_code == 400
    assert not WebhookEvent.objects.filter(svix_id="msg_x").exists()
