"""The exchange service against the sandbox over HTTP (no worker: the service itself)."""

import pytest

from audit.models import AuditEntry
from connections import services
from connections.link import exchanges as exchange_service
from connections.link import magic_links as magic_link_service
from connections.models import AuthCodeExchange, Connection, MagicLink
from connections.trackstar import TrackstarUnavailable
from connections.webhooks import services as webhook_service
from tests.builders import make_link_token


def submit(
    sandbox,
    customer,
    *,
    integration="shipbob",
    credentials=None,
    reinstall=None,
    source=Connection.Source.PORTAL,
):
    # Through our get-link-token's service, as the page gets it: the token is recorded.
    link_token = exchange_service.link_token_create(customer=customer, reinstall=reinstall)
    auth_code = sandbox.authorize(link_token, integration, credentials or {"api_key": "sk_1"})
    return exchange_service.exchange_submit(
        customer=customer,
        auth_code=auth_code,
        link_token=link_token,
        integration_name=integration,
        source=source,
        reinstall_connection=reinstall,
    ).exchange


def test_exchange_stores_an_active_connection_with_its_token(trackstar, customer):
    exchange = submit(trackstar, customer)

    exchange_service.exchange_process(exchange_id=exchange.pk)

    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.SUCCEEDED
    assert exchange.auth_code == ""  # a spent code is not kept
    connection = exchange.connection
    assert connection.customer == customer
    assert connection.status == Connection.Status.ACTIVE
    assert connection.source == Connection.Source.PORTAL
    assert connection.integration_name == "shipbob"
    remote = trackstar.connection(connection.trackstar_connection_id)
    assert connection.access_token == remote["access_token"]
    assert remote["customer_id"] == customer.public_id
    assert "get_orders" in connection.available_actions


def test_processing_twice_is_one_connection(trackstar, customer):
    exchange = submit(trackstar, customer)

    exchange_service.exchange_process(exchange_id=exchange.pk)
    exchange_service.exchange_process(exchange_id=exchange.pk)

    assert Connection.objects.count() == 1


def test_reinstall_keeps_the_connection_id_and_row(trackstar, customer):
    first = submit(trackstar, customer)
    exchange_service.exchange_process(exchange_id=first.pk)
    connection = Connection.objects.get()
    trackstar.break_connection(connection.trackstar_connection_id)
    Connection.objects.filter(pk=connection.pk).update(
        status=Connection.Status.NEEDS_RECONNECT, last_error="Credentials expired"
    )

    emailed = magic_link_service.magic_link_issue(
        customer=customer, created_by=None, reinstall_connection=connection
    ).link

    again = submit(trackstar, customer, reinstall=connection)
    exchange_service.exchange_process(exchange_id=again.pk)

    again.refresh_from_db()
    assert again.connection_id == connection.pk
    connection.refresh_from_db()
    assert Connection.objects.count() == 1
    assert connection.status == Connection.Status.ACTIVE
    assert connection.last_error == ""
    # The reconnect link emailed when it broke has nothing left to do.
    emailed.refresh_from_db()
    assert emailed.revoked_at is not None


def test_a_reinstall_that_lands_on_another_connection_fails_with_a_reason(trackstar, customer):
    first = submit(trackstar, customer)
    exchange_service.exchange_process(exchange_id=first.pk)
    second = submit(trackstar, customer)
    exchange_service.exchange_process(exchange_id=second.pk)
    a, b = (AuthCodeExchange.objects.get(pk=e.pk).connection for e in (first, second))
    Connection.objects.update(status=Connection.Status.NEEDS_RECONNECT, last_error="Expired")
    # The page asked to reconnect B, but the code came from a link token that reinstalled A
    # (as a Link instance that reused the previous connection's token would).
    link_token_a = exchange_service.link_token_create(customer=customer, reinstall=a)
    auth_code = trackstar.authorize(link_token_a, "shipbob", {"api_key": "sk_2"})
    exchange = exchange_service.exchange_submit(
        customer=customer,
        auth_code=auth_code,
        link_token=exchange_service.link_token_create(customer=customer, reinstall=b),
        integration_name="shipbob",
        source=Connection.Source.PORTAL,
        reinstall_connection=b,
    ).exchange

    exchange_service.exchange_process(exchange_id=exchange.pk)

    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert exchange.connection is None
    assert exchange.last_error.startswith(
        "Trackstar reconnected a different connection than the one you chose"
    )
    for connection in (a, b):  # neither row is touched
        connection.refresh_from_db()
        assert connection.status == Connection.Status.NEEDS_RECONNECT
        assert connection.last_error == "Expired"
    # A is this customer's live connection: refused, but never deleted at Trackstar.
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.KEPT
    assert trackstar.connection(a.trackstar_connection_id)["connection_id"]


def test_a_refused_code_fails_with_a_reason(trackstar, customer):
    exchange = exchange_service.exchange_submit(
        customer=customer,
        auth_code="not-a-real-code",
        link_token=make_link_token(customer=customer),
        integration_name="shipbob",
        source=Connection.Source.PORTAL,
    ).exchange

    exchange_service.exchange_process(exchange_id=exchange.pk)

    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert exchange.last_error.startswith("Trackstar refused the connection")
    assert Connection.objects.count() == 0


def test_trackstar_outage_leaves_the_exchange_pending_for_a_retry(trackstar, customer):
    exchange = submit(trackstar, customer)
    trackstar.set_faults(rate=1.0, statuses=[503], paths="/link/exchange")

    with pytest.raises(TrackstarUnavailable):
        exchange_service.exchange_process(exchange_id=exchange.pk)

    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.PENDING
    assert exchange.claimed_until is None  # the retry may take it at once
    trackstar.clear_faults()
    exchange_service.exchange_process(exchange_id=exchange.pk)
    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.SUCCEEDED


