"""Trackstar webhooks: stored once per svix-id by the view, applied by a task."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import Actor, audit_record
from connections import enqueue
from connections.clients import trackstar_client
from connections.health.services import health_check_enqueue
from connections.link.adoption import connection_adopt
from connections.models import Connection, MagicLink, UnassignedConnection, WebhookEvent
from connections.models.records import RECORD_MODELS
from connections.models.sync import resource_label
from connections.services import connection_mark_disconnected
from connections.sync.backfills import backfill_job_event
from connections.sync.schedule import (
    sync_force_completed,
    sync_history_completed,
    sync_schedule_initial,
)
from connections.sync.trackstar_budget import trackstar_get_limiter
from connections.sync.upsert import records_upsert
from connections.token_buckets import acquire
from connections.trackstar import TrackstarNotFound, resource_named

logger = logging.getLogger(__name__)

# Event type prefix → our resource. Trackstar's docs spell some both ways (API.md §8).
# Events of what we do not store (inventory_ledger.*, warehouse-location.*,
# warehouse-customer.*, bill.*, install.failed, cart and freight events) are stored and
# ignored, with the reason on the event.
EVENT_RESOURCES = {
    "order": "orders",
    "inventory": "inventory",
    "product": "products",
    "warehouse": "warehouses",
    "inbound-shipment": "inbound_shipments",
    "inbound_shipment": "inbound_shipments",
    "return": "returns",
    "shipping-method": "shipping_methods",
    "shipping_method": "shipping_methods",
}
# An event the broker never took (it was down when the event came): sent a minute later.
STALE_SECONDS = 60


def webhook_receive(*, svix_id: str, payload: dict[str, Any]) -> tuple[WebhookEvent, bool]:
    """Store a verified delivery once; a repeat of the same svix-id changes nothing."""
    payload, access_token = _without_secrets(payload)
    with transaction.atomic():
        event, created = WebhookEvent.objects.get_or_create(
            svix_id=svix_id,
            defaults={
                "event_type": str(payload.get("event_type") or "")[:100],
                "trackstar_connection_id": str(payload.get("connection_id") or "")[:128],
                "payload": payload,
                "access_token": access_token,
            },
        )
        if created:
            transaction.on_commit(lambda: webhook_enqueue(event_id=event.pk), robust=True)
    return event, created


def _without_secrets(payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    data = payload.get("data")
    token = data.get("access_token") if isinstance(data, dict) else None
    if isinstance(data, dict) and isinstance(token, str):
        return {**payload, "data": {**data, "access_token": "[encrypted]"}}, token
    return payload, ""


def webhook_enqueue(*, event_id: int) -> bool:
    if not enqueue.webhook_event(event_id):
        logger.warning("Broker unavailable; webhook event %s left for the sweep", event_id)
        return False
    WebhookEvent.objects.filter(pk=event_id).update(enqueued_at=timezone.now())
    return True


def webhooks_sweep() -> int:
    """Enqueue events stored while the broker was down (never enqueued, a minute later), or
    whose task was lost (enqueued WEBHOOK_LOST_TASK_SECONDS ago, still not applied: Redis
    restarted empty, or the worker holding it died). A second delivery of a live task
    costs nothing: applying takes the row's lock and does nothing to an applied event.
    Oldest first, WEBHOOK_SWEEP_BATCH at most, so a real backlog is not doubled."""
    now = timezone.now()
    lost_before = now - timedelta(seconds=settings.WEBHOOK_LOST_TASK_SECONDS)
    ids = list(
        WebhookEvent.objects.filter(
            Q(enqueued_at__isnull=True, received_at__lt=now - timedelta(seconds=STALE_SECONDS))
            | Q(enqueued_at__lt=lost_before),
            status=WebhookEvent.Status.RECEIVED,
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[: settings.WEBHOOK_SWEEP_BATCH]
    )
    return sum(webhook_enqueue(event_id=event_id) for event_id in ids)


def webhook_retry_scheduled(*, event_id: int, countdown: float) -> None:
    """The task retries by itself in `countdown` seconds (Trackstar busy): the sweep leaves
    the event alone until that retry is overdue, rather than start a second chain."""
    WebhookEvent.objects.filter(pk=event_id, status=WebhookEvent.Status.RECEIVED).update(
        enqueued_at=timezone.now() + timedelta(seconds=countdown)
    )


def webhook_retry(*, event: WebhookEvent, actor: Actor) -> bool:
    """Staff's retry of a failed event."""
    with transaction.atomic():
        updated = WebhookEvent.objects.filter(
            pk=event.pk, status=WebhookEvent.Status.FAILED
        ).update(status=WebhookEvent.Status.RECEIVED, error="")
        if updated:
            audit_record(
                actor=actor,
                action="webhook.retried",
                connection=event.connection,
                svix_id=event.svix_id,
                event_type=event.event_type,
            )
            transaction.on_commit(lambda: webhook_enqueue(event_id=event.pk), robust=True)
    return bool(updated)


