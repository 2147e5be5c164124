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
from kombu.exceptions import OperationalError as BrokerError

from ..clients import trackstar_client
from ..integrations import integration_display_name
from ..models import Connection, ResourceSync
from ..trackstar import (
    TrackstarAuthError,
    TrackstarError,
    TrackstarNotFound,
    TrackstarRateLimited,
    TrackstarUnavailable,
)
from ..trackstar.health import ConnectionHealth, parse_health
from .account import account_key_accepted, account_key_rejected, trackstar_key_rejected
from .connections import (
    connection_mark_disconnected,
    connection_mark_needs_reconnect,
    connection_mark_repaired,
)
from .sync import next_slot, sync_history_completed, sync_resources_for

logger = logging.getLogger(__name__)

DELETED_REASON = "Trackstar no longer has this connection: it was deleted there."


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
    except TrackstarNotFound:
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


def connection_health_refresh(*, connection_id: int) -> str:
    """Re-read the connection at Trackstar and set its state from what Trackstar says.
    Raises TrackstarUnavailable / TrackstarRateLimited for the task to retry."""
    connection = Connection.objects.select_related("customer").filter(pk=connection_id).first()
    if connection is None or connection.status == Connection.Status.DISCONNECTED:
        return "skipped"
    try:
        details = trackstar_client().get_connection(connection.trackstar_connection_id)
    except TrackstarAuthError as e:
        account_key_rejected(error=e.message)
        _check_again(connection, soon=True)
        return "key_rejected"
    except TrackstarNotFound:
        connection_mark_disconnected(connection=connection, actor=None, reason=DELETED_REASON)
        return "deleted"
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
        return "failed"
    account_key_accepted()
    health = parse_health(details, synced=sync_resources_for(connection))
    connection_health_apply(connection=connection, health=health)
    return "checked"


def connection_health_apply(*, connection: Connection, health: ConnectionHealth) -> None:
    now = timezone.now()
    name = integration_display_name(connection.integration_name)
    with transaction.atomic():
        blocking = health.blocking
        if blocking is not None:
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
        connection.health_checked_at = now
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


def _apply_permissions(connection: Connection, missing: dict[str, str], now: datetime) -> None:
    for resource_sync in ResourceSync.objects.filter(connection=connection):
        wanted = missing.get(resource_sync.resource, "")
        if wanted == resource_sync.permission_error:
            continue
        fields: dict = {"permission_error": wanted, "updated_at": now}
        if not wanted:
            # Access granted (or a 403 that Trackstar does not list): read it again soon.
            fields["next_sync_at"] = now
        ResourceSync.objects.filter(pk=resource_sync.pk).update(**fields)


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
    from ..tasks import connection_health_refresh as task

    try:
        task.delay(connection_id)
    except BrokerError:
        # The poll picks it up on its next tick.
        Connection.objects.filter(pk=connection_id).update(health_next_check_at=timezone.now())
        return False
    return True


# --- The poll ---------------------------------------------------------------------------------


def health_poll(*, now: datetime | None = None) -> int:
    """Beat, every minute. While Trackstar refuses our key, only check the key. Otherwise
    enqueue the connections whose check is due, at most HEALTH_CHECK_BATCH."""
    from .backfills import backfills_poll

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
