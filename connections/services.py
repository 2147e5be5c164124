import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import Actor, ActorKind, audit_record, user_or_none
from connections.clients import trackstar_client
from connections.integrations import integration_display_name
from connections.models import Connection, MagicLink, ResourceSync
from connections.trackstar import (
    RESOURCE_ACTIONS,
    TrackstarAuthError,
    TrackstarError,
    TrackstarNotFound,
)
from customers.models import Customer
from customers.permissions import PortalAction, membership_can

logger = logging.getLogger(__name__)


PORTAL_REFUSALS = {
    PortalAction.DISCONNECT: "Only an owner of this account can disconnect a WMS.",
    PortalAction.RENAME: "Only an owner of this account can rename its connections.",
}


def connection_portal_check(*, connection: Connection, user: Actor, action: PortalAction) -> None:
    """May this portal user rename or disconnect this connection of their customer? As their
    role there allows (customers/permissions.py); PermissionDenied, with the words the 403
    page shows, otherwise. Staff act through admin, by their Django permissions. Connecting
    and reconnecting are the Link service's (connections/link/services.py)."""
    if user is None or not membership_can(user=user, customer=connection.customer, action=action):
        raise PermissionDenied(PORTAL_REFUSALS[action])


def connection_disconnect(*, connection: Connection, actor: Actor = None) -> Connection:
    """Delete the connection at Trackstar, then mark it disconnected and forget its token.
    A Trackstar outage leaves it untouched (the caller shows the error)."""
    if connection.status == Connection.Status.DISCONNECTED:
        return connection
    if connection.access_token:
        try:
            trackstar_client().delete_connection(access_token=connection.access_token)
        except TrackstarNotFound:
            pass  # already gone at Trackstar
        except TrackstarAuthError:
            # Its token is dead at Trackstar (nothing left to delete there), unless it is our
            # API key that Trackstar refuses: then the connection lives on, and so does ours.
            try:
                trackstar_client().get_connection(connection.trackstar_connection_id)
            except TrackstarAuthError as e:
                raise TrackstarError("Trackstar refuses our API key; nothing was changed.") from e
            except TrackstarNotFound:
                pass
    connection_mark_disconnected(connection=connection, actor=actor)
    logger.info(
        "Connection disconnected",
        extra={
            "customer_id": connection.customer_id,
            "connection_id": connection.trackstar_connection_id,
        },
    )
    return connection