@dataclass(frozen=True)
class _Fetched:
    """What applying an event needs from Trackstar, fetched before any transaction opens
    (no row lock is held across an HTTP call)."""

    details: dict[str, Any] | None = None  # GET /connections/{id}, for an unknown connection
    record: dict[str, Any] | None = None  # GET of the one record of a truncated event
    gone: bool = False  # Trackstar answered 404 for it


def webhook_apply(*, event_id: int) -> WebhookEvent | None:
    fetched = _fetch_for(event_id)
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is None or event.status != WebhookEvent.Status.RECEIVED:
            return event  # applied already: deliveries are processed once
        event.attempts += 1
        connection = (
            Connection.objects.select_related("customer")
            .filter(trackstar_connection_id=event.trackstar_connection_id)
            .first()
        )
        event.connection = connection
        if connection is None:
            ignored_because = _apply_unknown(event, fetched)
        else:
            ignored_because = _apply(event, connection, fetched)
        _finish(
            event,
            WebhookEvent.Status.IGNORED if ignored_because else WebhookEvent.Status.PROCESSED,
            ignored_because or "",
        )
    return event


def _fetch_for(event_id: int) -> _Fetched:
    """Trackstar outages raise, for the task to retry; the event stays received."""
    event = WebhookEvent.objects.filter(pk=event_id, status=WebhookEvent.Status.RECEIVED).first()
    if event is None:
        return _Fetched()
    connection = Connection.objects.filter(
        trackstar_connection_id=event.trackstar_connection_id
    ).first()
    data = event.payload.get("data")
    client = trackstar_client()
    if connection is None and event.event_type == "connection.created":
        try:
            return _Fetched(details=client.get_connection(event.trackstar_connection_id))
        except TrackstarNotFound:
            return _Fetched(gone=True)
    resource = EVENT_RESOURCES.get(event.event_type.partition(".")[0])
    if (
        connection is None
        or resource is None
        or not event.payload.get("data_truncated")
        or not isinstance(data, dict)
        or not data.get("id")
        or connection.status != Connection.Status.ACTIVE
        or not connection.access_token
    ):
        return _Fetched()
    # Too big for a webhook: Trackstar sent only the id (API.md §8, §10). Fetch that one
    # record, never the whole resource, under the token's shared GET budget.
    acquire(trackstar_get_limiter(), connection.access_token)
    try:
        return _Fetched(
            record=client.get_record(
                resource, str(data["id"]), access_token=connection.access_token
            )
        )
    except TrackstarNotFound:
        return _Fetched(gone=True)


def _apply_unknown(event: WebhookEvent, fetched: _Fetched) -> str | None:
    """An event for a connection Dockside does not have. connection.created may be one made
    in Trackstar's dashboard or by a Trackstar magic link: adopt it, or keep it for staff."""
    if event.event_type != "connection.created":
        return "No such connection in Dockside."
    if fetched.gone:
        return "Trackstar no longer has this connection."
    if fetched.details is None:
        return "Trackstar's view of the connection was not fetched; the reconcile job finds it."
    customer_id = event.payload.get("customer_id") or (event.payload.get("data") or {}).get(
        "customer_id"
    )
    adopted = connection_adopt(
        trackstar_connection_id=event.trackstar_connection_id,
        access_token=event.access_token,
        details=fetched.details,
        customer_id=customer_id if isinstance(customer_id, str) else None,
        seen_via=UnassignedConnection.SeenVia.WEBHOOK,
    )
    if adopted is None:
        return "One of our own connects is still storing (or deleting) this connection."
    if isinstance(adopted, Connection):
        event.connection = adopted
    return None  # adopted, or waiting in admin's unassigned connections


