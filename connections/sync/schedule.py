"""When and whether syncs run (DESIGN.md §6): the schedule of each (connection, resource),
the dispatcher that requests what is due, and requested runs as rows.

A run asked for (by the schedule, staff, a webhook, a backfill, a resume) is a row on the
resource's ResourceSync first and a message second, so a lost message comes back from the
database. Running one (the lease, the pages) is run.py's, which takes the request.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from connections import enqueue
from connections.health.account import trackstar_key_rejected
from connections.models import RECORD_MODELS, Connection, ResourceSync, SyncRun
from connections.trackstar import RESOURCE_ACTIONS, resource_named

logger = logging.getLogger(__name__)

# Resources Trackstar refreshes only twice a day (API.md §5).
SLOW_RESOURCES = frozenset({"warehouses", "shipping_methods"})


# --- Scheduling ------------------------------------------------------------------------------


def sync_resources_for(connection: Connection) -> list[str]:
    """The resources we sync that this connection's integration offers. No actions known
    (e.g. an imported token) means try them all: a 501 marks the missing ones."""
    actions = set(connection.available_actions or [])
    if not actions:
        return list(RECORD_MODELS)
    return [r for r in RECORD_MODELS if RESOURCE_ACTIONS[r] in actions]


def sync_interval_seconds(resource: str) -> int:
    if resource in SLOW_RESOURCES:
        return settings.SYNC_SLOW_INTERVAL_SECONDS
    return settings.SYNC_INTERVAL_SECONDS


def slot_phase(connection_id: int, resource: str, interval: int) -> float:
    """A fixed offset within the interval, from a hash: 10,000 connections spread evenly
    over it and stay spread, instead of all firing at the same minute."""
    digest = hashlib.sha256(f"{connection_id}:{resource}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (interval * 1000) / 1000


def next_slot(*, connection_id: int, resource: str, interval: int, after: datetime) -> datetime:
    """This pair's next slot at least half an interval after `after` (so at most 1.5)."""
    phase = slot_phase(connection_id, resource, interval)
    earliest = after.timestamp() + interval / 2
    slot = phase + math.ceil((earliest - phase) / interval) * interval
    return datetime.fromtimestamp(slot, tz=after.tzinfo or timezone.get_current_timezone())


def _ensure_resource_syncs(
    connection: Connection, *, now: datetime | None = None
) -> list[ResourceSync]:
    wanted = sync_resources_for(connection)
    now = now or timezone.now()
    ResourceSync.objects.bulk_create(
        [
            ResourceSync(
                connection=connection,
                resource=resource,
                interval_seconds=sync_interval_seconds(resource),
                next_sync_at=now,
            )
            for resource in wanted
        ],
        ignore_conflicts=True,
    )
    # Resources the integration no longer offers (after a reconnect) stop syncing.
    ResourceSync.objects.filter(connection=connection).exclude(resource__in=wanted).update(
        enabled=False, updated_at=now
    )
    ResourceSync.objects.filter(connection=connection, resource__in=wanted, enabled=False).update(
        enabled=True, updated_at=now
    )
    return list(ResourceSync.objects.filter(connection=connection, resource__in=wanted))


