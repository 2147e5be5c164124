"""Connection health the way Trackstar models it (API.md §10).

Reads never reach the WMS: when a customer's WMS credentials break, Trackstar keeps
answering 200 from its copy and reports the breakage in `errors[]` on
`GET /connections/{id}` and in `connection-error.*` webhooks. So health comes from there:

- invalid credentials (blocking): needs_reconnect, syncs stop, one reconnect email;
- a missing permission (non-blocking): only that resource waits, no email;
- an error we cannot classify: staff see it, nobody is emailed on a guess.

A 401 means our API key or the access token is wrong, and the key-only
`GET /connections/{id}` tells which (`probe_unauthorized`). The health poll re-reads every
connection on a schedule, since webhooks can be missed.
"""

from __future__ import annotations

import enum
import itertools
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record
from connections import enqueue
from connections.clients import trackstar_client
from connections.health.account import (
    account_key_accepted,
    account_key_rejected,
    trackstar_key_rejected,
)
from connections.integrations import integration_display_name
from connections.models import Connection, ResourceSync
from connections.services import (
    connection_mark_disconnected,
    connection_mark_needs_reconnect,
    connection_mark_repaired,
)
from connections.sync.schedule import next_slot, sync_history_completed
from connections.trackstar import (
    TrackstarAuthError,
    TrackstarError,
    TrackstarNotFound,
    TrackstarRateLimited,
    TrackstarUnavailable,
)
from connections.trackstar.health import ConnectionHealth, parse_health

logger = logging.getLogger(__name__)

DELETED_REASON = "Trackstar no longer has this connection: it was deleted there."


class HealthRefresh(enum.StrEnum):
    """How one refresh of a connection's health ended."""

    CHECKED = "checked"
    SUPERSEDED = "superseded"  # a check that started later was applied first
    SKIPPED = "skipped"  # gone, or disconnected
    KEY_REJECTED = "key_rejected"  # our organisation API key
    DELETED = "deleted"  # at Trackstar
    FAILED = "failed"  # Trackstar refused the check; it is asked again soon
    UNREACHABLE = "unreachable"  # still down after the task's retries


class Probe(enum.Enum):
    KEY_REJECTED = "key_rejected"  # our organisation API key
    DELETED = "deleted"  # the connection is gone at Trackstar
    TOKEN_REJECTED = "token_rejected"  # only this connection's token
    UNREACHABLE = "unreachable"  # the check itself failed; decide nothing


def probe_unauthorized(*, connection: Connection, error: TrackstarError) -> Probe:
    """A call with this connection's token got 401. Ask with the key alone which of our
    credentials is wrong, and act on it; the customer is told only when it is theirs."""
    try:
        trackstar_client().get_connection(connection.trackstar_connection_id)
    except TrackstarAuthError as e:
        account_key_rejected(error=e.message)
        return Probe.KEY_REJECTED
    except TrackstarNotFound as e:
        # The token was refused, and Trackstar's own 404 names this connection.
        if e.object_id != connection.trackstar_connection_id:
            logger.warning("A 404 that does not name the connection; deciding nothing")
            return Probe.UNREACHABLE
        connection_mark_disconnected(connection=connection, actor=None, reason=DELETED_REASON)
        return Probe.DELETED
    except TrackstarError:
        logger.warning("Could not check a connection after a 401", exc_info=True)
        return Probe.UNREACHABLE
    account_key_accepted()
    connection_mark_needs_reconnect(
        connection_id=connection.pk,
        cause=Connection.ReconnectCause.TOKEN_REJECTED,
        reason=f"Trackstar no longer accepts this connection's access token ({error.message}). "
        "Reconnect to resume syncing.",
    )
    return Probe.TOKEN_REJECTED


# --- Refreshing one connection ---------------------------------------------------------------


