"""The auth-code exchange: the outbox row, its processing, and recovery."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.services import Actor, ActorKind, audit_record, user_or_none
from connections import enqueue
from connections.clients import trackstar_client
from connections.database import DATABASE_LOST, database_connection_drop
from connections.health.account import account_key_rejected
from connections.link.errors import LINK_UNAVAILABLE, LinkRefused
from connections.link.magic_links import (
    magic_link_completed,
    magic_link_consume,
    magic_link_release,
    token_hash,
)
from connections.models import (
    AuthCodeExchange,
    Connection,
    LinkTokenGrant,
    MagicLink,
    UnassignedConnection,
    WebhookEvent,
)
from connections.models.records import parse_datetime
from connections.services import connection_default_label, connection_mark_needs_reconnect
from connections.sync.schedule import sync_schedule_initial
from connections.trackstar import (
    ExchangeResult,
    TrackstarAuthError,
    TrackstarError,
    TrackstarNotFound,
    TrackstarRateLimited,
    TrackstarUnavailable,
)
from customers.models import Customer

logger = logging.getLogger(__name__)

# How long a claimed attempt is left alone before the sweep takes it as dead. Longer than
# one attempt can take (Trackstar's connect + read timeout, 33 s, and the save's retries
# after Trackstar answered, 15.5 s: see test_the_exchange_lease_outlasts_an_attempt);
# short, because a dead worker's customer waits it out, plus a sweep (30 s).
EXCHANGE_LEASE = timedelta(seconds=60)
# How long a pending exchange may sit before the sweep enqueues it again.
EXCHANGE_STALE_SECONDS = 60
# Attempts after which the sweep gives up (each task already retries with backoff).
EXCHANGE_MAX_ATTEMPTS = 12
# How long store-token accepts a link token we minted. Trackstar calls link tokens
# "temporary" and documents no lifetime (API.md §3): one Link session (pick a WMS, type
# credentials, maybe an OAuth popup) takes minutes; an hour covers a slow one, and a token
# left in an old tab or a log is useless after it.
LINK_TOKEN_TTL = timedelta(hours=1)
# Recovery takes a connection Trackstar made at most this long before the code reached us:
# Trackstar may make it when Link finishes, a few seconds before the browser's store-token
# arrives, and the two clocks differ by well under a second (NTP). Anything older was made
# for something else.
RECOVERY_CLOCK_GRACE = timedelta(seconds=30)


# --- Link tokens -------------------------------------------------------------------------


def link_token_create(
    *,
    customer: Customer,
    reinstall: Connection | None = None,
    source: str = Connection.Source.PORTAL,
    user: Actor = None,
    magic_link: MagicLink | None = None,
) -> str:
    """A Trackstar link token for this customer; with `reinstall`, Link reconnects that
    connection and Trackstar keeps its id, token and history (API.md §3). Remembered with
    whom it was handed to (`source`, `user`, `magic_link`), so store-token takes it only
    from them, for this customer."""
    if reinstall is not None and reinstall.customer_id != customer.pk:
        raise LinkRefused("That connection belongs to another customer.", status=404)
    try:
        link_token = trackstar_client().create_link_token(
            customer_id=customer.public_id,
            connection_id=reinstall.trackstar_connection_id if reinstall else None,
        )
    except TrackstarAuthError as e:
        account_key_rejected(error=e.message)  # /link/token takes our API key alone
        raise
    link_token_record(
        customer=customer,
        link_token=link_token,
        reinstall=reinstall,
        source=source,
        user=user,
        magic_link=magic_link,
    )
    return link_token


def link_token_record(
    *,
    customer: Customer,
    link_token: str,
    reinstall: Connection | None = None,
    source: str = Connection.Source.PORTAL,
    user: Actor = None,
    magic_link: MagicLink | None = None,
) -> LinkTokenGrant:
    grant, _ = LinkTokenGrant.objects.get_or_create(
        token_hash=token_hash(link_token),
        defaults={
            "customer": customer,
            "reinstall_connection": reinstall,
            "source": source,
            "user": user_or_none(user),
            "magic_link": magic_link,
            # As the link allowed them now: staff may edit the link later, the token was
            # handed out under these.
            "allowed_integrations": list(magic_link.allowed_integrations) if magic_link else [],
            "expires_at": timezone.now() + LINK_TOKEN_TTL,
        },
    )
    return grant


def link_tokens_prune() -> int:
    """Forget link tokens a day after they expired (exchanges keep their outcome)."""
    cutoff = timezone.now() - timedelta(days=1)
    deleted, _ = LinkTokenGrant.objects.filter(expires_at__lt=cutoff).delete()
    return deleted


def _held_by(
    grant: LinkTokenGrant, *, source: str, user: Actor, magic_link: MagicLink | None
) -> bool:
    """Is the caller the one the token was handed to? The same user for the portal and
    staff; the same magic link for its visitors (whoever is signed in besides)."""
    if grant.source != source:
        return False
    if source == Connection.Source.MAGIC_LINK:
        return magic_link is not None and grant.magic_link_id == magic_link.pk
    holder = user_or_none(user)
    return grant.user_id == (holder.pk if holder is not None else None)


def link_token_check(
    *,
    customer: Customer,
    link_token: str,
    reinstall: Connection | None,
    source: str,
    user: Actor = None,
    magic_link: MagicLink | None = None,
) -> LinkTokenGrant:
    """The grant of a link token this caller may submit a code with: minted for this
    customer, handed to this caller, for this reinstall, not expired. LinkRefused
    otherwise. Reads only: store-token asks before it spends any of its limits."""
    grant = (
        LinkTokenGrant.objects.filter(token_hash=token_hash(link_token)).first()
        if link_token
        else None
    )
    if (
        grant is None
        or grant.customer_id != customer.pk
        or not _held_by(grant, source=source, user=user, magic_link=magic_link)
    ):
        # Another customer's token, or another member's, staff member's or magic link's
        # (each their own Link session), reads as an unknown one: nothing says it exists.
        raise LinkRefused(
            "Connecting must start on this page. Please reload it and connect again.",
            status=403,
        )
    if grant.expires_at <= timezone.now():
        raise LinkRefused(
            "This connection attempt took too long. Please connect again.", status=410
        )
    if grant.reinstall_connection_id != (reinstall.pk if reinstall else None):
        raise LinkRefused(
            "Trackstar Link was opened for another connection. Please try again.", status=409
        )
    return grant


def exchange_existing(*, customer: Customer, auth_code: str) -> AuthCodeExchange | None:
    """The exchange of a code we hold already (a retry of store-token), if any;
    LinkRefused for another customer's."""
    return _existing_exchange(customer=customer, code_hash=token_hash(auth_code))


