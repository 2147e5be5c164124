"""The exchange task's own decisions when the database connection breaks under it, against
the sandbox over HTTP and a real PostgreSQL session ended by pg_terminate_backend."""

import pytest
from celery.exceptions import Retry

from connections.link import exchanges as exchange_service
from connections.link import tasks as exchange_tasks
from connections.models import AuthCodeExchange, Connection
from tests.celery_tasks import catch_retries, run_as_worker
from tests.db_faults import terminate_this_connection

from .test_exchange import submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def run_by_hand(monkeypatch):
    """This test is the worker: a session worker started by an earlier test must not take the
    exchange's message first (the row is committed in a transactional test)."""
    monkeypatch.setattr(exchange_service, "exchange_enqueue", lambda *, exchange_id: True)


@pytest.fixture
def retried(monkeypatch):
    return catch_retries(monkeypatch, exchange_tasks.exchange_process)


def run_task(exchange_id: int, retries: int = 0) -> None:
    run_as_worker(exchange_tasks.exchange_process, exchange_id, retries=retries)


def assert_connected_with_its_token(exchange: AuthCodeExchange, trackstar) -> None:
    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.SUCCEEDED
    connection = exchange.connection
    assert connection.status == Connection.Status.ACTIVE
    remote = trackstar.connection(connection.trackstar_connection_id)
    assert connection.access_token == remote["access_token"]


def test_a_database_lost_before_the_exchange_is_retried_in_seconds_with_its_code(
    trackstar, customer, retried
):
    exchange = submit(trackstar, customer)
    code = AuthCodeExchange.objects.get(pk=exchange.pk).auth_code
    terminate_this_connection()  # a failover while the worker waited for this task

    with pytest.raises(Retry):
        run_task(exchange.pk)

    assert retried[0] <= 2  # seconds: not the sweep's minute or two
    exchange.refresh_from_db()  # on a fresh connection
    assert exchange.status == AuthCodeExchange.Status.PENDING
    assert exchange.auth_code == code
    assert exchange.claimed_until is None
    run_task(exchange.pk)  # the retry
    assert_connected_with_its_token(exchange, trackstar)


def test_a_database_lost_while_trackstar_is_down_leaves_the_claim_free_for_the_retry(
    trackstar, customer, retried, monkeypatch
):
    exchange = submit(trackstar, customer)
    code = AuthCodeExchange.objects.get(pk=exchange.pk).auth_code
    trackstar.set_faults(rate=1.0, statuses=[503], paths="/link/exchange", count=1)
    real_client = exchange_service.trackstar_client

    class DatabaseLostDuringTheCall:
        def exchange_auth_code(self, **kwargs):
            # The attempt is claimed; the connection drops while Trackstar answers 503, so
            # recording the failure fails too.
            terminate_this_connection()
            return real_client().exchange_auth_code(**kwargs)

    monkeypatch.setattr(exchange_service, "trackstar_client", DatabaseLostDuringTheCall)
    with pytest.raises(Retry):
        run_task(exchange.pk)
    monkeypatch.setattr(exchange_service, "trackstar_client", real_client)

    assert retried[0] <= 2
    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.PENDING
    assert exchange.auth_code == code
    # Without this the retry would find its own attempt's claim and do nothing, and the
    # exchange would wait for the sweep.
    assert exchange.claimed_until is None
    run_task(exchange.pk, retries=1)
    assert_connected_with_its_token(exchange, trackstar)


def test_a_database_lost_after_trackstar_answered_keeps_the_token(
    trackstar, customer, retried, monkeypatch
):
    """The code is spent once Trackstar answers and the token is never shown again: a
    connection lost while saving it must not turn into "reconnect to finish"."""
    exchange = submit(trackstar, customer)
    monkeypatch.setattr(exchange_service, "COMPLETE_RETRY_DELAYS", (0.01, 0.01))
    real_complete = exchange_service._complete
    calls = []

    def complete_after_a_failover(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            terminate_this_connection()  # between Trackstar's answer and our save
        return real_complete(*args, **kwargs)

    monkeypatch.setattr(exchange_service, "_complete", complete_after_a_failover)
    run_task(exchange.pk)

    assert retried == []  # no task retry was needed: the save itself was tried again
    assert len(calls) == 2
    assert_connected_with_its_token(exchange, trackstar)


def test_the_exchange_lease_outlasts_an_attempt(settings):
    """A live attempt must not be taken for a dead one (a second exchange of the same code
    would fail and end in recovery), and the lease is what a dead worker's customer waits."""
    longest_attempt = sum(settings.TRACKSTAR_TIMEOUT) + sum(exchange_service.COMPLETE_RETRY_DELAYS)
    lease = exchange_service.EXCHANGE_LEASE.total_seconds()
    assert longest_attempt < lease <= 60