def webhook_fail(*, event_id: int, error: str) -> None:
    WebhookEvent.objects.filter(pk=event_id, status=WebhookEvent.Status.RECEIVED).update(
        status=WebhookEvent.Status.FAILED, error=error[:2000], processed_at=timezone.now()
    )


def _finish(event: WebhookEvent, status: str, error: str) -> None:
    event.status = status
    event.error = error
    event.processed_at = timezone.now()
    event.save()


def _apply(event: WebhookEvent, connection: Connection, fetched: _Fetched) -> str | None:
    """Apply the event; None when done, else why it was ignored."""
    event_type = event.event_type
    data = event.payload.get("data") or {}
    if not isinstance(data, dict):
        return "The event carries no data."
    if event_type.startswith("connection-error."):
        # created / updated / deleted: Trackstar's GET /connections/{id} says which errors
        # remain and of which kind (the webhook's shape does not say blocking or not).
        transaction.on_commit(
            lambda: health_check_enqueue(connection_id=connection.pk), robust=True
        )
        return None
    if event_type == "connection.deleted":
        connection_mark_disconnected(
            connection=connection, actor=None, reason="The connection was deleted at Trackstar."
        )
        return None
    if event_type == "connection.created":
        if not _adopt_token(connection, event.access_token):
            return "The connection already has its access token."
        return None
    if connection.status != Connection.Status.ACTIVE and event_type.startswith("connection."):
        return f"The connection is {connection.get_status_display().lower()}."
    if event_type == "connection.historical-sync-completed":
        resource = resource_named(data.get("resource"))
        if resource not in RECORD_MODELS:
            return f"Dockside does not sync {data.get('resource') or 'this resource'}."
        if not sync_history_completed(connection=connection, resources=[resource]):
            return f"{resource_label(resource)} was already being synced."
        return None
    if event_type == "connection.force-sync-completed":
        functions = data.get("functions_to_sync")
        resources = None
        if isinstance(functions, list):
            resources = [r for r in map(resource_named, functions) if r in RECORD_MODELS]
        sync_force_completed(connection=connection, resources=resources)
        return None
    if event_type in ("connection.sync-job-completed", "connection.sync-job-stuck"):
        return backfill_job_event(
            connection=connection, job=data, stuck=event_type.endswith("stuck")
        )
    if event_type == "connection.schedule-stuck":
        logger.warning(
            "Trackstar reports a stuck sync schedule",
            extra={"connection_id": connection.trackstar_connection_id},
        )
        audit_record(
            actor=None, action="trackstar.schedule_stuck", connection=connection, detail=data
        )
        return None
    prefix, _, _action = event_type.partition(".")
    record_resource = EVENT_RESOURCES.get(prefix)
    if record_resource is None:
        return f"Dockside does not use {event_type} events."
    if not data.get("id"):
        return "The event carries no record."
    if event.payload.get("data_truncated"):
        if fetched.gone:
            return "Trackstar no longer has that record."
        if fetched.record is None:
            return f"The connection is {connection.get_status_display().lower()}."
        data = fetched.record
    # order.created / order.updated / order.shipment.created … all carry the full record.
    records_upsert(
        connection=connection, resource=record_resource, records=[data], only_if_newer=True
    )
    return None


def _adopt_token(connection: Connection, token: str) -> bool:
    """connection.created carries the access token: it completes a connection that was
    recovered after a lost exchange (connections.link.exchanges._recover_from_trackstar) and is
    waiting for it. Nothing else: a disconnected connection stays so."""
    if (
        connection.access_token
        or not token
        or connection.status != Connection.Status.NEEDS_RECONNECT
    ):
        return False
    now = timezone.now()
    connection.access_token = token
    connection.status = Connection.Status.ACTIVE
    connection.last_error = ""
    connection.reconnect_cause = ""
    # Finished as a reconnect would: the incident is over, and the reconnect link emailed
    # for it has nothing left to do.
    connection.reconnect_notified_at = None
    connection.connected_at = now
    connection.save(
        update_fields=[
            "access_token",
            "status",
            "last_error",
            "reconnect_cause",
            "reconnect_notified_at",
            "connected_at",
            "updated_at",
        ]
    )
    MagicLink.objects.filter(reinstall_connection=connection, revoked_at__isnull=True).update(
        revoked_at=now
    )
    audit_record(actor=None, action="connection.token_received", connection=connection)
    transaction.on_commit(lambda: sync_schedule_initial(connection=connection), robust=True)
    return True
