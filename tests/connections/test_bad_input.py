"""Bad input found by probing the demo (issue 11's list) is a clear 4xx, never a 500, and
changes nothing."""

import json
from datetime import UTC, datetime

import pytest
from svix.webhooks import Webhook

from connections.models import AuthCodeExchange, WebhookEvent
from tests.builders import make_user

DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def portal(client, customer):
    client.force_login(make_user(customer=customer))
    return client


@pytest.mark.parametrize("path", ["/portal/get-link-token", "/portal/store-token"])
def test_a_5000_deep_json_array_is_a_400(portal, path):
    response = portal.post(path, DEEP, content_type="application/json")

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


@pytest.mark.parametrize("auth_code", ["ac_\ud800", "ac_\x00abc"], ids=["lone-surrogate", "nul"])
def test_an_auth_code_postgresql_cannot_store_is_a_400_and_stores_nothing(portal, auth_code):
    body = json.dumps(
        {"auth_code": auth_code, "integration_name": "shipbob", "link_token": "lt_any"}
    )

    response = portal.post("/portal/store-token", body, content_type="application/json")

    assert response.status_code == 400
    assert "not allowed" in response.json()["error"]
    assert not AuthCodeExchange.objects.exists()


def test_a_date_at_the_end_of_the_calendar_is_no_500(portal):
    assert portal.get("/portal/orders/?to=9999-12-31").status_code == 200
    assert portal.get("/portal/orders/?from=9999-12-31&to=9999-12-31").status_code == 200


def _signed(client, settings, body: str, svix_id: str):
    settings.TRACKSTAR_WEBHOOK_SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA=="
    now = datetime.now(UTC)
    signature = Webhook(settings.TRACKSTAR_WEBHOOK_SECRET).sign(svix_id, now, body)
    return client.post(
        "/webhooks/trackstar/",
        body,
        content_type="application/json",
        HTTP_SVIX_ID=svix_id,
        HTTP_SVIX_TIMESTAMP=str(int(now.timestamp())),
        HTTP_SVIX_SIGNATURE=signature,
    )


def test_a_signed_but_absurdly_nested_webhook_is_a_400(client, settings, db):
    assert _signed(client, settings, DEEP, "msg_deep").status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_signed_webhook_with_a_nul_or_a_lone_surrogate_is_stored_not_a_500(
    client, settings, connection
):
    body = json.dumps(
        {
            "connection_id": connection.trackstar_connection_id,
            "event_type": "order.updated",
            "data": {"id": "ord_1", "order_number": "SO\x00-1\ud800"},
        }
    )

    response = _signed(client, settings, body, "msg_odd")

    assert response.status_code == 200
    event = WebhookEvent.objects.get(svix_id="msg_odd")
    assert event.payload["data"]["order_number"] == "SO-1?"
