import logging

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from customers.models import Customer

from ..clients import trackstar_client
from ..models import Connection, MagicLink
from ..trackstar import TrackstarAuthError, TrackstarError, TrackstarNotFound
from .audit import Actor, audit_record, user_or_none

logger = logging.getLogger(__name__)


def connection_disconnect(
    *, connection: Connection, actor: Actor = None
) -> Connection:
    """Delete the connection at Trackstar, then mark it disconnected and forget its token.
    A Trackstar outage leaves it untouched (the caller shows the error)."""
    if connection.status == Connection.Status.DISCONNECTED:
        return connection
    if connection.access_token:
        try:
            trackstar_client().delete_connection(access_token=connection.access_token)
        except (TrackstarAuthError, TrackstarNotFound):
            # Already gone or its token is dead at Trackstar: nothing left to delete there.
            pass
    connection_mark_disconnected(connection=connection, actor=actor)
    logger.info("Connection disconnected",
                extra={"customer_id": connection.customer_id,
                       "connection_id": connection.trackstar_connection_id})
    return connection


def connection_mark_disconnected(
    *, connection: Connection, actor: Actor, reason: str = ""
) -> None:
    """Record that the connection is gone at Trackstar: forget its token, stop its syncs,
    revoke the links that would reconnect it, and say who or what did it."""
    with transaction.atomic():
        updated = Connection.objects.filter(pk=connection.pk).exclude(
            status=Connection.Status.DISCONNECTED
        ).update(status=Connection.Status.DISCONNECTED, access_token="",
                 disconnected_at=timezone.now(), updated_at=timezone.now())
        if not updated:
            return
        connection.refresh_from_db()
        # A reconnect link for a connection that no longer exists can only fail.
        MagicLink.objects.filter(reinstall_connection=connection, revoked_at__isnull=True).update(
            revoked_at=timezone.now())
        audit_record(actor=actor, action="connection.disconnected", connection=connection,
                     reason=reason or "disconnected by a person")


def connection_import(
    *, customer: Customer, access_token: str, actor: Actor
) -> Connection:
    """Adopt a connection made in Trackstar's dashboard from its access token. Trackstar
    checks the token first: PATCH /connections answers with the token's connection id,
    then GET /connections/{id} gives its details. Only a new connection gets our customer
    id recorded at Trackstar."""
    from .sync import sync_schedule_initial

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
                integration_type=details.get("integration_type") or "wms",
                available_actions=list(details.get("available_actions") or []),
                access_token=access_token,
                status=Connection.Status.ACTIVE,
                source=Connection.Source.IMPORT,
                created_by=user_or_none(actor),
                connected_at=timezone.now(),
            )
            audit_record(actor=actor, action="connection.imported", connection=connection)
            transaction.on_commit(lambda: sync_schedule_initial(connection=connection),
                                  robust=True)
    except IntegrityError as e:  # imported twice at the same moment
        raise ValidationError(f"This connection ({connection_id}) is already in Dockside.") from e
    return connection


def connection_set_paused(
    *, connection: Connection, paused: bool, actor: Actor
) -> Connection:
    with transaction.atomic():
        connection.sync_paused = paused
        connection.save(update_fields=["sync_paused", "updated_at"])
        audit_record(actor=actor, action="connection.sync_paused" if paused
                     else "connection.sync_resumed", connection=connection)
    return connection


def connection_mark_needs_reconnect(*, connection_id: int, reason: str) -> bool:
    """Trackstar stopped reaching the WMS with these credentials (a connection-error
    webhook, or a 401). The portal shows Reconnect; the customer's contact gets one email
    with a reconnect link per incident. Returns whether the status changed."""
    from .magic_links import magic_link_issue

    with transaction.atomic():
        connection = (Connection.objects.select_for_update(of=("self",))
                      .select_related("customer").filter(pk=connection_id).first())
        if connection is None or connection.status == Connection.Status.DISCONNECTED:
            return False
        changed = connection.status != Connection.Status.NEEDS_RECONNECT
        connection.status = Connection.Status.NEEDS_RECONNECT
        connection.last_error = reason
        fields = ["status", "last_error", "updated_at"]
        email = connection.customer.contact_email
        if connection.reconnect_notified_at is None and email:
            magic_link_issue(customer=connection.customer, created_by=None,
                             reinstall_connection=connection, email_to=email)
            connection.reconnect_notified_at = timezone.now()
            fields.append("reconnect_notified_at")
        connection.save(update_fields=fields)
    if changed:
        logger.warning("Connection needs reconnect: %s", reason,
                       extra={"customer_id": connection.customer.public_id,
                              "connection_id": connection.trackstar_connection_id})
    return changed


def connection_mark_repaired(*, connection_id: int) -> bool:
    """The incident is over (connection-error.deleted): active again, and a later incident
    sends a new email."""
    return bool(Connection.objects.filter(
        pk=connection_id, status=Connection.Status.NEEDS_RECONNECT
    ).exclude(access_token="").update(
        status=Connection.Status.ACTIVE, last_error="", reconnect_notified_at=None,
        updated_at=timezone.now(),
    ))


def connection_resync(
    *, connection: Connection, actor: Actor, resources: list[str] | None = None
) -> list[str]:
    """Staff's "resync now": a full pass over these resources (default: all it offers)."""
    from .sync import sync_request_now

    if connection.status != Connection.Status.ACTIVE:
        raise ValidationError(f"{connection} is {connection.get_status_display().lower()}; "
                              "only an active connection can sync.")
    with transaction.atomic():
        requested = sync_request_now(connection=connection, resources=resources, full=True)
        audit_record(actor=actor, action="connection.resync_requested", connection=connection,
                     resources=requested)
    return requested