def test_a_connection_made_before_the_worker_died_is_recovered(trackstar, customer):
    exchange = submit(trackstar, customer)
    # A first attempt reached Trackstar (the code is spent) and the worker died before
    # its commit: all that is left is the attempt counted in the database.
    trackstar.exchange(
        AuthCodeExchange.objects.get(pk=exchange.pk).auth_code, customer_id=customer.public_id
    )
    AuthCodeExchange.objects.filter(pk=exchange.pk).update(attempts=1)

    exchange_service.exchange_process(exchange_id=exchange.pk)

    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.SUCCEEDED
    connection = Connection.objects.get()
    assert connection.customer == customer
    assert connection.status == Connection.Status.NEEDS_RECONNECT
    assert "Reconnect" in connection.last_error


def _spend_then_retry(trackstar, customer, exchange) -> None:
    """A first attempt reached Trackstar (the code is spent) and its worker died before the
    commit; the retry (the redelivered task, or the sweep's) then runs the service."""
    trackstar.exchange(
        AuthCodeExchange.objects.get(pk=exchange.pk).auth_code, customer_id=customer.public_id
    )
    AuthCodeExchange.objects.filter(pk=exchange.pk).update(attempts=1)
    exchange_service.exchange_process(exchange_id=exchange.pk)


def test_a_recovery_without_its_token_emails_the_customer_a_reconnect_link_once(
    trackstar, customer, mailoutbox, django_capture_on_commit_callbacks
):
    exchange = submit(trackstar, customer)

    with django_capture_on_commit_callbacks(execute=True):
        _spend_then_retry(trackstar, customer, exchange)

    connection = Connection.objects.get()
    assert connection.status == Connection.Status.NEEDS_RECONNECT
    assert connection.reconnect_cause == Connection.ReconnectCause.TOKEN_MISSING
    assert connection.reconnect_notified_at is not None
    assert [m.to for m in mailoutbox] == [[customer.contact_email]]
    assert "almost done" in mailoutbox[0].body
    link = MagicLink.objects.get(reinstall_connection=connection)
    assert link.emailed_to == customer.contact_email and link.is_usable
    assert AuditEntry.objects.filter(
        action="connection.needs_reconnect", connection=connection
    ).exists()
    # The same incident, told again (the health poll, a second recovery): no second email.
    with django_capture_on_commit_callbacks(execute=True):
        services.connection_mark_needs_reconnect(
            connection_id=connection.pk,
            reason="again",
            cause=Connection.ReconnectCause.TOKEN_MISSING,
        )
    assert len(mailoutbox) == 1


def test_a_recovery_takes_the_token_of_a_connection_created_that_came_first(
    trackstar, customer, mailoutbox, django_capture_on_commit_callbacks
):
    exchange = submit(trackstar, customer)
    code = AuthCodeExchange.objects.get(pk=exchange.pk).auth_code
    made = trackstar.exchange(code, customer_id=customer.public_id)
    # Its connection.created was stored and set aside: our exchange was still pending.
    webhook_service.webhook_receive(
        svix_id="msg_created",
        payload={
            "connection_id": made["connection_id"],
            "event_type": "connection.created",
            "data": {"access_token": made["access_token"]},
        },
    )
    AuthCodeExchange.objects.filter(pk=exchange.pk).update(attempts=1)

    with django_capture_on_commit_callbacks(execute=True):
        exchange_service.exchange_process(exchange_id=exchange.pk)

    connection = Connection.objects.get()
    assert connection.status == Connection.Status.ACTIVE
    assert connection.access_token == made["access_token"]
    assert connection.reconnect_cause == ""
    assert mailoutbox == []


def test_sweep_enqueues_only_stale_pending_exchanges(trackstar, customer, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    stale = submit(trackstar, customer)
    submit(  # a fresh one: pending too, and not stale
        trackstar, customer, integration="shiphero", credentials={"username": "u", "password": "p"}
    )
    AuthCodeExchange.objects.filter(pk=stale.pk).update(
        updated_at=timezone.now() - timedelta(minutes=5)
    )
    enqueued = []
    monkeypatch.setattr(
        exchange_service,
        "exchange_enqueue",
        lambda *, exchange_id: enqueued.append(exchange_id) or True,
    )

    assert exchange_service.exchanges_sweep() == 1
    assert enqueued == [stale.pk]


def test_the_sweep_leaves_a_scheduled_retry_alone_and_gives_up_in_the_end(
    trackstar, customer, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    waiting = submit(trackstar, customer)
    hopeless = submit(
        trackstar, customer, integration="shiphero", credentials={"username": "u", "password": "p"}
    )
    long_ago = timezone.now() - timedelta(minutes=10)
    AuthCodeExchange.objects.update(updated_at=long_ago)
    exchange_service.exchange_retry_scheduled(exchange_id=waiting.pk, countdown=120)
    AuthCodeExchange.objects.filter(pk=hopeless.pk).update(attempts=99)
    enqueued = []
    monkeypatch.setattr(
        exchange_service,
        "exchange_enqueue",
        lambda *, exchange_id: enqueued.append(exchange_id) or True,
    )

    assert exchange_service.exchanges_sweep() == 0

    assert enqueued == []
    hopeless.refresh_from_db()
    assert hopeless.status == AuthCodeExchange.Status.FAILED