# --- Auth code exchange --------------------------------------------------------------------


@dataclass(frozen=True)
class SubmittedExchange:
    exchange: AuthCodeExchange
    created: bool


def _existing_exchange(*, customer: Customer, code_hash: str) -> AuthCodeExchange | None:
    existing = AuthCodeExchange.objects.filter(auth_code_hash=code_hash).first()
    if existing is not None and existing.customer_id != customer.pk:
        # Somebody replays another customer's code: say nothing about it.
        raise LinkRefused("This authorization code was already used.", status=409)
    return existing


def exchange_submit(
    *,
    customer: Customer,
    auth_code: str,
    link_token: str,
    integration_name: str,
    source: str,
    user: Actor = None,
    reinstall_connection: Connection | None = None,
    magic_link: MagicLink | None = None,
) -> SubmittedExchange:
    """Write the exchange outbox row and enqueue it after commit. Never calls Trackstar.

    `link_token` is the one Link was opened with: it must be one we minted for this
    customer and handed to this caller (link_token_check), for this reinstall, not
    expired; LinkRefused otherwise. Through a magic link, the row takes one of the link's
    uses in the same transaction; LinkRefused (410) when none is left."""
    code_hash = token_hash(auth_code)
    existing = _existing_exchange(customer=customer, code_hash=code_hash)
    if existing is not None:
        # A retry of a code we hold already answers with its exchange, whatever became of
        # its link token since (expired, or a page from before link tokens were sent).
        return SubmittedExchange(existing, created=False)
    grant = link_token_check(
        customer=customer,
        link_token=link_token,
        reinstall=reinstall_connection,
        source=source,
        user=user,
        magic_link=magic_link,
    )
    try:
        with transaction.atomic():
            if magic_link is not None and not magic_link_consume(link_id=magic_link.pk):
                raise LinkRefused(LINK_UNAVAILABLE, status=410)
            exchange = AuthCodeExchange.objects.create(
                customer=customer,
                auth_code_hash=code_hash,
                auth_code=auth_code,
                integration_name=integration_name,
                source=source,
                created_by=user_or_none(user),
                reinstall_connection=reinstall_connection,
                magic_link=magic_link,
                link_token=grant,
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
    if not enqueue.exchange(exchange_id):
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
    from connections.selectors import exchanges_stale_dangerously

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
    count += _refused_deletes_sweep(now)
    link_tokens_prune()
    return count


def exchange_retry_scheduled(
    *, exchange_id: int, countdown: float, release_claim: bool = False
) -> None:
    """The task scheduled its own retry: keep the sweep off until it is overdue.
    `release_claim`: the attempt ended without releasing its claim (the database
    connection broke), so the retry may take the exchange at once; the code is kept."""
    fields: dict = {"retry_at": timezone.now() + timedelta(seconds=countdown)}
    if release_claim:
        fields.update(claimed_until=None, last_error="Lost the database connection; retrying.")
    AuthCodeExchange.objects.filter(pk=exchange_id, status=AuthCodeExchange.Status.PENDING).update(
        **fields
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
        # No customer_id in the body: Trackstar then answers with the one of the link token
        # that made the code (API.md §3), which _complete checks is this customer's. Sent,
        # it might only be echoed back and prove nothing.
        result = trackstar_client().exchange_auth_code(auth_code=exchange.auth_code)
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
        if exchange.attempts > 1:
            # An earlier attempt may have spent the code and died before saving.
            try:
                if _recover_from_trackstar(exchange):
                    return exchange
            except RecoveryAmbiguous as ambiguous:
                logger.warning("Exchange not recovered: %s", ambiguous, extra=log_extra)
                return exchange_fail(exchange_id=exchange.pk, reason=str(ambiguous))
            except (TrackstarUnavailable, TrackstarRateLimited) as unavailable:
                _release(exchange, error=f"Trackstar is busy or unreachable ({unavailable}).")
                raise
        logger.info("Auth code exchange refused: %s", e, extra=log_extra)
        # Nothing was made for a code Trackstar refuses (a made-up one, or one that expired
        # while we were slow): a magic link gets its use back.
        return exchange_fail(
            exchange_id=exchange.pk,
            reason=f"Trackstar refused the connection: {e.message}. Please connect again.",
        )
    _complete_durably(exchange, result)
    logger.info("Auth code exchanged", extra={**log_extra, "connection_id": result.connection_id})
    return exchange


# Trackstar answered: the access token exists only in this process now (the code is spent,
# and Trackstar's API never shows a token again). A lost database connection here would
# lose it, so the save is tried again on fresh connections for about a failover's length
# before the error goes up (and the retry's recovery can at best ask for a reconnect).
COMPLETE_RETRY_DELAYS = (0.5, 1, 2, 4, 8)


def _complete_durably(exchange: AuthCodeExchange, result: ExchangeResult) -> None:
    for delay in (*COMPLETE_RETRY_DELAYS, None):
        try:
            _complete(exchange, result)
            return
        except DATABASE_LOST:
            if delay is None or transaction.get_connection().in_atomic_block:
                raise  # inside a caller's transaction a fresh connection cannot help
            logger.warning(
                "Database lost while saving an exchanged token; trying again in %ss",
                delay,
                extra={"exchange_id": exchange.pk},
            )
            database_connection_drop()
            time.sleep(delay)


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
    give_use_back: bool = True,
) -> None:
    """Close a locked exchange: the spent code is forgotten, the magic link it came through
    is completed, or given its use back when it failed on our side or Trackstar's. A
    refusal the visitor caused (give_use_back=False) keeps the use: otherwise a one-use
    link could make any number of refused connections."""
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
        elif give_use_back:
            magic_link_release(link_id=exchange.magic_link_id)


def exchange_fail(*, exchange_id: int, reason: str) -> AuthCodeExchange:
    """End a pending exchange that failed on our side or Trackstar's (the magic link gets
    its use back)."""
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
        reason = _refusal(exchange, locked, connection=connection, result=result)
        if reason:
            _refuse(locked, result=result, owned=connection is not None, reason=reason)
            return
        connection = _connection_store(connection=connection, exchange=locked, result=result)
        _end(locked, status=AuthCodeExchange.Status.SUCCEEDED, connection=connection)


def _refusal(
    exchange: AuthCodeExchange,
    locked: AuthCodeExchange,
    *,
    connection: Connection | None,
    result: ExchangeResult,
) -> str:
    """Why Dockside refuses what Trackstar answered ("" to store it). Each is something the
    visitor's code did, not a failure of ours."""
    log_extra = {"exchange_id": locked.pk, "connection_id": result.connection_id}
    if connection is not None and connection.customer_id != exchange.customer_id:
        logger.error("Trackstar connection belongs to another customer", extra=log_extra)
        return "This connection belongs to another account."
    if result.customer_id and result.customer_id != exchange.customer.public_id:
        # The code was made by a link token minted for someone else (API.md §3: the answer
        # names the link token's customer_id): another customer's WMS, not this one's.
        # An answer without a customer_id proves nothing either way; the docs do not say
        # it can happen, and refusing it would delete every connection made then, so the
        # link-token check at submit is what binds it.
        logger.error(
            "Auth code made for another customer",
            extra={**log_extra, "customer_id": exchange.customer.public_id},
        )
        return (
            "This sign-in to your WMS was started for another account, so it was not "
            "connected. Please connect again from this page."
        )
    target = exchange.reinstall_connection
    if target is not None and result.connection_id != target.trackstar_connection_id:
        # A reconnect must land on the connection the user chose; anything else (another
        # of their connections, a new one) would be stored under the wrong row.
        logger.error(
            "Reinstall exchange returned another connection",
            extra={**log_extra, "expected_connection_id": target.trackstar_connection_id},
        )
        return (
            "Trackstar reconnected a different connection than the one you chose. "
            "Please click Reconnect on it again."
        )
    allowed = locked.magic_link.allowed_integrations if locked.magic_link else []
    if allowed and result.integration_name not in allowed:
        # The allow list is only a filter in Link's page: enforce it on what Trackstar
        # says was connected, not on the name the browser sent.
        logger.warning("Exchange for an integration outside the link's allow list", extra=log_extra)
        return "This link does not allow that integration."
    return ""


def _refuse(locked: AuthCodeExchange, *, result: ExchangeResult, owned: bool, reason: str) -> None:
    """End a refused exchange, in the caller's transaction. The connection the code made
    at Trackstar holds the visitor's WMS credentials: it is deleted there after the commit,
    unless it is one of ours (a live connection of this or another customer, one waiting in
    unassigned connections, one another exchange answers for). Deleting those would
    disconnect their owner."""
    connection_id = result.connection_id
    someone_has_it = (
        owned
        or UnassignedConnection.objects.filter(trackstar_connection_id=connection_id).exists()
        or AuthCodeExchange.objects.filter(refused_connection_id=connection_id)
        .exclude(pk=locked.pk)
        .exists()
    )
    locked.refused_connection_id = connection_id
    if someone_has_it:
        locked.refused_delete = AuthCodeExchange.RefusedDelete.KEPT
    else:
        locked.refused_delete = AuthCodeExchange.RefusedDelete.OWED
        locked.refused_access_token = result.access_token
        exchange_id = locked.pk
        transaction.on_commit(lambda: refused_delete_enqueue(exchange_id=exchange_id), robust=True)
    _end(locked, status=AuthCodeExchange.Status.FAILED, error=reason, give_use_back=False)


# --- Deleting refused connections at Trackstar ---------------------------------------------

# However long Trackstar is down, a week later the row ends and staff are told: the
# connection (with the visitor's WMS credentials) is then deleted in Trackstar's dashboard.
# By time, not by attempts: an outage of minutes would burn any number of them.
REFUSED_DELETE_GIVE_UP_AFTER = timedelta(days=7)
# When the task's own retries ran out, the sweep tries again this much later, not at once.
REFUSED_DELETE_PAUSE = timedelta(minutes=15)


def refused_delete_enqueue(*, exchange_id: int) -> bool:
    """With the broker down, the row stays owed and the sweep enqueues it later."""
    if not enqueue.refused_delete(exchange_id):
        logger.warning(
            "Broker unavailable; refused connection of exchange %s left for the sweep",
            exchange_id,
            extra={"exchange_id": exchange_id},
        )
        return False
    return True


def refused_delete_retry_scheduled(*, exchange_id: int, countdown: float | None = None) -> None:
    """The delete task retries by itself in `countdown` seconds, or (None) ran out of
    retries and leaves the row to the sweep, REFUSED_DELETE_PAUSE later: the sweep keeps
    off until then, so one chain of attempts runs at a time, not one more a minute."""
    wait = REFUSED_DELETE_PAUSE if countdown is None else timedelta(seconds=countdown)
    AuthCodeExchange.objects.filter(
        pk=exchange_id, refused_delete=AuthCodeExchange.RefusedDelete.OWED
    ).update(refused_delete_retry_at=timezone.now() + wait)


def _refused_deletes_sweep(now: datetime) -> int:
    """Enqueue the deletes still owed whose task is gone: the broker was down, the worker
    died, or its retries ran out. Not one whose task's retry is still to come."""
    from connections.selectors import exchanges_owing_deletes_dangerously

    count = 0
    owed = exchanges_owing_deletes_dangerously(older_than_seconds=EXCHANGE_STALE_SECONDS).exclude(
        refused_delete_retry_at__gt=now - timedelta(seconds=EXCHANGE_STALE_SECONDS)
    )
    for exchange_id in owed.values_list("pk", flat=True):
        if refused_delete_enqueue(exchange_id=exchange_id):
            AuthCodeExchange.objects.filter(pk=exchange_id).update(updated_at=now)
            count += 1
    return count


def _refused_delete_record(exchange_id: int, *, error: str, **fields) -> None:
    AuthCodeExchange.objects.filter(
        pk=exchange_id, refused_delete=AuthCodeExchange.RefusedDelete.OWED
    ).update(refused_delete_error=error[:2000], updated_at=timezone.now(), **fields)


def _refused_delete_give_up(exchange: AuthCodeExchange, *, reason: str) -> None:
    """Stop trying, and tell staff once (only the call that moves the row off "owed"
    mails). Trackstar's dashboard deletes a connection without its token, so the token
    is dropped here rather than kept for ever."""
    ended = AuthCodeExchange.objects.filter(
        pk=exchange.pk, refused_delete=AuthCodeExchange.RefusedDelete.OWED
    ).update(
        refused_delete=AuthCodeExchange.RefusedDelete.GAVE_UP,
        refused_delete_error=reason[:2000],
        refused_access_token="",
        refused_delete_retry_at=None,
        updated_at=timezone.now(),
    )
    if not ended:
        return
    logger.error(
        "Gave up deleting a refused connection at Trackstar: %s",
        reason,
        extra={"exchange_id": exchange.pk, "connection_id": exchange.refused_connection_id},
    )
    mail_admins(
        f"Delete Trackstar connection {exchange.refused_connection_id} by hand",
        "Dockside refused a connection made through Trackstar Link (exchange "
        f"{exchange.public_id}, customer {exchange.customer}: {exchange.last_error}) and "
        "could not delete it at Trackstar:\n\n"
        f"{reason}\n\n"
        f"The connection {exchange.refused_connection_id} may still hold the WMS "
        "credentials the visitor entered. Delete it in Trackstar's dashboard. Dockside "
        "will not adopt it, and will not try again.",
        fail_silently=True,
    )


def exchange_refused_delete(*, exchange_id: int) -> AuthCodeExchange | None:
    """Delete at Trackstar the connection a refused exchange's code made (DELETE
    /connections with its token, API.md §4). Raises TrackstarUnavailable /
    TrackstarRateLimited for the task to retry; the row says "owed" until Trackstar
    confirms the connection is gone, or until we give up (no token to delete it with,
    Trackstar refuses the token, or REFUSED_DELETE_GIVE_UP_AFTER has passed) and staff
    are told."""
    exchange = (
        AuthCodeExchange.objects.select_related("customer")
        .filter(pk=exchange_id, refused_delete=AuthCodeExchange.RefusedDelete.OWED)
        .first()
    )
    if exchange is None:
        return None
    connection_id = exchange.refused_connection_id
    if (
        Connection.objects.filter(trackstar_connection_id=connection_id).exists()
        or UnassignedConnection.objects.filter(trackstar_connection_id=connection_id).exists()
    ):
        # Staff assigned it meanwhile, or it waits for them: it is somebody's connection.
        _refused_delete_record(
            exchange_id,
            error="A Dockside connection has it now, so it was not deleted.",
            refused_delete=AuthCodeExchange.RefusedDelete.KEPT,
            refused_access_token="",
        )
        return exchange
    if not exchange.refused_access_token:
        # Nothing to delete it with, now or on any later try.
        _refused_delete_give_up(exchange, reason="Dockside has no access token to delete it with.")
        return exchange
    AuthCodeExchange.objects.filter(pk=exchange_id).update(
        refused_delete_attempts=F("refused_delete_attempts") + 1
    )
    try:
        deleted = _refused_delete_attempt(exchange)
    except (TrackstarUnavailable, TrackstarRateLimited) as e:
        _refused_delete_record(exchange_id, error=f"Trackstar is busy or unreachable ({e}).")
        refused_at = exchange.finished_at or exchange.created_at
        if timezone.now() - refused_at >= REFUSED_DELETE_GIVE_UP_AFTER:
            days = REFUSED_DELETE_GIVE_UP_AFTER.days
            _refused_delete_give_up(
                exchange, reason=f"Trackstar was busy or unreachable for {days} days ({e})."
            )
            return exchange
        raise
    if not deleted:
        return exchange
    _refused_delete_record(
        exchange_id,
        error="",
        refused_delete=AuthCodeExchange.RefusedDelete.DELETED,
        refused_access_token="",
        refused_delete_retry_at=None,
        refused_deleted_at=timezone.now(),
    )
    logger.info(
        "Deleted a refused connection at Trackstar",
        extra={"exchange_id": exchange_id, "connection_id": connection_id},
    )
    exchange.refresh_from_db()
    return exchange


def _refused_delete_attempt(exchange: AuthCodeExchange) -> bool:
    """One DELETE at Trackstar: True once the connection is gone, False when Trackstar
    refuses for good (the row has ended: staff are told). Raises what may pass."""
    client = trackstar_client()
    connection_id = exchange.refused_connection_id
    try:
        client.delete_connection(access_token=exchange.refused_access_token)
    except TrackstarNotFound:
        return True  # gone already
    except TrackstarAuthError as e:
        # Our API key, or a token Trackstar no longer knows (the connection was deleted):
        # ask with the key alone.
        try:
            client.get_connection(connection_id)
        except TrackstarNotFound:
            return True
        except TrackstarError as lookup:
            raise TrackstarUnavailable(lookup.message, path="/connections") from lookup
        _refused_delete_give_up(
            exchange, reason=f"Trackstar refuses the connection's token: {e.message}"
        )
        return False
    except (TrackstarUnavailable, TrackstarRateLimited):
        raise
    except TrackstarError as e:
        _refused_delete_give_up(exchange, reason=f"Trackstar refused to delete it: {e.message}")
        return False
    return True


def _connection_store(
    *, connection: Connection | None, exchange: AuthCodeExchange, result: ExchangeResult
) -> Connection:
    now = timezone.now()
    reconnected = connection is not None
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
    _audit_connected(connection, exchange, reconnected=reconnected)
    # Its connection.created may have come first, while the link token was open, and been
    # kept for staff (adoption.py): the exchange that answers for it settles that.
    UnassignedConnection.objects.filter(
        trackstar_connection_id=connection.trackstar_connection_id, resolution=""
    ).update(
        resolution=UnassignedConnection.Resolution.ASSIGNED,
        resolved_at=now,
        connection=connection,
        access_token="",
    )
    # A reconnect is done: other reconnect links for it (the one emailed when it broke) have
    # nothing left to do.
    others = MagicLink.objects.filter(reinstall_connection=connection, revoked_at__isnull=True)
    if exchange.magic_link_id is not None:
        others = others.exclude(pk=exchange.magic_link_id)
    others.update(revoked_at=now)
    # Sync its data once the connection is committed (a reconnect continues from its mark).
    transaction.on_commit(lambda: sync_schedule_initial(connection=connection), robust=True)
    return connection


def _audit_connected(
    connection: Connection, exchange: AuthCodeExchange, *, reconnected: bool, **detail
) -> None:
    """Whoever got the auth code connected it: staff through admin's Link, else the
    customer (a portal user, or a magic link's visitor, who has no user)."""
    audit_record(
        actor=exchange.created_by,
        action="connection.reconnected" if reconnected else "connection.connected",
        connection=connection,
        by=ActorKind.STAFF if exchange.source == Connection.Source.STAFF else ActorKind.CUSTOMER,
        source=exchange.source,
        exchange_id=str(exchange.public_id),
        **detail,
    )


class RecoveryAmbiguous(Exception):
    """More than one connection at Trackstar could be the one a lost exchange made."""


class RecoveryUnconfirmed(RecoveryAmbiguous):
    """A reinstall whose answer was lost: nothing at Trackstar says whether this code
    was used (the connection keeps its id and token either way)."""


REINSTALL_UNCONFIRMED = (
    "Reconnecting could not be confirmed: Trackstar did not answer in time. Please reconnect again."
)


def _claimed(connection_ids: list[str]) -> set[str]:
    """Those of these Trackstar connections that a row of ours already answers for."""
    return (
        set(
            Connection.objects.filter(trackstar_connection_id__in=connection_ids).values_list(
                "trackstar_connection_id", flat=True
            )
        )
        | set(
            UnassignedConnection.objects.filter(
                trackstar_connection_id__in=connection_ids
            ).values_list("trackstar_connection_id", flat=True)
        )
        | set(
            AuthCodeExchange.objects.filter(refused_connection_id__in=connection_ids).values_list(
                "refused_connection_id", flat=True
            )
        )
    )


def _recovery_candidate(exchange: AuthCodeExchange) -> str | None:
    """The connection Trackstar made for this exchange, when Trackstar can tie one to it.

    A made-up code retried after a 503 also gets a 4xx: only a connection that is this
    customer's at Trackstar, of this integration, made after its link token was handed
    out, and claimed by no row of ours can be its. Two such, or one while another new
    connect of the customer is still pending (it may be that one's): RecoveryAmbiguous
    (left to the reconcile job and staff; nobody guesses which is whose)."""
    if exchange.reinstall_connection_id is not None:
        # A reinstall keeps the connection's id and token (API.md §3), and nothing at
        # Trackstar says whether this code was the one used: a healthy target proves
        # nothing (a made-up code after a 503 would "succeed" and spend a reconnect link).
        # Failing costs nothing: our row keeps its id and token; the link gets its use back.
        raise RecoveryUnconfirmed(REINSTALL_UNCONFIRMED)
    customer_id = exchange.customer.public_id
    remote = [
        c
        for c in trackstar_client().list_connections(customer_id=customer_id)
        if isinstance(c.get("connection_id"), str)
        and c.get("integration_name") == exchange.integration_name
    ]
    claimed = _claimed([c["connection_id"] for c in remote])
    # Link makes the connection when the visitor finishes, which may be well before the
    # row exists (connect.js retries store-token for a minute or two): the link token's
    # grant is the earliest the code can be from.
    grant = exchange.link_token
    made_after = (grant.created_at if grant else exchange.created_at) - RECOVERY_CLOCK_GRACE
    candidates = []
    for c in remote:
        created = parse_datetime(c.get("created_at"))
        if c["connection_id"] in claimed or created is None or created < made_after:
            continue
        candidates.append(c["connection_id"])
    if len(candidates) > 1:
        raise RecoveryAmbiguous(
            "Connecting could not be finished: Trackstar has more than one new connection "
            "that could be this one. Our team will check them; please do not connect again."
        )
    others_pending = (
        AuthCodeExchange.objects.filter(
            customer_id=exchange.customer_id,
            status=AuthCodeExchange.Status.PENDING,
            reinstall_connection__isnull=True,  # a reinstall makes no new connection
        )
        .exclude(pk=exchange.pk)
        .exists()
    )
    if candidates and others_pending:
        # Another connect of this customer has not stored its connection yet: the one
        # found may be its (its answer, or its own recovery, is still to come).
        raise RecoveryAmbiguous(
            "Connecting could not be finished: another connect of this account is still "
            "in progress, and Trackstar's new connection could be either's. Our team will "
            "check it; please do not connect again."
        )
    return candidates[0] if candidates else None


def _recover_from_trackstar(exchange: AuthCodeExchange) -> bool:
    """A previous attempt reached Trackstar but died before saving (the code is spent now).
    Find the connection Trackstar made for this exchange, so it is not lost. Trackstar
    does not return access tokens here: the row waits for a reconnect (which keeps id and
    token) or for the connection.created webhook, which carries the token."""
    try:
        candidate = _recovery_candidate(exchange)
    except (TrackstarUnavailable, TrackstarRateLimited):
        raise
    except TrackstarError:
        logger.warning("Could not list Trackstar connections for recovery", exc_info=True)
        return False
    if candidate is None:
        return False
    with transaction.atomic():
        locked = AuthCodeExchange.objects.select_for_update().get(pk=exchange.pk)
        if locked.status != AuthCodeExchange.Status.PENDING:
            return True
        connection, created = Connection.objects.get_or_create(
            trackstar_connection_id=candidate,
            defaults={
                "customer": exchange.customer,
                "integration_name": exchange.integration_name,
                "label": connection_default_label(
                    customer=exchange.customer, integration_name=exchange.integration_name
                ),
                "source": exchange.source,
                "created_by": exchange.created_by,
                # Pending for this transaction only: just below it is active (the webhook
                # brought the token) or needs a reconnect.
                "status": Connection.Status.PENDING,
            },
        )
        if connection.customer_id != exchange.customer_id:
            return False  # stored for another customer meanwhile: not this exchange's
        if created:
            _audit_connected(connection, exchange, reconnected=False, recovered=True)
        _end(locked, status=AuthCodeExchange.Status.SUCCEEDED, connection=connection)
        if not connection.access_token:
            _token_from_webhook_or_reconnect(connection)
    logger.warning(
        "Recovered connection %s from Trackstar after a lost exchange",
        connection.trackstar_connection_id,
        extra={"exchange_id": exchange.pk},
    )
    return True


TOKEN_MISSING_REASON = (
    "The connection was made, but its access token did not reach us. Reconnect to finish."
)


def _token_from_webhook_or_reconnect(connection: Connection) -> None:
    """A recovered connection has no token yet. The connection.created webhook carries it
    and may have come first, set aside for want of a connection: use it now. Else the
    customer must reconnect (Trackstar keeps the id and gives the token again, API.md §3)
    and is told so like for any needs_reconnect: the page says it, and the customer's
    contact gets the reconnect email, once per incident. A connection.created arriving
    later still finishes it (webhooks._adopt_token)."""
    event = (
        WebhookEvent.objects.filter(
            event_type="connection.created",
            trackstar_connection_id=connection.trackstar_connection_id,
        )
        .exclude(access_token="")
        .order_by("-received_at")
        .first()
    )
    if event is None:
        connection_mark_needs_reconnect(
            connection_id=connection.pk,
            reason=TOKEN_MISSING_REASON,
            cause=Connection.ReconnectCause.TOKEN_MISSING,
        )
        connection.refresh_from_db()
        return
    connection.access_token = event.access_token
    connection.status = Connection.Status.ACTIVE
    connection.last_error = ""
    connection.reconnect_cause = ""
    connection.connected_at = timezone.now()
    connection.save()
    transaction.on_commit(lambda: sync_schedule_initial(connection=connection), robust=True)