def _ensure_resource_syncs_spread(now: datetime, limit: int) -> int:
    """Sync state for active connections that have none (a big import, or connections made
    before sync existed): `limit` connections a tick, in a few statements whatever their
    number. Each resource's first slot is its phase in the interval, so 10,000 imported
    connections are read over the interval rather than all in the next minute, and
    sync_history_completed keeps to that slot."""
    fresh = list(
        Connection.objects.filter(
            status=Connection.Status.ACTIVE, resource_syncs__isnull=True
        ).only("pk", "available_actions")[:limit]
    )
    interval = settings.SYNC_INTERVAL_SECONDS
    ResourceSync.objects.bulk_create(
        [
            ResourceSync(
                connection_id=connection.pk,
                resource=resource,
                interval_seconds=sync_interval_seconds(resource),
                next_sync_at=now + timedelta(seconds=slot_phase(connection.pk, resource, interval)),
            )
            for connection in fresh
            for resource in sync_resources_for(connection)
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    return len(fresh)


def _first_slot_ahead(resource_sync: ResourceSync, now: datetime) -> bool:
    """Never read, and its first slot (a big import's, spread over the interval) is still
    ahead: the dispatcher reads it then."""
    return (
        resource_sync.last_success_at is None
        and resource_sync.current_run_id is None
        and resource_sync.next_sync_at is not None
        and resource_sync.next_sync_at > now
    )


def sync_schedule_initial(*, connection: Connection) -> list[str]:
    """After a connection becomes active. A resource Trackstar has finished its initial
    sync of (a reconnect keeps Trackstar's history) continues from its mark now; the others
    wait for connection.historical-sync-completed, since until then their reads return
    nothing (API.md §10). The health check asked for here reads Trackstar's
    historical_sync_completed map, in case the webhooks came first or never come."""
    from connections.health.services import health_check_enqueue
    from connections.models import WebhookEvent

    # connection.historical-sync-completed events that arrived before the connection was
    # stored (or while it waited for its token) were set aside: they count now.
    done_before = {
        resource_named(payload["data"].get("resource"))
        for payload in WebhookEvent.objects.filter(
            trackstar_connection_id=connection.trackstar_connection_id,
            event_type="connection.historical-sync-completed",
        ).values_list("payload", flat=True)
        if isinstance(payload, dict) and isinstance(payload.get("data"), dict)
    }
    scheduled = []
    for resource_sync in _ensure_resource_syncs(connection):
        if not resource_sync.history_ready and resource_sync.resource in done_before:
            ResourceSync.objects.filter(pk=resource_sync.pk).update(
                history_ready=True, updated_at=timezone.now()
            )
            resource_sync.history_ready = True
        if not resource_sync.history_ready:
            continue
        kind = SyncRun.Kind.INCREMENTAL if resource_sync.high_water_mark else SyncRun.Kind.INITIAL
        sync_request(connection_id=connection.pk, resource=resource_sync.resource, kind=kind)
        scheduled.append(resource_sync.resource)
    health_check_enqueue(connection_id=connection.pk)
    return scheduled


def sync_history_completed(*, connection: Connection, resources: Iterable[str]) -> list[str]:
    """Trackstar finished its initial sync of these resources (the webhook, or the map on
    GET /connections/{id}): read them now. A resource read before (a reinstall that opened
    more history) continues incrementally: what Trackstar just ingested carries a new
    trackstar_updated_date, so no second full read is needed."""
    wanted = set(resources)
    newly = []
    now = timezone.now()
    for rs in _ensure_resource_syncs(connection, now=now):
        # A conditional UPDATE: the webhook and the health poll may say it at the same
        # moment, and only one of them may start the read.
        if rs.resource in wanted and ResourceSync.objects.filter(
            pk=rs.pk, history_ready=False
        ).update(history_ready=True, updated_at=now):
            newly.append(rs.resource)
            if _first_slot_ahead(rs, now):
                continue
            kind = SyncRun.Kind.WEBHOOK if rs.high_water_mark else SyncRun.Kind.INITIAL
            sync_request(connection_id=connection.pk, resource=rs.resource, kind=kind)
    return newly


def sync_force_requested(*, connection: Connection, resources: Iterable[str]) -> list[str]:
    """Trackstar accepted a force sync of these resources: read them when it says it is done
    (sync_force_completed), or after SYNC_FORCE_TIMEOUT_SECONDS (the dispatcher)."""
    wanted = list(resources)
    _ensure_resource_syncs(connection)
    ResourceSync.objects.filter(connection=connection, resource__in=wanted).update(
        force_sync_requested_at=timezone.now(), updated_at=timezone.now()
    )
    return wanted


def sync_force_completed(
    *, connection: Connection, resources: Iterable[str] | None = None
) -> list[str]:
    """connection.force-sync-completed: Trackstar's copy is fresh from the WMS; read what
    changed. `resources` None (the event did not say) means every one we asked for; a
    force sync started elsewhere (Trackstar's dashboard) reads the resources it names."""
    pending = ResourceSync.objects.filter(connection=connection, enabled=True)
    if resources is None:
        pending = pending.filter(force_sync_requested_at__isnull=False)
    else:
        pending = pending.filter(resource__in=list(resources))
    now = timezone.now()
    with transaction.atomic():
        rows = list(pending.select_for_update(of=("self",)).order_by("pk"))
        for rs in rows:
            rs.force_sync_requested_at = None
        _requests_record(
            rows, kind=SyncRun.Kind.FORCE, now=now, also_save=("force_sync_requested_at",)
        )
    return [rs.resource for rs in rows]


def sync_request_now(
    *,
    connection: Connection,
    resources: Iterable[str] | None = None,
    full: bool = False,
    kind: str = SyncRun.Kind.MANUAL,
) -> list[str]:
    """Staff's "resync now": request a run of these resources (default: all it offers),
    sent after the caller's transaction commits. `full` ignores the high-water mark. A
    request already queued or a run in progress is joined, not repeated (sync_request)."""
    wanted = set(resources) if resources is not None else None
    requested = [
        rs for rs in _ensure_resource_syncs(connection) if wanted is None or rs.resource in wanted
    ]
    with transaction.atomic():
        rows = list(
            ResourceSync.objects.select_for_update(of=("self",))
            .filter(pk__in=[rs.pk for rs in requested])
            .order_by("pk")
        )
        _requests_record(rows, kind=kind, full=full, now=timezone.now())
    return [rs.resource for rs in requested]


# --- Requests: a run asked for is a row first, a message second -----------------------------
#
# Like the exchange outbox: the request is written in the asker's transaction and its
# message sent once that commits, so a broker that is down, or that loses its data, costs
# at most a sweep (sync_requests_resend). The run that starts takes the request; requests
# and run starts lock the ResourceSync row, so which came first is the order of the lock,
# not of two machines' clocks: a request made while a run runs gets one run after it
# (that run sends it when it ends), never none and never two.

# The kind a run serves when requests of several kinds join: staff's re-read over a refresh
# from the WMS, over a backfill's, a webhook's, a first read's and the schedule's.
_KIND_RANK: dict[str, int] = {
    SyncRun.Kind.INCREMENTAL: 0,
    SyncRun.Kind.INITIAL: 1,
    SyncRun.Kind.WEBHOOK: 2,
    SyncRun.Kind.BACKFILL: 3,
    SyncRun.Kind.FORCE: 4,
    SyncRun.Kind.MANUAL: 5,
}
SYNC_REQUEST_FIELDS = (
    "requested_at",
    "requested_kind",
    "requested_full",
    "request_sends",
    "request_resend_at",
)
# (resource sync id, connection id, resource, kind, full): one message to send.
_Send = tuple[int, int, str, str, bool]


def stronger_kind(a: str, b: str) -> str:
    return a if _KIND_RANK.get(a, -1) >= _KIND_RANK.get(b, -1) else b


def _resend_after(sends: int) -> timedelta:
    """How long a request's message may take before it is presumed lost: doubling with each
    copy sent, up to 32 times SYNC_REQUEST_RESEND_SECONDS."""
    return timedelta(seconds=settings.SYNC_REQUEST_RESEND_SECONDS * 2 ** min(sends - 1, 5))


def _leased(resource_sync: ResourceSync, now: datetime) -> bool:
    expires = resource_sync.lease_expires_at
    return resource_sync.lease_token is not None and expires is not None and expires > now


def _request_join(
    resource_sync: ResourceSync, kind: str, full: bool, now: datetime
) -> _Send | None:
    """Record a request on this (locked) row, joined to the one already there. Returns the
    message to send, if one goes out now: not while a run holds the lease (the run sends
    it when it ends), nor while the message of the request it joined is on its way."""
    pending = resource_sync.requested_at is not None
    if pending:
        resource_sync.requested_kind = stronger_kind(kind, resource_sync.requested_kind)
        resource_sync.requested_full = resource_sync.requested_full or full
    else:
        resource_sync.requested_at = now
        resource_sync.requested_kind = kind
        resource_sync.requested_full = full
        resource_sync.request_sends = 0
        # For the sweep, should the run holding the lease die before it sends this.
        resource_sync.request_resend_at = now
    on_its_way = (
        pending
        and resource_sync.request_sends > 0
        and resource_sync.request_resend_at is not None
        and resource_sync.request_resend_at > now
    )
    if _leased(resource_sync, now) or on_its_way:
        return None
    return _request_sent(resource_sync, now)


def _request_sent(resource_sync: ResourceSync, now: datetime) -> _Send:
    """Count a message of the request as sent; its resend time moves on."""
    resource_sync.request_sends = min(resource_sync.request_sends + 1, 1000)
    resource_sync.request_resend_at = now + _resend_after(resource_sync.request_sends)
    kind = resource_sync.requested_kind
    if kind == SyncRun.Kind.INCREMENTAL and resource_sync.high_water_mark is None:
        kind = SyncRun.Kind.INITIAL  # what the run will be
    return (
        resource_sync.pk,
        resource_sync.connection_id,
        resource_sync.resource,
        kind,
        resource_sync.requested_full,
    )


def sync_request_taken(resource_sync: ResourceSync) -> None:
    """A run started (or there is nothing to run): the request is served."""
    resource_sync.requested_at = None
    resource_sync.requested_kind = ""
    resource_sync.requested_full = False
    resource_sync.request_sends = 0
    resource_sync.request_resend_at = None


def _requests_record(
    rows: list[ResourceSync],
    *,
    kind: str,
    full: bool = False,
    now: datetime,
    also_save: Sequence[str] = (),
) -> list[_Send]:
    """Record a request on each of these rows (locked by the caller's transaction), in one
    statement per 1000, and send the messages that must go out once it commits."""
    sends = []
    for resource_sync in rows:
        if (send := _request_join(resource_sync, kind, full, now)) is not None:
            sends.append(send)
        resource_sync.updated_at = now
    if rows:
        ResourceSync.objects.bulk_update(
            rows, [*SYNC_REQUEST_FIELDS, *also_save, "updated_at"], batch_size=1000
        )
    _requests_send_on_commit(sends)
    return sends


def _requests_send_on_commit(sends: list[_Send]) -> None:
    if sends:
        transaction.on_commit(functools.partial(_requests_send, sends), robust=True)


def _requests_send(sends: list[_Send]) -> int:
    """Publish the messages; a broker that refuses one is down: the rest wait for the
    dispatcher's next tick with it (their requests are rows). Returns how many went out."""
    for i, (_, connection_id, resource, kind, full) in enumerate(sends):
        if sync_send(connection_id, resource, kind, full) is False:
            ResourceSync.objects.filter(pk__in=[send[0] for send in sends[i:]]).update(
                request_resend_at=timezone.now()
            )
            return i
    return len(sends)


def sync_request(*, connection_id: int, resource: str, kind: str, full: bool = False) -> bool:
    """Request a run of one resource: recorded on its row in the caller's transaction, the
    message sent once that commits. A request already queued, or a run in progress, is
    joined rather than repeated. Returns whether a message goes out."""
    with transaction.atomic():
        ResourceSync.objects.get_or_create(
            connection_id=connection_id,
            resource=resource,
            defaults={
                "interval_seconds": sync_interval_seconds(resource),
                "next_sync_at": timezone.now(),
            },
        )
        rows = list(
            ResourceSync.objects.select_for_update(of=("self",)).filter(
                connection_id=connection_id, resource=resource
            )
        )
        return bool(_requests_record(rows, kind=kind, full=full, now=timezone.now()))


def sync_request_follow_up(resource_sync: ResourceSync, run: SyncRun, *, succeeded: bool) -> None:
    """The run ended (the caller holds the row's lock and saves it): a request made while it
    ran gets its run now. Not what this run read, if it succeeded: a full read covered the
    requests' `full`, and a first read left a mark, so what changed since it started is an
    incremental read (trackstar_updated_date moves with every change, API.md §10)."""
    if resource_sync.requested_at is None:
        return
    if succeeded:
        if run.since is None:
            resource_sync.requested_full = False
        if resource_sync.requested_kind == SyncRun.Kind.INITIAL:
            resource_sync.requested_kind = SyncRun.Kind.INCREMENTAL
    _requests_send_on_commit([_request_sent(resource_sync, timezone.now())])


def sync_request_follow_up_by_id(resource_sync_id: int, run: SyncRun) -> None:
    """sync_request_follow_up after a run that did not succeed, its row locked by the caller."""
    resource_sync = ResourceSync.objects.filter(
        pk=resource_sync_id, requested_at__isnull=False
    ).first()
    if resource_sync is not None:
        sync_request_follow_up(resource_sync, run, succeeded=False)
        resource_sync.save(update_fields=[*SYNC_REQUEST_FIELDS, "updated_at"])


def sync_send(connection_id: int, resource: str, kind: str, full: bool = False) -> bool:
    """Publish a request's message (or a resume's). The worker runs it only if the request
    is still waiting or a run is there to resume, so a copy of it does nothing."""
    # Through the breaker: a "Resync now" in admin must not hang on a hung Redis.
    if not enqueue.resource_sync(connection_id, resource, kind, full):
        # Leave the row due and the request unsent: the dispatcher sends it once the broker
        # is back.
        now = timezone.now()
        ResourceSync.objects.filter(connection_id=connection_id, resource=resource).update(
            next_sync_at=now, request_resend_at=now
        )
        logger.warning(
            "Broker unavailable; %s sync left for the dispatcher",
            resource,
            extra={"connection_id": connection_id},
        )
        return False
    return True


def sync_dispatch_due(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Beat, every minute: request the syncs that are due, oldest first, at most `limit`, and
    send again the requests whose message seems lost (sync_requests_resend).

    A bounded number of statements whatever the number of connections (tests state it):
    each step is one indexed query or one bulk statement over at most `limit` rows. A row
    already queued (a request waiting) or running (a live lease) is not due: its request
    or its run sends what comes next. Concurrent dispatchers skip each other's locked rows."""
    now = now or timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    _ensure_resource_syncs_spread(now, limit)

    if trackstar_key_rejected():
        # Trackstar refuses our API key: every read would be a 401. Syncs resume when the
        # health poll finds the key accepted again.
        return 0
    _force_syncs_timed_out(now, limit)
    # A resource waits for Trackstar's initial sync; if neither the webhook nor the map on
    # GET /connections/{id} ever says so, it is read anyway after SYNC_HISTORY_WAIT_SECONDS
    # (never skip data).
    history_known = Q(history_ready=True) | Q(
        created_at__lt=now - timedelta(seconds=settings.SYNC_HISTORY_WAIT_SECONDS)
    )
    # Pushed ahead while it waits and runs (the lease, then the schedule move it on), so a
    # request taken by a run that found nothing to do is not requested again next minute.
    grace = timedelta(seconds=max(2 * settings.SYNC_LEASE_SECONDS, 300))
    with transaction.atomic():
        due = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                history_known,
                Q(lease_token__isnull=True) | Q(lease_expires_at__lte=now),
                enabled=True,
                unsupported=False,
                paused=False,
                permission_error="",
                next_sync_at__lte=now,
                requested_at__isnull=True,
                connection__status=Connection.Status.ACTIVE,
                connection__sync_paused=False,
            )
            .order_by("next_sync_at")[:limit]
        )
        for resource_sync in due:
            resource_sync.next_sync_at = now + grace
        _requests_record(due, kind=SyncRun.Kind.INCREMENTAL, now=now, also_save=("next_sync_at",))
    resent = sync_requests_resend(now=now, limit=limit)
    if due or resent:
        logger.info("Dispatched %d syncs; sent %d requests again", len(due), resent)
    return len(due)


def sync_requests_resend(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Send again the requests no run has taken by their resend time: their message was lost
    with the broker's data, or waits behind a long queue (that copy will then find its
    request taken and do nothing). Not while a run holds the lease: it sends them when it
    ends. Returns how many were sent."""
    now = now or timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    with transaction.atomic():
        late = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                Q(lease_token__isnull=True) | Q(lease_expires_at__lte=now),
                requested_at__isnull=False,
                request_resend_at__lte=now,
                connection__status=Connection.Status.ACTIVE,
            )
            .order_by("request_resend_at")[:limit]
        )
        sends = [_request_sent(resource_sync, now) for resource_sync in late]
        for resource_sync in late:
            resource_sync.updated_at = now
        if late:
            ResourceSync.objects.bulk_update(
                late, ["request_sends", "request_resend_at", "updated_at"], batch_size=1000
            )
        _requests_send_on_commit(sends)
    if late:
        logger.warning("Sent %d sync requests again: their runs never started", len(late))
    return len(late)


def _force_syncs_timed_out(now: datetime, limit: int) -> None:
    """Force syncs whose completion event never came: read what Trackstar has now."""
    cutoff = now - timedelta(seconds=settings.SYNC_FORCE_TIMEOUT_SECONDS)
    with transaction.atomic():
        late = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(force_sync_requested_at__lt=cutoff)
            .order_by("force_sync_requested_at")[:limit]
        )
        for resource_sync in late:
            resource_sync.force_sync_requested_at = None
        _requests_record(
            late, kind=SyncRun.Kind.FORCE, now=now, also_save=("force_sync_requested_at",)
        )


# --- Runs whose worker died ------------------------------------------------------------------


def sync_resume_orphaned(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Beat, every SYNC_RESUME_INTERVAL_SECONDS: enqueue the runs whose worker died.

    A live run renews its lease on every page and while it waits, so a lease that lapsed
    means nobody holds the run: another worker resumes it from its cursor within a lease
    and an interval of the crash, rather than at the dispatcher's next minute. (A worker
    process killed alone needs none of this: Celery gives its message back at once, and
    the task retries when the lease lapses.) Re-enqueued rows are pushed a grace period
    ahead, as the dispatcher does, so neither enqueues them again while they wait."""
    if trackstar_key_rejected():
        return 0  # the dispatcher resumes every sync once the key is accepted again
    now = now or timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    grace = timedelta(seconds=max(2 * settings.SYNC_LEASE_SECONDS, 300))
    with transaction.atomic():
        orphaned = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                # next_sync_at moves with every renewal: the index finds the few that lapsed.
                next_sync_at__lte=now,
                lease_token__isnull=False,
                lease_expires_at__lte=now,
                current_run__status=SyncRun.Status.RUNNING,
                enabled=True,
                paused=False,
                connection__status=Connection.Status.ACTIVE,
                connection__sync_paused=False,
            )
            .order_by("next_sync_at")
            .values_list("pk", "connection_id", "resource", "current_run__kind")[:limit]
        )
        ResourceSync.objects.filter(pk__in=[row[0] for row in orphaned]).update(
            next_sync_at=now + grace, updated_at=now
        )
    for _, connection_id, resource, kind in orphaned:
        # The run's own kind: the resumed task passes the same checks the first one did.
        sync_send(connection_id, resource, kind)
    if orphaned:
        logger.info("Resuming %d syncs whose worker stopped renewing its lease", len(orphaned))
    return len(orphaned)