def connection_health_refresh(*, connection_id: int) -> HealthRefresh:
    """Re-read the connection at Trackstar and set its state from what Trackstar says.
    Raises TrackstarUnavailable / TrackstarRateLimited for the task to retry."""
    connection = Connection.objects.select_related("customer").filter(pk=connection_id).first()
    if connection is None or connection.status == Connection.Status.DISCONNECTED:
        return HealthRefresh.SKIPPED
    started = timezone.now()
    try:
        details = trackstar_client().get_connection(connection.trackstar_connection_id)
    except TrackstarAuthError as e:
        account_key_rejected(error=e.message)
        _check_again(connection, soon=True)
        return HealthRefresh.KEY_REJECTED
    except TrackstarNotFound as e:
        if _deleted_at_trackstar(connection, e):
            connection_mark_disconnected(connection=connection, actor=None, reason=DELETED_REASON)
            return HealthRefresh.DELETED
        _check_again(connection, soon=True)
        return HealthRefresh.FAILED
    except (TrackstarUnavailable, TrackstarRateLimited):
        _check_again(connection, soon=True)
        raise
    except TrackstarError:
        logger.warning(
            "Trackstar refused a health check",
            exc_info=True,
            extra={"connection_id": connection.trackstar_connection_id},
        )
        _check_again(connection, soon=True)
        return HealthRefresh.FAILED
    account_key_accepted()
    health = parse_health(details)
    applied = connection_health_apply(connection=connection, health=health, checked_at=started)
    return HealthRefresh.CHECKED if applied else HealthRefresh.SUPERSEDED


def _deleted_at_trackstar(connection: Connection, error: TrackstarNotFound) -> bool:
    """Disconnecting erases the token and cannot be undone, so a 404 alone (a proxy, a
    wrong base URL) is not enough: Trackstar's 404 must name the connection, and its token
    must be refused too."""
    return error.object_id == connection.trackstar_connection_id and token_refused(connection)


def token_refused(connection: Connection) -> bool:
    """Does Trackstar refuse this connection's token (401 on the cheapest read)? False when
    it works or when Trackstar cannot say (an outage decides nothing)."""
    if not connection.access_token:
        return True
    try:
        pages = trackstar_client().iter_pages(
            "warehouses", access_token=connection.access_token, limit=1
        )
        next(pages, None)
        pages.close()
    except TrackstarAuthError:
        return True
    except TrackstarError:
        return False
    return False


def connection_health_apply(
    *, connection: Connection, health: ConnectionHealth, checked_at: datetime | None = None
) -> bool:
    """Set the connection's state from what Trackstar said at `checked_at`. A check that
    started before the last applied one is dropped (a webhook and the poll crossing), so an
    older answer never undoes a newer one. Returns whether it was applied."""
    now = timezone.now()
    checked_at = checked_at or now
    name = integration_display_name(connection.integration_name)
    with transaction.atomic():
        locked = Connection.objects.select_for_update(of=("self",)).get(pk=connection.pk)
        if locked.health_checked_at is not None and locked.health_checked_at > checked_at:
            return False
        if health.blocking is not None:
            connection_mark_needs_reconnect(
                connection_id=connection.pk,
                cause=Connection.ReconnectCause.INVALID_CREDENTIALS,
                reason=f"{name} no longer accepts the saved credentials. "
                "Reconnect to resume syncing.",
            )
        else:
            connection_mark_repaired(connection_id=connection.pk)
        _apply_permissions(connection, health.missing_permissions, now)
        if health.history_completed:
            sync_history_completed(
                connection=connection,
                resources=[r for r, done in health.history_completed.items() if done],
            )
        connection.refresh_from_db()
        connection.trackstar_errors = [
            {"kind": e.kind, "message": e.message, "resources": sorted(e.resources)}
            for e in health.errors
        ]
        connection.health_checked_at = checked_at
        troubled = bool(health.errors) or connection.status == Connection.Status.NEEDS_RECONNECT
        connection.health_next_check_at = _next_check(connection, now, troubled=troubled)
        connection.save(
            update_fields=[
                "trackstar_errors",
                "health_checked_at",
                "health_next_check_at",
                "updated_at",
            ]
        )
    for message in health.unclassified:
        logger.warning(
            "Trackstar reports an error we cannot classify: %s",
            message,
            extra={"connection_id": connection.trackstar_connection_id},
        )
    return True


