"""Backfills: history older than Trackstar's initial window, one resource at a time, through
Trackstar's on-demand syncs (API.md §4; DOC:on-demand-syncs.mdx). The records arrive when
Trackstar sends connection.sync-job-completed: they carry a new trackstar_updated_date,
so an incremental read of the resource picks them up."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import Actor, audit_record, user_or_none
from connections.clients import trackstar_client
from connections.models import RECORD_MODELS, Backfill, Connection, SyncRun
from connections.models.records import parse_datetime
from connections.models.sync import resource_label
from connections.sync.schedule import sync_request
from connections.trackstar import (
    RESOURCE_ACTIONS,
    TrackstarBadRequest,
    TrackstarError,
    resource_named,
)

logger = logging.getLogger(__name__)

# Inventory is a full snapshot at every sync: Trackstar does not backfill it (DOC).
# The WMS functions Trackstar's on-demand syncs exist for (DOC:on-demand-syncs.mdx):
# inventory is a full snapshot at every sync, and warehouses or shipping methods have no
# history to backfill. Whether one WMS supports one of these, Trackstar's 400 says.
BACKFILL_FUNCTIONS = frozenset(
    {"get_products", "get_orders", "get_inbound_shipments", "get_returns", "get_bills"}
)


def backfill_resources() -> list[str]:
    return [r for r in RECORD_MODELS if RESOURCE_ACTIONS[r] in BACKFILL_FUNCTIONS]


def backfill_request(
    *,
    connection: Connection,
    resource: str,
    start_time: datetime,
    end_time: datetime,
    actor: Actor,
) -> Backfill:
    """Ask Trackstar to backfill one resource over [start_time, end_time]. Trackstar's own
    refusal (400 "On-demand sync is not enabled for …") is shown as it is."""
    if resource not in backfill_resources():
        raise ValidationError(f"Trackstar has no backfill for {resource_label(resource).lower()}.")
    if connection.status != Connection.Status.ACTIVE:
        raise ValidationError(
            f"{connection} is {connection.get_status_display().lower()}; "
            "only an active connection can be backfilled."
        )
    end_time = min(end_time, timezone.now())  # "up to today" means up to now
    if start_time >= end_time:
        raise ValidationError("The start of the window must be before its end (and in the past).")
    try:
        job = trackstar_client().create_on_demand_sync(
            access_token=connection.access_token,
            function_name=RESOURCE_ACTIONS[resource],
            start_time=start_time,
            end_time=end_time,
        )
    except TrackstarBadRequest as e:
        raise ValidationError(e.message) from e
    except TrackstarError as e:
        raise ValidationError(f"Trackstar could not start the backfill: {e.message}") from e
    with transaction.atomic():
        backfill, _ = Backfill.objects.get_or_create(
            trackstar_job_id=job["id"],
            defaults={
                "connection": connection,
                "resource": resource,
                "status": _status(job.get("status")) or Backfill.Status.OPEN,
                "start_time": start_time,
                "end_time": end_time,
                "requested_by": user_or_none(actor),
            },
        )
        audit_record(
            actor=actor,
            action="connection.backfill_requested",
            connection=connection,
            resource=resource,
            job_id=job["id"],
            start_time=start_time.isoformat(),
            end_time=end_time.isoformat(),
        )
    return backfill


def backfill_cancel(*, backfill: Backfill, actor: Actor) -> Backfill:
    if backfill.status != Backfill.Status.OPEN:
        raise ValidationError("Only a running backfill can be cancelled.")
    connection = backfill.connection
    try:
        job = trackstar_client().cancel_on_demand_sync(
            backfill.trackstar_job_id, access_token=connection.access_token
        )
    except TrackstarError as e:
        raise ValidationError(f"Trackstar could not cancel the backfill: {e.message}") from e
    with transaction.atomic():
        # A completion event may have landed while we asked: it wins.
        backfill = Backfill.objects.select_for_update().get(pk=backfill.pk)
        if backfill.status == Backfill.Status.OPEN:
            _set_status(backfill, _status(job.get("status")) or Backfill.Status.CANCELLED)
        audit_record(
            actor=actor,
            action="connection.backfill_cancelled",
            connection=connection,
            job_id=backfill.trackstar_job_id,
        )
    return backfill


def backfill_job_event(*, connection: Connection, job: dict[str, Any], stuck: bool) -> str | None:
    """connection.sync-job-completed / -stuck. A job made in Trackstar's dashboard is
    recorded too, so staff see it. Returns why the event was ignored, or None."""
    job_id = job.get("id") or job.get("sync_job_id")
    resource = resource_named(job.get("function_name"))
    resource = resource if resource in RECORD_MODELS else None
    if not isinstance(job_id, str) or not job_id:
        return "The event names no sync job."
    with transaction.atomic():
        backfill = Backfill.objects.select_for_update().filter(trackstar_job_id=job_id).first()
        if backfill is None:
            if resource is None:
                return f"Dockside does not sync {job.get('function_name') or 'this function'}."
            backfill = Backfill.objects.create(
                connection=connection,
                resource=resource,
                trackstar_job_id=job_id,
                start_time=parse_datetime(job.get("requested_start_time")) or timezone.now(),
                end_time=parse_datetime(job.get("requested_end_time")) or timezone.now(),
            )
        if stuck:
            _set_status(
                backfill,
                Backfill.Status.STUCK,
                error="Trackstar reports this backfill is stuck; ask Trackstar support.",
            )
            return None
        _backfill_finished(backfill, _status(job.get("status")) or Backfill.Status.COMPLETED)
    return None


def _backfill_finished(backfill: Backfill, status: str) -> None:
    already = backfill.status == Backfill.Status.COMPLETED
    _set_status(backfill, status)
    if status == Backfill.Status.COMPLETED and not already:
        sync_request(
            connection_id=backfill.connection_id,
            resource=backfill.resource,
            kind=SyncRun.Kind.BACKFILL,
        )


def backfills_poll(*, now: datetime) -> int:
    """The safety net for a missed sync-job event: look at open jobs every few minutes.
    Each job is claimed (its updated_at moved on) before Trackstar is asked, so two polls
    at once never ask twice, nor read its records twice."""
    stale = Backfill.objects.filter(
        status=Backfill.Status.OPEN,
        updated_at__lt=now - timedelta(minutes=5),
        connection__status=Connection.Status.ACTIVE,
    )
    with transaction.atomic():
        claimed = list(
            stale.select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)[
                :100
            ]
        )
        Backfill.objects.filter(pk__in=claimed).update(updated_at=now)
    for backfill in Backfill.objects.filter(pk__in=claimed).select_related("connection"):
        try:
            job = trackstar_client().get_on_demand_sync(
                backfill.trackstar_job_id, access_token=backfill.connection.access_token
            )
        except TrackstarError:
            logger.warning("Could not check backfill %s", backfill.trackstar_job_id, exc_info=True)
            continue
        status = _status(job.get("status"))
        if status and status != Backfill.Status.OPEN:
            with transaction.atomic():
                locked = Backfill.objects.select_for_update().get(pk=backfill.pk)
                if locked.status == Backfill.Status.OPEN:
                    _backfill_finished(locked, status)
    return len(claimed)


def _status(value: Any) -> str:
    return value if value in Backfill.Status.values else ""


def _set_status(backfill: Backfill, status: str, *, error: str = "") -> None:
    backfill.status = status
    backfill.error = error
    if status != Backfill.Status.OPEN and backfill.finished_at is None:
        backfill.finished_at = timezone.now()
    backfill.save(update_fields=["status", "error", "finished_at", "updated_at"])
