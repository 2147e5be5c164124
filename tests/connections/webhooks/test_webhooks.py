import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from svix.webhooks import Webhook

from connections import services
from connections.link import magic_links as magic_link_service
from connections.models import Connection, MagicLink, Order, WebhookEvent
from connections.webhooks import services as webhook_service
from tests.builders import make_connection

URL = "/webhooks/trackstar/"
SECRET = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3OA=="


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.TRACKSTAR_WEBHOOK_SECRET = SECRET


def signed(
    payload: dict, *, svix_id: str = "msg_1", at: datetime | None = None, secret: str = SECRET
) -> tuple[str, dict]:
    body = json.dumps(payload)
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(svix_id, at, body)
    return body, {
        "HTTP_SVIX_ID": svix_id,
        "HTTP_SVIX_TIMESTAMP": str(int(at.timestamp())),
        "HTTP_SVIX_SIGNATURE": signature,
    }


def deliver(client, payload, **kwargs):
    body, headers = signed(payload, **kwargs)
    return client.post(URL, body, content_type="application/json", **headers)


def order_event(
    connection,
    *,
    order_id="ord_1",
    status="open",
    updated="2026-11-01T10:00:00Z",
    event_type="order.updated",
):
    return {
        "connection_id": connection.trackstar_connection_id,
        "integration_name": "shipbob",
        "integration_type": "wms",
        "event_type": event_type,
        "data": {
            "id": order_id,
            "order_number": "#1001",
            "status": status,
            "created_date": "2026-10-01T10:00:00Z",
            "updated_date": updated,
        },
        "previous_attributes": {"status": "open"},
    }


def test_a_signed_delivery_is_stored_once_and_enqueued_once(
    client, connection, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        responses = [deliver(client, order_event(connection)) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["duplicate"] for r in responses] == [False, True, True]
    assert WebhookEvent.objects.count() == 1
    assert len(callbacks) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, h: (body.replace("open", "shipped"), h),  # body changed after signing
        lambda body, h: (body, {**h, "HTTP_SVIX_SIGNATURE": "v1,bm90LWEtc2lnbmF0dXJl"}),
        lambda body, h: (body, {**h, "HTTP_SVIX_SIGNATURE": "garbage"}),
        lambda body, h: (body, {**h, "HTTP_SVIX_TIMESTAMP": "not-a-number"}),
        lambda body, h: (body, {k: v for k, v in h.items() if k != "HTTP_SVIX_SIGNATURE"}),
    ],
    ids=["body", "signature", "malformed-signature", "malformed-timestamp", "missing"],
)
def test_a_bad_signature_is_400_and_stores_nothing(client, connection, tamper):
    body, headers = tamper(*signed(order_event(connection)))

    response = client.post(URL, body, content_type="application/json", **headers)

    assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0


def test_a_timestamp_more_than_five_minutes_off_is_refused(client, connection):
    response = deliver(client, order_event(connection), at=datetime.now(UTC) - timedelta(minutes=6))

    assert response.status_code == 400
    assert WebhookEvent.objects.count() == 0


def test_another_secret_is_refused(client, connection):
    other = "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA=="
    assert deliver(client, order_event(connection), secret=other).status_code == 400


def _apply(client, payload, svix_id):
    deliver(client, payload, svix_id=svix_id)  # its enqueue waits for a commit that never comes
    return webhook_service.webhook_apply(event_id=WebhookEvent.objects.get(svix_id=svix_id).pk)


def test_record_events_upsert_but_never_go_back_in_time(client, connection):
    _apply(
        client, order_event(connection, status="shipped", updated="2026-11-02T00:00:00Z"), "msg_new"
    )
    event = _apply(
        client, order_event(connection, status="open", updated="2026-11-01T00:00:00Z"), "msg_old"
    )

    order = Order.objects.get()
    assert order.status == "shipped"
    assert order.customer == connection.customer
    assert event.status == WebhookEvent.Status.PROCESSED