def _apply_permissions(connection: Connection, missing: dict[str, str], now: datetime) -> None:
    """Trackstar's missing permissions onto the resources. A mark that came from a 403 on a
    read, which errors[] does not list (an endpoint disabled for the org, or Trackstar not
    caught up yet), is lifted only after HEALTH_CHECK_INTERVAL_SECONDS, so a resource that
    keeps answering 403 is tried hourly, not every minute."""
    retry_reads_before = now - timedelta(seconds=settings.HEALTH_CHECK_INTERVAL_SECONDS)
    for resource_sync in ResourceSync.objects.filter(connection=connection):
        wanted = missing.get(resource_sync.resource, "")
        if wanted:
            if not resource_sync.permission_error:
                _audit_permission(connection, resource_sync.resource, missing=wanted)
            if (wanted, resource_sync.permission_source) != (
                resource_sync.permission_error,
                ResourceSync.PermissionSource.TRACKSTAR,
            ):
                ResourceSync.objects.filter(pk=resource_sync.pk).update(
                    permission_error=wanted,
                    permission_source=ResourceSync.PermissionSource.TRACKSTAR,
                    permission_error_at=resource_sync.permission_error_at or now,
                    updated_at=now,
                )
            continue
        if not resource_sync.permission_error:
            continue
        from_read = resource_sync.permission_source == ResourceSync.PermissionSource.READ
        if from_read and (resource_sync.permission_error_at or now) > retry_reads_before:
            continue
        # Access granted: read it again at the next tick.
        _audit_permission(connection, resource_sync.resource, missing="")
        ResourceSync.objects.filter(pk=resource_sync.pk).update(
            permission_error="",
            permission_source="",
            permission_error_at=None,
            next_sync_at=now,
            updated_at=now,
        )


def _audit_permission(connection: Connection, resource: str, *, missing: str) -> None:
    """A resource losing its permission, or getting it back: Trackstar's word, audited."""
    if missing:
        audit_record(
            actor=None,
            action="connection.permission_missing",
            connection=connection,
            resource=resource,
            reason=missing,
        )
    else:
        audit_record(
            actor=None,
            action="connection.permission_granted",
            connection=connection,
            resource=resource,
        )


def _next_check(connection: Connection, now: datetime, *, troubled: bool) -> datetime:
    if troubled:
        return now + timedelta(seconds=settings.HEALTH_CHECK_ERROR_INTERVAL_SECONDS)
    # Staggered over the hour by a hash of the connection, like the sync schedule.
    return next_slot(
        connection_id=connection.pk,
        resource="health",
        interval=settings.HEALTH_CHECK_INTERVAL_SECONDS,
        after=now,
    )


def _check_again(connection: Connection, *, soon: bool) -> None:
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        health_next_check_at=_next_check(connection, now, troubled=soon), updated_at=now
    )


def health_check_enqueue(*, connection_id: int) -> bool:
    """Check this connection's health now (a webhook said something changed)."""
    if not enqueue.health_check(connection_id):
        # The poll picks it up on its next tick.
        Connection.objects.filter(pk=connection_id).update(health_next_check_at=timezone.now())
        return False
    return True


# --- The poll ---------------------------------------------------------------------------------


def health_poll(*, now: datetime | None = None) -> int:
    """Beat, every minute. While Trackstar refuses our key, only check the key. Otherwise
    enqueue the connections whose check is due, at most HEALTH_CHECK_BATCH."""
    from connections.sync.backfills import backfills_poll

    now = now or timezone.now()
    if trackstar_key_rejected():
        _check_key()
        return 0
    grace = timedelta(seconds=5 * 60)
    with transaction.atomic():
        due = list(
            Connection.objects.select_for_update(skip_locked=True)
            .filter(status__in=[Connection.Status.ACTIVE, Connection.Status.NEEDS_RECONNECT])
            .exclude(access_token="")
            .filter(Q(health_next_check_at__lte=now) | Q(health_next_check_at__isnull=True))
            .order_by(F("health_next_check_at").asc(nulls_first=True))
            .values_list("pk", flat=True)[: settings.HEALTH_CHECK_BATCH]
        )
        Connection.objects.filter(pk__in=due).update(health_next_check_at=now + grace)
    for connection_id in due:
        health_check_enqueue(connection_id=connection_id)
    backfills_poll(now=now)
    return len(due)


def _check_key() -> None:
    """One key-only call: the first page of GET /connections."""
    try:
        list(itertools.islice(trackstar_client().list_connections(), 1))
    except TrackstarAuthError as e:
        account_key_rejected(error=e.message)
        return
    except TrackstarError:
        logger.warning("Could not check the Trackstar API key", exc_info=True)
        return
    account_key_accepted()
