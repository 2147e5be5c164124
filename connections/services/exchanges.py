"""The auth-code exchange: the outbox row, its processing, and recovery."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from customers.models import Customer

from ..clients import trackstar_client
from ..models import AuthCodeExchange, Connection, MagicLink, WebhookEvent
from ..models.records import parse_datetime
from ..trackstar import (
    ExchangeResult,
    TrackstarAuthError,
    TrackstarError,
    TrackstarRateLimited,
    TrackstarUnavailable,
)
from .account import account_key_rejected
from .audit import Actor, audit_record, user_or_none
from .connections import connection_default_label
from .magic_links import (
    magic_link_completed,
    magic_link_consume,
    magic_link_release,
    token_hash,
)
from .sync import sync_schedule_initial

logger = logging.getLogger(__name__)

EXCHANGE_LEASE = timedelta(seconds=90)
# How long a pending exchange may sit before the sweep enqueues it again.
EXCHANGE_STALE_SECONDS = 60
# Attempts after which the sweep gives up (each task already retries with backoff).
EXCHANGE_MAX_ATTEMPTS = 12


# --- Link tokens -------------------------------------------------------------------------


def link_token_create(*, customer: Customer, reinstall: Connection | None = None) -> str:
    """A Trackstar link token for this customer; with `reinstall`, Link reconnects that
    connection and Trackstar keeps its id, token and history (API.md §3)."""
    if reinstall is not None and reinstall.customer_id != customer.pk:
        raise ValidationError("That connection belongs to another customer.")
    try:
        return trackstar_client().create_link_token(
            customer_id=customer.public_id,
            connection_id=reinstall.trackstar_connection_id if reinstall else None,
        )
    except TrackstarAuthError as e:
        account_key_rejected(error=e.message)  # /link/token takes our API key alone
        raise


# --- Auth code exchange --------------------------------------------------------------------


class LinkUnavailable(Exception):
    pass


@dataclass(frozen=True)
class SubmittedExchange:
    exchange: AuthCodeExchange
    created: bool


def _existing_exchange(*, customer: Customer, code_hash: str) -> AuthCodeExchange | None:
    existing = AuthCodeExchange.objects.filter(auth_code_hash=code_hash).first()
    if existing is not None and existing.customer_id != customer.pk:
        # Somebody replays another customer's code: say nothing about it.
        raise ValidationError("This authorization code was already used.")
    return existing


def exchange_submit(
    *,
    customer: Customer,
    auth_code: str,
    integration_name: str,
    source: str,
    user: Actor = None,
    reinstall_connection: Connection | None = None,
    magic_link: MagicLink | None = None,
) -> SubmittedExchange:
    """Write the exchange outbox row and enqueue it after commit. Never calls Trackstar.

    Through a magic link, the row takes one of the link's uses in the same transaction;
    LinkUnavailable when none is left."""
    code_hash = token_hash(auth_code)
    existing = _existing_exchange(customer=customer, code_hash=code_hash)
    if existing is not None:
        return SubmittedExchange(existing, created=False)
    try:
        with transaction.atomic():
            if magic_link is not None and not magic_link_consume(link_id=magic_link.pk):
                raise LinkUnavailable("This link has expired, was revoked, or was already used.")
            exchange = AuthCodeExchange.objects.create(
                customer=customer,
                auth_code_hash=code_hash,
                auth_code=auth_code,
                integration_name=integration_name,
                source=source,
                created_by=user_or_none(user),
                reinstall_connection=reinstall_connection,
                magic_link=magic_link,
            )
            if source == Connection.Source.STAFF:
                audit_record(
                    actor=user,
                    action="connection.credentials_entered",
                    customer=customer,
                    integration_name=integration_name,
                    exchange_id=str(exchange.public_id),
                )
            transaction.on_commit(lambda: exchange_enqueue(exchange_id=exchange.pk), robust=True)
    except IntegrityError:
        # The same code submitted twice at the same moment: the other request's row won
        # (and took the link's use, if any); this one rolled back and answers with it.
        existing = _existing_exchange(customer=customer, code_hash=code_hash)
        if existing is None:
            raise
        return SubmittedExchange(existing, created=False)
    return SubmittedExchange(exchange, created=True)


def exchange_enqueue(*, exchange_id: int) -> bool:
    """Hand the exchange to a worker. With the broker down the row stays pending and the
    sweep enqueues it later: the auth code is not lost, and the user still gets a 202."""
    from ..tasks import exchange_process as exchange_process_task

    try:
        exchange_process_task.delay(exchange_id)
    except BrokerError:
        logger.warning(
            "Broker unavailable; exchange %s left for the sweep",
            exchange_id,
            extra={"exchange_id": exchange_id},
        )
        return False
    return True


def exchanges_sweep() -> int:
    """Re-enqueue exchanges still pending a while after they were written or last tried:
    the broker was down, or the worker holding the retry died. One that keeps failing
    without an answer from Trackstar ends as failed instead of looping for ever."""
    from ..selectors import exchanges_stale_dangerously

    now = timezone.now()
    count = 0
    stale = (
        exchanges_stale_dangerously(older_than_seconds=EXCHANGE_STALE_SECONDS)
        .exclude(claimed_until__gt=now)
        .exclude(retry_at__gt=now - timedelta(seconds=EXCHANGE_STALE_SECONDS))
    )
    for exchange_id, attempts in stale.values_list("pk", "attempts"):
        if attempts >= EXCHANGE_MAX_ATTEMPTS:
            exchange_fail(
                exchange_id=exchange_id,
                reason="Connecting could not be finished. Please connect again.",
            )
            continue
        if exchange_enqueue(exchange_id=exchange_id):
            AuthCodeExchange.objects.filter(pk=exchange_id).update(updated_at=now)
            count += 1
    return count


def exchange_retry_scheduled(*, exchange_id: int, countdown: float) -> None:
    """The task scheduled its own retry: keep the sweep off until it is overdue."""
    AuthCodeExchange.objects.filter(pk=exchange_id).update(
        retry_at=timezone.now() + timedelta(seconds=countdown)
    )


def _claim(exchange_id: int) -> AuthCodeExchange | None:
    """Take the lease on a pending exchange and count the attempt, in its own commit: if
    the worker dies after Trackstar answered, the next attempt knows the code was sent."""
    now = timezone.now()
    with transaction.atomic():
        exchange = (
            AuthCodeExchange.objects.select_for_update(of=("self",))
            .select_related("customer", "reinstall_connection")
            .filter(pk=exchange_id)
            .first()
        )
        if exchange is None or exchange.status != AuthCodeExchange.Status.PENDING:
            return None
        if exchange.claimed_until and exchange.claimed_until > now:
            return None
        exchange.attempts += 1
        exchange.claimed_until = now + EXCHANGE_LEASE
        exchange.save(update_fields=["attempts", "claimed_until", "updated_at"])
    return exchange


def exchange_process(*, exchange_id: int) -> AuthCodeExchange | None:
    """Exchange the auth code for an access token and store the connection.

    Raises TrackstarUnavailable / TrackstarRateLimited for the task to retry; any other
    Trackstar error ends the exchange as failed with a reason people can read."""
    exchange = _claim(exchange_id)
    if exchange is None:
        return None
    log_extra = {"customer_id": exchange.customer.public_id, "exchange_id": exchange.pk}
    try:
        result = trackstar_client().exchange_auth_code(
            auth_code=exchange.auth_code, customer_id=exchange.customer.public_id
        )
    except (TrackstarUnavailable, TrackstarRateLimited) as e:
        _release(exchange, error=f"Trackstar is busy or unreachable; retrying ({e}).")
        raise
    except TrackstarAuthError as e:
        # /link/exchange takes our API key alone: Trackstar refuses the key, not the code.
        # Staff are alerted, and the code is tried again (retries), not thrown away.
        account_key_rejected(error=e.message)
        _release(exchange, error="Trackstar refuses our API key; retrying.")
        raise TrackstarUnavailable("Trackstar refuses our API key", path="/link/exchange") from e
    except TrackstarError as e:
        if exchange.attempts > 1 and _recover_from_trackstar(exchange):
            return exchange
        logger.info("Auth code exchange refused: %s", e, extra=log_extra)
        return exchange_fail(
            exchange_id=exchange.pk,
            reason=f"Trackstar refused the connection: {e.message}. Please connect again.",
        )
    _complete(exchange, result)
    logger.info("Auth code exchanged", extra={**log_extra, "connection_id": result.connection_id})
    return exchange


def _release(exchange: AuthCodeExchange, *, error: str) -> None:
    AuthCodeExchange.objects.filter(pk=exchange.pk).update(
        claimed_until=None, last_error=error, updated_at=timezone.now()
    )


def _end(
    exchange: AuthCodeExchange,
    *,
    status: str,
    error: str = "",
    connection: Connection | None = None,
) -> None:
    """Close a locked exchange: the spent code is forgotten, the magic link it came through
    is completed, or given its use back when it failed."""
    exchange.status = status
    exchange.last_error = error
    exchange.connection = connection
    exchange.auth_code = ""
    exchange.claimed_until = None
    exchange.finished_at = timezone.now()
    exchange.save()
    if exchange.magic_link_id:
        if status == AuthCodeExchange.Status.SUCCEEDED:
            magic_link_completed(link_id=exchange.magic_link_id)
        else:
            magic_link_release(link_id=exchange.magic_link_id)


def exchange_fail(*, exchange_id: int, reason: str) -> AuthCodeExchange:
    with transaction.atomic():
        exchange = AuthCodeExchange.objects.select_for_update().get(pk=exchange_id)
        if exchange.status == AuthCodeExchange.Status.PENDING:
            _end(exchange, status=AuthCodeExchange.Status.FAILED, error=reason)
    return exchange


def _complete(exchange: AuthCodeExchange, result: ExchangeResult) -> None:
    with transaction.atomic():
        locked = (
            AuthCodeExchange.objects.select_for_update(of=("self",))
            .select_related("magic_link")
            .get(pk=exchange.pk)
        )
        if locked.status != AuthCodeExchange.Status.PENDING:
            return
        connection = (
            Connection.objects.select_for_update()
            .filter(trackstar_connection_id=result.connection_id)
            .first()
        )
        if connection is not None and connection.customer_id != exchange.customer_id:
            logger.error(
                "Trackstar connection belongs to another customer",
                extra={"connection_id": result.connection_id},
            )
            _end(
                locked,
                status=AuthCodeExchange.Status.FAILED,
                error="This connection belongs to another account.",
            )
            return
        target = exchange.reinstall_connection
        if target is not None and result.connection_id != target.trackstar_connection_id:
            # A reconnect must land on the connection the user chose; anything else (another
            # of their connections, a new one) would be stored under the wrong row.
            logger.error(
                "Reinstall exchange returned another connection",
                extra={
                    "exchange_id": locked.pk,
                    "connection_id": result.connection_id,
                    "expected_connection_id": target.trackstar_connection_id,
                },
            )
            _end(
                locked,
                status=AuthCodeExchange.Status.FAILED,
                error="Trackstar reconnected a different connection than the one you chose. "
                "Please click Reconnect on it again.",
            )
            return
        allowed = locked.magic_link.allowed_integrations if locked.magic_link else []
        if allowed and result.integration_name not in allowed:
            # The allow list is only a filter in Link's page: enforce it on what Trackstar
            # says was connected, not on the name the browser sent.
            logger.warning(
                "Exchange for an integration outside the link's allow list",
                extra={"exchange_id": locked.pk},
            )
            _end(
                locked,
                status=AuthCodeExchange.Status.FAILED,
                error="This link does not allow that integration.",
            )
            return
        connection = _connection_store(connection=connection, exchange=locked, result=result)
        _end(locked, status=AuthCodeExchange.Status.SUCCEEDED, connection=connection)


def _connection_store(
    *, connection: Connection | None, exchange: AuthCodeExchange, result: ExchangeResult
) -> Connection:
    now = timezone.now()
    if connection is None:
        connection = Connection(
            customer=exchange.customer,
            trackstar_connection_id=result.connection_id,
            source=exchange.source,
            created_by=exchange.created_by,
            label=connection_default_label(
                customer=exchange.customer, integration_name=result.integration_name
            ),
        )
    connection.integration_name = result.integration_name
    connection.access_token = result.access_token
    connection.available_actions = result.available_actions
    connection.status = Connection.Status.ACTIVE
    connection.last_error = ""
    connection.reconnect_notified_at = None
    connection.reconnect_cause = ""
    connection.connected_at = now
    connection.disconnected_at = None
    connection.save()
    # A reconnect is done: other reconnect links for it (the one emailed when it broke) have
    # nothing left to do.
    others = MagicLink.objects.filter(reinstall_connection=connection, revoked_at__isnull=True)
    if exchange.magic_link_id is not None:
        others = others.exclude(pk=exchange.magic_link_id)
    others.update(revoked_at=now)
    # Sync its data once the connection is committed (a reconnect continues from its mark).
    transaction.on_commit(lambda: sync_schedule_initial(connection=connection), robust=True)
    return connection


def _recover_from_trackstar(exchange: AuthCodeExchange) -> bool:
    """A previous attempt reached Trackstar but died before saving (the code is spent now).
    Find the connection Trackstar made for this customer, so it is not lost. Trackstar
    does not return access tokens here: the row waits for a reconnect (which keeps id and
    token) or for the connection.created webhook, which carries the token."""
    known = set(
        Connection.objects.filter(customer=exchange.customer).values_list(
            "trackstar_connection_id", flat=True
        )
    )
    if exchange.reinstall_connection is not None:
        reinstall_id = exchange.reinstall_connection.trackstar_connection_id
        candidates = [reinstall_id]
    else:
        try:
            remote = list(
                trackstar_client().list_connections(customer_id=exchange.customer.public_id)
            )
        except TrackstarError:
            logger.warning("Could not list Trackstar connections for recovery", exc_info=True)
            return False
        # Only one made for this exchange: same integration, unknown to us, and created
        # after the code was submitted (a few minutes' grace for clocks).
        made_after = exchange.created_at - timedelta(minutes=5)
        candidates = [
            c["connection_id"]
            for c in sorted(remote, key=lambda c: c.get("created_at") or "")
            if c.get("integration_name") == exchange.integration_name
            and c.get("connection_id") not in known
            and (parse_datetime(c.get("created_at")) or made_after) >= made_after
        ]
    if not candidates:
        return False
    with transaction.atomic():
        locked = AuthCodeExchange.objects.select_for_update().get(pk=exchange.pk)
        if locked.status != AuthCodeExchange.Status.PENDING:
            return True
        connection, _ = Connection.objects.get_or_create(
            trackstar_connection_id=candidates[-1],
            defaults={
                "customer": exchange.customer,
                "integration_name": exchange.integration_name,
                "label": connection_default_label(
                    customer=exchange.customer, integration_name=exchange.integration_name
                ),
                "source": exchange.source,
                "created_by": exchange.created_by,
                "status": Connection.Status.NEEDS_RECONNECT,
                "reconnect_cause": Connection.ReconnectCause.TOKEN_MISSING,
                "last_error": "The connection was made, but its access token did not reach "
                "us. Reconnect to finish.",
            },
        )
        _end(locked, status=AuthCodeExchange.Status.SUCCEEDED, connection=connection)
        # The connection.created webhook (it carries the token) may have come first and
        # been set aside for want of a connection: use it now.
        event = (
            WebhookEvent.objects.filter(
                event_type="connection.created",
                trackstar_connection_id=candidates[-1],
            )
            .exclude(access_token="")
            .order_by("-received_at")
            .first()
        )
        if event is not None and not connection.access_token:
            connection.access_token = event.access_token
            connection.status = Connection.Status.ACTIVE
            connection.last_error = ""
            connection.connected_at = timezone.now()
            connection.save()
            transaction.on_commit(lambda: sync_schedule_initial(connection=connection), robust=True)
    logger.warning(
        "Recovered connection %s from Trackstar after a lost exchange",
        connection.trackstar_connection_id,
        extra={"exchange_id": exchange.pk},
    )
    return True