def test_connection_errors_ask_trackstar_instead_of_taking_the_webhooks_word(
    client, connection, monkeypatch, django_capture_on_commit_callbacks
):
    """The webhook's shape does not say whether an error is blocking: each one makes us
    re-read GET /connections/{id}; by itself it changes nothing and emails nobody."""
    from connections.webhooks import services as webhooks_service

    checks = []
    monkeypatch.setattr(
        webhooks_service, "health_check_enqueue", lambda connection_id: checks.append(connection_id)
    )
    for n, kind in enumerate(["created", "updated", "deleted"]):
        with django_capture_on_commit_callbacks(execute=True):
            event = _apply(
                client,
                {
                    "connection_id": connection.trackstar_connection_id,
                    "event_type": f"connection-error.{kind}",
                    "data": {
                        "error_message": "ShipBob rejected the API key.",
                        "affected_endpoints": [],
                    },
                },
                f"msg_e{n}",
            )
        assert event.status == WebhookEvent.Status.PROCESSED

    connection.refresh_from_db()
    assert checks == [connection.pk] * 3
    assert connection.status == Connection.Status.ACTIVE
    assert not mail.outbox


def test_connection_deleted_disconnects(client, connection):
    _apply(
        client,
        {
            "connection_id": connection.trackstar_connection_id,
            "event_type": "connection.deleted",
            "data": {},
        },
        "msg_d",
    )

    connection.refresh_from_db()
    assert connection.status == Connection.Status.DISCONNECTED
    assert connection.access_token == ""