def connection_mark_disconnected(*, connection: Connection, actor: Actor, reason: str = "") -> None:
    """Record that the connection is gone at Trackstar: forget its token, stop its syncs,
    revoke the links that would reconnect it, and say who or what did it."""
    with transaction.atomic():
        updated = (
            Connection.objects.filter(pk=connection.pk)
            .exclude(status=Connection.Status.DISCONNECTED)
            .update(
                status=Connection.Status.DISCONNECTED,
                access_token="",
                # Said on the connection when Trackstar (not a person) ended it.
                last_error=reason if reason and actor is None else "",
                disconnected_at=timezone.now(),
                updated_at=timezone.now(),
            )
        )
        if not updated:
            return
        connection.refresh_from_db()
        # A reconnect link for a connection that no longer exists can only fail.
        MagicLink.objects.filter(reinstall_connection=connection, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit_record(
            actor=actor,
            action="connection.disconnected",
            connection=connection,
            reason=reason or "disconnected by a person",
        )


def connection_import(*, customer: Customer, access_token: str, actor: Actor) -> Connection:
    """Adopt a connection made in Trackstar's dashboard from its access token. Trackstar
    checks the token first: PATCH /connections answers with the token's connection id,
    then GET /connections/{id} gives its details. Only a new connection gets our customer
    id recorded at Trackstar."""
    from connections.sync.schedule import sync_schedule_initial

    access_token = access_token.strip()
    if not access_token:
        raise ValidationError("Paste the connection's access token.")
    client = trackstar_client()
    try:
        updated = client.update_connection(access_token=access_token)
        connection_id = str(updated.get("id") or "")
        if not connection_id:
            raise ValidationError("Trackstar did not say which connection this token is for.")
        details = client.get_connection(connection_id)
    except TrackstarAuthError as e:
        raise ValidationError("Trackstar does not accept this access token.") from e
    except TrackstarError as e:
        raise ValidationError(f"Trackstar could not check the token: {e.message}") from e
    existing = Connection.objects.filter(trackstar_connection_id=connection_id).first()
    if existing is not None:
        raise ValidationError(
            f"This connection ({connection_id}) is already in Dockside, "
            f"for {existing.customer.name}."
        )
    try:
        client.update_connection(access_token=access_token, customer_id=customer.public_id)
    except TrackstarError as e:
        raise ValidationError(f"Trackstar could not update the connection: {e.message}") from e
    try:
        with transaction.atomic():
            connection = Connection.objects.create(
                customer=customer,
                trackstar_connection_id=connection_id,
                integration_name=details.get("integration_name") or "unknown",
                label=connection_default_label(
                    customer=customer,
                    integration_name=details.get("integration_name") or "unknown",
                ),
                integration_type=details.get("integration_type") or "wms",
                available_actions=list(details.get("available_actions") or []),
                access_token=access_token,
                status=Connection.Status.ACTIVE,
                source=Connection.Source.IMPORT,
                created_by=user_or_none(actor),
                connected_at=timezone.now(),
            )
            audit_record(actor=actor, action="connection.imported", connection=connection)
            transaction.on_commit(lambda: sync_schedule_initial(connection=connection), robust=True)
    except IntegrityError as e:  # imported twice at the same moment
        raise ValidationError(f"This connection ({connection_id}) is already in Dockside.") from e
    return connection


def connection_set_paused(*, connection: Connection, paused: bool, actor: Actor) -> Connection:
    with transaction.atomic():
        # Pausing a paused connection changes nothing, and says nothing in the audit log.
        changed = (
            Connection.objects.filter(pk=connection.pk)
            .exclude(sync_paused=paused)
            .update(sync_paused=paused, updated_at=timezone.now())
        )
        connection.sync_paused = paused
        if changed:
            audit_record(
                actor=actor,
                action="connection.sync_paused" if paused else "connection.sync_resumed",
                connection=connection,
            )
    return connection


def connection_mark_needs_reconnect(
    *, connection_id: int, reason: str, cause: str = Connection.ReconnectCause.INVALID_CREDENTIALS
) -> bool:
    """The customer must reconnect: Trackstar reports the WMS credentials invalid (a
    blocking error), or Trackstar refuses this connection's own token while it still has
    the connection. The portal shows Reconnect; the customer's contact gets one email with
    a reconnect link per incident. Returns whether the status changed."""
    from connections.link.magic_links import magic_link_issue

    with transaction.atomic():
        connection = (
            Connection.objects.select_for_update(of=("self",))
            .select_related("customer")
            .filter(pk=connection_id)
            .first()
        )
        if connection is None or connection.status == Connection.Status.DISCONNECTED:
            return False
        changed = connection.status != Connection.Status.NEEDS_RECONNECT
        connection.status = Connection.Status.NEEDS_RECONNECT
        if changed:
            # The first cause of an incident stands: a refused token is not cleared by
            # Trackstar's errors[] emptying later.
            connection.reconnect_cause = cause
        connection.last_error = reason
        fields = ["status", "reconnect_cause", "last_error", "updated_at"]
        email = connection.customer.contact_email
        # One email per incident; an error that flaps (repaired, broken again) within
        # RECONNECT_EMAIL_QUIET_SECONDS of the last email sends no second one.
        notified = connection.reconnect_notified_at
        quiet_since = timezone.now() - timedelta(seconds=settings.RECONNECT_EMAIL_QUIET_SECONDS)
        if email and (notified is None or (changed and notified < quiet_since)):
            magic_link_issue(
                customer=connection.customer,
                created_by=None,
                reinstall_connection=connection,
                email_to=email,
            )
            connection.reconnect_notified_at = timezone.now()
            fields.append("reconnect_notified_at")
        connection.save(update_fields=fields)
        if changed:
            audit_record(
                actor=None,
                action="connection.needs_reconnect",
                connection=connection,
                # A token that never reached us is our finding; the others, Trackstar's.
                by=ActorKind.SYSTEM
                if cause == Connection.ReconnectCause.TOKEN_MISSING
                else ActorKind.TRACKSTAR,
                cause=cause,
                reason=reason,
            )
    if changed:
        logger.warning(
            "Connection needs reconnect: %s",
            reason,
            extra={
                "customer_id": connection.customer.public_id,
                "connection_id": connection.trackstar_connection_id,
            },
        )
    return changed


def connection_mark_repaired(*, connection_id: int) -> bool:
    """Trackstar no longer reports invalid credentials (connection-error.deleted, or the
    health poll): active again (reconnect_notified_at stays, so a flapping error does not
    email on every flap; a reconnect by the customer clears it). Only an incident
    that Trackstar's errors[] opened closes this way: a refused token stays until the
    customer reconnects."""
    with transaction.atomic():
        repaired = (
            Connection.objects.filter(
                pk=connection_id,
                status=Connection.Status.NEEDS_RECONNECT,
                reconnect_cause=Connection.ReconnectCause.INVALID_CREDENTIALS,
            )
            .exclude(access_token="")
            .update(
                status=Connection.Status.ACTIVE,
                last_error="",
                reconnect_cause="",
                updated_at=timezone.now(),
            )
        )
        if repaired:
            audit_record(
                actor=None,
                action="connection.repaired",
                connection=Connection.objects.get(pk=connection_id),
            )
    return bool(repaired)


def _require_active(connection: Connection) -> None:
    if connection.status != Connection.Status.ACTIVE:
        raise ValidationError(
            f"{connection} is {connection.get_status_display().lower()}; "
            "only an active connection can sync."
        )


PROBE_WORDS = {
    "key_rejected": "Trackstar refuses our API key: every sync is paused until it works.",
    "deleted": "Trackstar no longer has this connection; it is now disconnected.",
    "token_rejected": "Trackstar refuses this connection's token; the customer was asked to "
    "reconnect.",
}


def connection_resync(
    *, connection: Connection, actor: Actor, resources: list[str] | None = None
) -> list[str]:
    """Staff's "resync now": ask Trackstar to pull from the WMS now (POST /connections/sync
    with functions_to_sync), then read what changed when connection.force-sync-completed
    arrives (or after SYNC_FORCE_TIMEOUT_SECONDS). Re-reading Trackstar's copy alone would
    show data up to an hour old (API.md §10)."""
    from connections.sync.schedule import sync_force_requested, sync_resources_for

    _require_active(connection)
    wanted = [r for r in sync_resources_for(connection) if resources is None or r in resources]
    if not wanted:
        raise ValidationError("This connection has none of those resources to sync.")
    # Recorded before Trackstar is asked: its completion event may come back before the
    # call returns. Taken back if Trackstar refuses.
    requested = sync_force_requested(connection=connection, resources=wanted)
    try:
        trackstar_client().force_sync(
            access_token=connection.access_token,
            functions=[RESOURCE_ACTIONS[r] for r in wanted],
        )
    except TrackstarError as e:
        ResourceSync.objects.filter(connection=connection, resource__in=wanted).update(
            force_sync_requested_at=None
        )
        if isinstance(e, TrackstarAuthError):
            # Our API key, this token, or a connection deleted at Trackstar: find out which,
            # as a read's 401 would (the banner, the reconnect email or the disconnect).
            from connections.health.services import probe_unauthorized

            probe = probe_unauthorized(connection=connection, error=e)
            raise ValidationError(PROBE_WORDS.get(probe.value, e.message)) from e
        raise ValidationError(f"Trackstar could not start a refresh: {e.message}") from e
    audit_record(
        actor=actor,
        action="connection.force_sync_requested",
        connection=connection,
        resources=requested,
    )
    return requested


def connection_reread(
    *, connection: Connection, actor: Actor, resources: list[str] | None = None
) -> list[str]:
    """Staff's "re-read everything": a full pass over Trackstar's copy of these resources
    (default: all it offers), to repair the local copy. Trackstar is not asked to refresh."""
    from connections.sync.schedule import sync_request_now

    _require_active(connection)
    with transaction.atomic():
        requested = sync_request_now(connection=connection, resources=resources, full=True)
        if not requested:
            raise ValidationError("This connection has none of those resources to sync.")
        audit_record(
            actor=actor,
            action="connection.reread_requested",
            connection=connection,
            resources=requested,
        )
    return requested


LABEL_MAX_LENGTH = 100


def connection_default_label(*, customer: Customer, integration_name: str) -> str:
    """ "ShipBob" for a customer's first ShipBob connection, then "ShipBob 2", "ShipBob 3"…
    (never one of the customer's labels already in use)."""
    name = integration_display_name(integration_name)
    same = Connection.objects.filter(customer=customer, integration_name=integration_name)
    taken = {label or name for label in same.values_list("label", flat=True)}
    n = len(taken) + 1 if taken else 1
    label = name if n == 1 else f"{name} {n}"
    while label in taken:
        n += 1
        label = f"{name} {n}"
    return label[:LABEL_MAX_LENGTH]


def connection_label_clean(*, connection: Connection, label: str) -> str:
    """The name as it will be stored, or a ValidationError saying what is wrong with it."""
    label = " ".join(str(label or "").split())
    if not label:
        raise ValidationError("Give the connection a name.")
    if len(label) > LABEL_MAX_LENGTH:
        raise ValidationError(f"Keep the name under {LABEL_MAX_LENGTH} characters.")
    same = Connection.objects.filter(customer_id=connection.customer_id, label__iexact=label)
    if same.exclude(pk=connection.pk).exclude(status=Connection.Status.DISCONNECTED).exists():
        raise ValidationError(f"Another connection is already called “{label}”.")
    return label


def connection_rename(*, connection: Connection, label: str, actor: Actor) -> Connection:
    label = connection_label_clean(connection=connection, label=label)
    with transaction.atomic():
        old = connection.label
        connection.label = label
        connection.save(update_fields=["label", "updated_at"])
        if old != label:
            audit_record(
                actor=actor, action="connection.renamed", connection=connection, old=old, new=label
            )
    return connection
