"""Connections made outside Dockside: in Trackstar's dashboard ("Add Connection") or by one of
Trackstar's own magic links (API.md §4, §10). They arrive as `connection.created` with the
access token and the customer_id they were made with; the reconcile job finds the ones whose
webhook never came. One that names a customer of ours is adopted under that customer; the
rest wait in admin's "Unassigned connections" for staff to assign or delete."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import Actor, audit_record, user_or_none
from connections import enqueue
from connections.clients import trackstar_client
from connections.health.account import trackstar_account
from connections.health.services import token_refused
from connections.integrations import integration_display_name
from connections.models import (
    AuthCodeExchange,
    Connection,
    LinkTokenGrant,
    TrackstarAccount,
    UnassignedConnection,
)
from connections.models.records import parse_datetime
from connections.services import connection_default_label, connection_mark_disconnected
from connections.trackstar import TrackstarAuthError, TrackstarError
from customers.models import Customer

logger = logging.getLogger(__name__)

# A connection.created while one of this customer's own exchanges is pending may be that
# exchange's: the exchange stores it, or refuses it (and deletes it at Trackstar), and its
# recovery reads the event. Whatever the integration: the name on the exchange is the one
# the browser sent, and Link may have connected another WMS (outside a link's allow list).
# What the exchange does not take, the reconcile job adopts afterwards.
OWN_EXCHANGE_WINDOW = timedelta(minutes=15)
GONE_REASON = "Trackstar no longer has this connection (found by the reconcile job)."


def _our_exchange_is_pending(customer: Customer) -> bool:
    return AuthCodeExchange.objects.filter(
        customer=customer,
        status=AuthCodeExchange.Status.PENDING,
        created_at__gte=timezone.now() - OWN_EXCHANGE_WINDOW,
    ).exists()


def _held_for_a_magic_link(customer: Customer, integration_name: str) -> str:
    """Why a connection naming this customer is not adopted by itself ("" to adopt it).

    Link makes the connection with the customer_id of the link token it was opened with,
    whether or not its code ever reaches store-token. A magic link's visitor who keeps the
    code would otherwise get, through this very adoption, a WMS the link does not allow,
    or a connection without spending the link's use, as often as they like. While one of
    the customer's magic-link tokens is open (not expired, and no exchange answers for
    it: none pending, none that got a connection back), a new connection cannot be told
    apart from one made through it: staff decide. Never deleted (nothing ties it to a
    refusal), never given to the customer unasked. Tokens of the portal and of staff are
    not restricted: what Link makes through them the customer may have anyway."""
    answered_for = AuthCodeExchange.objects.filter(
        Q(status__in=[AuthCodeExchange.Status.PENDING, AuthCodeExchange.Status.SUCCEEDED])
        | ~Q(refused_connection_id=""),
        link_token__isnull=False,
    ).values("link_token_id")
    open_grants = (
        LinkTokenGrant.objects.filter(
            customer=customer,
            source=Connection.Source.MAGIC_LINK,
            expires_at__gt=timezone.now(),
        )
        .exclude(pk__in=answered_for)
        .select_related("magic_link")
    )
    for grant in open_grants:
        if grant.allowed_integrations and integration_name not in grant.allowed_integrations:
            allowed = ", ".join(integration_display_name(n) for n in grant.allowed_integrations)
            return (
                f"Not adopted: made while a magic link of this customer that allows only "
                f"{allowed} was open in Trackstar Link, and no code for it reached Dockside."
            )
        link = grant.magic_link
        if link is None or link.use_count < link.max_uses:
            return (
                "Not adopted: made while a magic link of this customer was open in Trackstar "
                "Link, and its code never reached Dockside (the link was not used for it)."
            )
    return ""


def connection_adopt(
    *,
    trackstar_connection_id: str,
    access_token: str,
    details: dict[str, Any],
    customer_id: str | None,
    seen_via: str,
) -> Connection | UnassignedConnection | None:
    """A connection Trackstar has that we do not. Adopted (active, syncing) when it names an
    active customer of ours and we have its token; otherwise kept as unassigned. None when
    it is one of our own exchanges still on its way."""
    existing = Connection.objects.filter(trackstar_connection_id=trackstar_connection_id).first()
    if existing is not None:
        return existing
    if (
        AuthCodeExchange.objects.filter(refused_connection_id=trackstar_connection_id)
        .exclude(refused_delete=AuthCodeExchange.RefusedDelete.KEPT)
        .exists()
    ):
        # One of our exchanges refused it (another customer's code, outside a link's allow
        # list…) and deletes it at Trackstar: nobody adopts it meanwhile.
        return None
    integration_name = str(details.get("integration_name") or "unknown")[:64]
    customer_id = customer_id or details.get("customer_id") or None
    customer = (
        Customer.objects.filter(public_id=customer_id, is_active=True).first()
        if isinstance(customer_id, str)
        else None
    )
    if customer is not None and _our_exchange_is_pending(customer):
        return None
    held = _held_for_a_magic_link(customer, integration_name) if customer is not None else ""
    with transaction.atomic():
        unassigned, _ = UnassignedConnection.objects.select_for_update().get_or_create(
            trackstar_connection_id=trackstar_connection_id,
            defaults={"integration_name": integration_name, "seen_via": seen_via},
        )
        unassigned.integration_name = integration_name
        unassigned.trackstar_customer_id = str(customer_id or "")[:255]
        unassigned.trackstar_created_at = (
            parse_datetime(details.get("created_at")) or unassigned.trackstar_created_at
        )
        unassigned.access_token = access_token or unassigned.access_token
        if unassigned.resolution == UnassignedConnection.Resolution.GONE:
            unassigned.resolution, unassigned.resolved_at = "", None  # it is back
        if held and not unassigned.held_reason:
            # Kept once and for all: the token expiring later does not make it adoptable.
            unassigned.held_reason = held[:255]
            logger.warning(
                "Connection made while a magic link was open: kept for staff",
                extra={"customer_id": customer_id, "connection_id": trackstar_connection_id},
            )
        unassigned.save()
        if (
            customer is None
            or not unassigned.access_token
            or unassigned.resolution
            or unassigned.held_reason
        ):
            return unassigned
        return _create(unassigned, customer=customer, details=details, actor=None)


def _create(
    unassigned: UnassignedConnection,
    *,
    customer: Customer,
    details: dict[str, Any],
    actor: Actor,
) -> Connection:
    from connections.sync.schedule import sync_schedule_initial

    actions = details.get("available_actions")
    try:
        with transaction.atomic():
            connection = Connection.objects.create(
                customer=customer,
                trackstar_connection_id=unassigned.trackstar_connection_id,
                integration_name=unassigned.integration_name,
                label=connection_default_label(
                    customer=customer, integration_name=unassigned.integration_name
                ),
                integration_type=str(details.get("integration_type") or "wms")[:16],
                available_actions=[a for a in actions if isinstance(a, str)]
                if isinstance(actions, list)
                else [],
                access_token=unassigned.access_token,
                status=Connection.Status.ACTIVE,
                # Trackstar does not say whether its dashboard or its magic link made it.
                source=Connection.Source.TRACKSTAR_DASHBOARD,
                created_by=user_or_none(actor),
                connected_at=timezone.now(),
            )
    except IntegrityError as e:  # adopted by a concurrent delivery or a staff action
        raise ValidationError("This connection is already in Dockside.") from e
    unassigned.resolution = UnassignedConnection.Resolution.ASSIGNED
    unassigned.resolved_at = timezone.now()
    unassigned.connection = connection
    unassigned.access_token = ""  # it lives on the connection now
    unassigned.save()
    if actor is None:  # staff's assign writes its own entry (unassigned_assign)
        audit_record(
            actor=None,
            action="connection.adopted",
            connection=connection,
            seen_via=unassigned.seen_via,
        )
    transaction.on_commit(lambda: sync_schedule_initial(connection=connection), robust=True)
    logger.info(
        "Adopted a connection made in Trackstar",
        extra={
            "customer_id": customer.public_id,
            "connection_id": connection.trackstar_connection_id,
        },
    )
    return connection


# --- Staff actions on unassigned connections -------------------------------------------------


def _token_for(unassigned: UnassignedConnection, access_token: str) -> str:
    """The token to act with, for a connection still waiting: the pasted one, else the one
    its webhook brought. (Trackstar checks it: PATCH /connections answers with the token's
    own connection id, which must be this one.)"""
    if unassigned.resolution:
        raise ValidationError(
            f"This connection was already {unassigned.get_resolution_display().lower()}."
        )
    token = (access_token or "").strip() or unassigned.access_token
    if not token:
        raise ValidationError("Paste the connection's access token (from Trackstar's dashboard).")
    return token


def unassigned_assign(
    *,
    unassigned: UnassignedConnection,
    customer: Customer,
    access_token: str = "",
    actor: Actor,
) -> Connection:
    """Give the connection to a customer: write our customer_id at Trackstar, then adopt it."""
    token = _token_for(unassigned, access_token)
    client = trackstar_client()
    try:
        updated = client.update_connection(access_token=token, customer_id=customer.public_id)
        details = client.get_connection(unassigned.trackstar_connection_id)
    except TrackstarAuthError as e:
        raise ValidationError("Trackstar does not accept this access token.") from e
    except TrackstarError as e:
        raise ValidationError(f"Trackstar could not update the connection: {e.message}") from e
    if updated.get("id") != unassigned.trackstar_connection_id:
        raise ValidationError("This access token belongs to another connection.")
    with transaction.atomic():
        locked = UnassignedConnection.objects.select_for_update().get(pk=unassigned.pk)
        if locked.resolution:
            raise ValidationError("This connection was handled meanwhile.")
        locked.access_token = token
        connection = _create(locked, customer=customer, details=details, actor=actor)
        audit_record(
            actor=actor,
            action="unassigned.assigned",
            connection=connection,
            trackstar_connection_id=locked.trackstar_connection_id,
        )
    return connection


def unassigned_delete(
    *, unassigned: UnassignedConnection, access_token: str = "", actor: Actor
) -> UnassignedConnection:
    """Delete it at Trackstar (DELETE /connections needs its token)."""
    token = _token_for(unassigned, access_token)
    client = trackstar_client()
    try:
        owner = client.update_connection(access_token=token)
        if owner.get("id") != unassigned.trackstar_connection_id:
            raise ValidationError("This access token belongs to another connection.")
        client.delete_connection(access_token=token)
    except TrackstarAuthError as e:
        raise ValidationError("Trackstar does not accept this access token.") from e
    except TrackstarError as e:
        raise ValidationError(f"Trackstar could not delete the connection: {e.message}") from e
    with transaction.atomic():
        UnassignedConnection.objects.filter(pk=unassigned.pk).update(
            resolution=UnassignedConnection.Resolution.DELETED,
            resolved_at=timezone.now(),
            access_token="",
        )
        audit_record(
            actor=actor,
            action="unassigned.deleted",
            trackstar_connection_id=unassigned.trackstar_connection_id,
        )
    unassigned.refresh_from_db()
    return unassigned


# --- Reconcile --------------------------------------------------------------------------------


def connections_reconcile() -> dict[str, int]:
    """Hourly, and staff's "Check Trackstar now": page GET /connections and compare.
    Trackstar's connections we do not know become unassigned (or adopted, when a webhook
    left us their token and they name a customer); ours that Trackstar no longer has, and
    whose token it refuses too, are disconnected. Returns counts."""
    started = timezone.now()
    trackstar_account()
    try:
        remote = {
            c["connection_id"]: c
            for c in trackstar_client().list_connections()
            if isinstance(c.get("connection_id"), str)
        }
    except TrackstarError as e:
        TrackstarAccount.objects.filter(pk=1).update(reconcile_error=e.message[:2000])
        raise
    known = set(Connection.objects.values_list("trackstar_connection_id", flat=True))
    found = 0
    for connection_id, details in remote.items():
        if connection_id in known:
            continue
        adopted = connection_adopt(
            trackstar_connection_id=connection_id,
            access_token="",
            details=details,
            customer_id=details.get("customer_id"),
            seen_via=UnassignedConnection.SeenVia.RECONCILE,
        )
        found += adopted is not None
    gone = 0
    missing = (
        Connection.objects.exclude(status=Connection.Status.DISCONNECTED)
        .exclude(trackstar_connection_id__in=list(remote))
        .filter(created_at__lt=started)
        .select_related("customer")
    )
    for connection in missing:
        if token_refused(connection):
            connection_mark_disconnected(connection=connection, actor=None, reason=GONE_REASON)
            gone += 1
    vanished = (
        UnassignedConnection.objects.filter(resolution="")
        .exclude(trackstar_connection_id__in=list(remote))
        .filter(first_seen_at__lt=started)
        .update(resolution=UnassignedConnection.Resolution.GONE, resolved_at=timezone.now())
    )
    TrackstarAccount.objects.filter(pk=1).update(reconciled_at=timezone.now(), reconcile_error="")
    logger.info("Reconciled with Trackstar: %d unknown, %d gone", found, gone)
    return {
        "trackstar": len(remote),
        "unassigned": found,
        "disconnected": gone,
        "vanished": vanished,
    }


class BrokerUnavailable(Exception):
    """The task could not be queued."""


def reconcile_enqueue() -> None:
    if not enqueue.reconcile():
        raise BrokerUnavailable