def test_historical_sync_completed_syncs_that_resource(
    client, customer, django_capture_on_commit_callbacks
):
    connection = make_connection(customer=customer, available_actions=["get_orders"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        event = _apply(
            client,
            {
                "connection_id": connection.trackstar_connection_id,
                "event_type": "connection.historical-sync-completed",
                "data": {"resource": "orders"},
            },
            "msg_h",
        )

    assert event.status == WebhookEvent.Status.PROCESSED
    assert len(callbacks) == 2  # the webhook's own enqueue, then the sync of orders


def test_unknown_event_types_are_stored_and_ignored(client, connection):
    event = _apply(
        client,
        {
            "connection_id": connection.trackstar_connection_id,
            "event_type": "bill.created",
            "data": {"id": "b1"},
        },
        "msg_u",
    )

    assert event.status == WebhookEvent.Status.IGNORED
    assert event.error == "Dockside does not use bill.created events."
    assert Order.objects.count() == 0


def test_the_access_token_in_connection_created_is_stored_encrypted(client, customer):
    from django.db import connection as db_connection

    recovered = make_connection(
        customer=customer, access_token="", status=Connection.Status.NEEDS_RECONNECT
    )
    event = _apply(
        client,
        {
            "connection_id": recovered.trackstar_connection_id,
            "event_type": "connection.created",
            "data": {"access_token": "trackstar_eyFROMWEBHOOK"},
        },
        "msg_c",
    )

    with db_connection.cursor() as cursor:
        cursor.execute("SELECT payload::text, access_token FROM connections_webhookevent")
        payload, stored = cursor.fetchone()
    assert "trackstar_eyFROMWEBHOOK" not in payload + stored
    recovered.refresh_from_db()
    assert recovered.access_token == "trackstar_eyFROMWEBHOOK"
    assert recovered.status == Connection.Status.ACTIVE
    assert event.status == WebhookEvent.Status.PROCESSED


def test_a_late_connection_created_finishes_a_recovery_and_voids_its_reconnect_email(
    client, customer, django_capture_on_commit_callbacks
):
    recovered = make_connection(
        customer=customer, access_token="", status=Connection.Status.PENDING
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.connection_mark_needs_reconnect(
            connection_id=recovered.pk,
            reason="The connection was made, but its access token did not reach us.",
            cause=Connection.ReconnectCause.TOKEN_MISSING,
        )
    emailed = MagicLink.objects.get(reinstall_connection=recovered)
    assert len(mail.outbox) == 1

    event = _apply(
        client,
        {
            "connection_id": recovered.trackstar_connection_id,
            "event_type": "connection.created",
            "data": {"access_token": "trackstar_eyLATE"},
        },
        "msg_late_token",
    )

    assert event.status == WebhookEvent.Status.PROCESSED
    recovered.refresh_from_db()
    assert recovered.status == Connection.Status.ACTIVE
    assert recovered.access_token == "trackstar_eyLATE"
    assert recovered.reconnect_cause == "" and recovered.last_error == ""
    emailed.refresh_from_db()
    assert emailed.state == MagicLink.State.REVOKED  # its reconnect has nothing left to do


def test_a_late_connection_created_does_not_revive_a_disconnected_connection(client, customer):
    gone = make_connection(
        customer=customer, access_token="", status=Connection.Status.DISCONNECTED
    )

    event = _apply(
        client,
        {
            "connection_id": gone.trackstar_connection_id,
            "event_type": "connection.created",
            "data": {"access_token": "trackstar_eyLATE"},
        },
        "msg_late",
    )

    gone.refresh_from_db()
    assert gone.status == Connection.Status.DISCONNECTED and gone.access_token == ""
    assert event.status == WebhookEvent.Status.IGNORED


def test_connection_deleted_revokes_reconnect_links_and_is_audited(client, connection):
    from audit.models import AuditEntry

    link = magic_link_service.magic_link_issue(
        customer=connection.customer, created_by=None, reinstall_connection=connection
    ).link

    _apply(
        client,
        {
            "connection_id": connection.trackstar_connection_id,
            "event_type": "connection.deleted",
            "data": {},
        },
        "msg_del",
    )

    link.refresh_from_db()
    assert link.state == MagicLink.State.REVOKED
    assert AuditEntry.objects.filter(
        action="connection.disconnected", connection=connection
    ).exists()


def test_a_truncated_record_event_fetches_that_one_record(
    client, customer, trackstar, settings, django_capture_on_commit_callbacks
):
    """Oversized events carry only the id (API.md §10): fetch the record, never the whole
    resource, and never store the stub."""
    settings.TRACKSTAR_WEBHOOK_SECRET = SECRET  # the trackstar fixture set the sandbox's
    trackstar.configure(historical_sync_delay=0)
    made = trackstar.connect("sandbox", {"api_key": "k"})
    connection = make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        access_token=made["access_token"],
        available_actions=["get_orders"],
    )
    record = trackstar.wms(made["access_token"], "/wms/orders", params={"limit": 1}).json()["data"][
        0
    ]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        event = _apply(
            client,
            {
                "connection_id": connection.trackstar_connection_id,
                "event_type": "order.updated",
                "data_truncated": True,
                "data": {"id": record["id"]},
                "data_url": f"{trackstar.base_url}/unused",
            },
            "msg_trunc",
        )

    assert event.status == WebhookEvent.Status.PROCESSED
    assert Order.objects.get().data == record
    assert len(callbacks) == 1  # the event's own enqueue; no resource sync


def test_the_sweep_resends_only_events_that_waited_too_long(connection, published):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    never = WebhookEvent.objects.create(svix_id="m1", event_type="order.updated", payload={})
    recent = WebhookEvent.objects.create(
        svix_id="m2", event_type="order.updated", payload={}, enqueued_at=now
    )
    lost = WebhookEvent.objects.create(
        svix_id="m3", event_type="order.updated", payload={}, enqueued_at=now - timedelta(hours=1)
    )
    WebhookEvent.objects.update(received_at=now - timedelta(hours=2))

    assert webhook_service.webhooks_sweep() == 2
    sent = [args[0] for name, args, _ in published if name == "connections.webhook"]
    assert sorted(sent) == sorted([never.pk, lost.pk])
    assert recent.pk not in sent


def test_the_sweep_resends_an_event_lost_a_minute_and_a_half_ago_but_not_a_retry_due_later(
    connection, published
):
    from datetime import timedelta

    from django.utils import timezone

    # Both handed to the broker 90 s ago; then Redis restarted empty. One of them had its
    # task say it retries in two minutes (Trackstar busy): that retry is not lost yet.
    lost, retrying = (
        WebhookEvent.objects.create(svix_id=svix_id, event_type="order.updated", payload={})
        for svix_id in ("m_lost", "m_retrying")
    )
    WebhookEvent.objects.update(
        received_at=timezone.now() - timedelta(seconds=90),
        enqueued_at=timezone.now() - timedelta(seconds=90),
    )
    webhook_service.webhook_retry_scheduled(event_id=retrying.pk, countdown=120)

    assert webhook_service.webhooks_sweep() == 1
    assert published == [("connections.webhook", (lost.pk,), {})]
