"""Separate queues, as production runs them: a customer's exchange does not wait behind
syncs. Real worker processes on Redis and PostgreSQL, the sandbox over HTTP."""

import time

import pytest

from connections.link import exchanges as exchange_service
from connections.models import AuthCodeExchange, Connection, ResourceSync, SyncRun
from connections.sync.tasks import sync_resource as sync_resource_task
from tests.builders import make_connection, make_customer

pytestmark = pytest.mark.django_db(transaction=True)

BIG_SYNC_ORDERS = 60_000  # 60 pages: a minute each at the sync worker's 1 GET/s


def _wait_for(condition, *, timeout: float, what: str, workers):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    runs = list(SyncRun.objects.values("connection_id", "resource", "status", "pages"))
    exchanges = list(AuthCodeExchange.objects.values("status", "last_error"))
    logs = "\n".join(worker.log() for worker in workers)
    pytest.fail(f"Timed out waiting for {what}; runs: {runs}; exchanges: {exchanges}\n{logs}")


def _big_connection(sandbox, customer) -> Connection:
    made = sandbox.connect("sandbox", {"api_key": "k", "username": "u", "password": "p"})
    sandbox.dataset(made["connection_id"], orders=BIG_SYNC_ORDERS)
    connection = make_connection(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        integration_name=made["integration_name"],
        access_token=made["access_token"],
        available_actions=made["available_actions"],
    )
    ResourceSync.objects.create(connection=connection, resource="orders", history_ready=True)
    return connection


def test_an_exchange_completes_while_both_sync_slots_are_busy(trackstar, celery_worker_factory):
    trackstar.configure(historical_sync_delay=0)
    # As the README's production section runs them: one worker for what a person waits
    # on, one for syncs. Its two slots are held for a minute by two big initial syncs
    # (a slow token bucket: 1 page/s), far longer than the exchange needs.
    interactive = celery_worker_factory(queues=["interactive", "webhooks", "default"])
    syncs = celery_worker_factory(
        queues=["sync"], concurrency=2, TRACKSTAR_GET_RATE="1", TRACKSTAR_GET_BURST="1"
    )
    workers = [interactive, syncs]
    celery_worker_factory.route_here()  # what this process enqueues goes to those workers

    busy = [_big_connection(trackstar, make_customer()) for _ in range(2)]
    for connection in busy:
        sync_resource_task.delay(connection.pk, "orders", "initial", False)
    _wait_for(
        lambda: (
            SyncRun.objects.filter(
                connection__in=busy, status=SyncRun.Status.RUNNING, pages__gte=1
            ).count()
            == 2
        ),
        timeout=30,
        what="both big syncs to be running",
        workers=workers,
    )

    # A new customer connects: store-token's service writes the exchange and enqueues it.
    newcomer = make_customer(name="Newcomer Goods")
    link_token = exchange_service.link_token_create(customer=newcomer)
    exchange = exchange_service.exchange_submit(
        customer=newcomer,
        auth_code=trackstar.authorize(link_token, "shipbob", {"api_key": "sk_newcomer"}),
        link_token=link_token,
        integration_name="shipbob",
        source=Connection.Source.PORTAL,
    ).exchange

    def connected():
        done = AuthCodeExchange.objects.select_related("connection").get(pk=exchange.pk)
        return done.connection and done.connection.status == Connection.Status.ACTIVE

    # Generous: 0.3 to 1 s on a quiet machine; behind the syncs it would take a minute.
    _wait_for(connected, timeout=20, what="the new customer's connection", workers=workers)

    # The syncs held both slots the whole time: neither finished, nor gave its slot up.
    assert SyncRun.objects.filter(connection__in=busy, status=SyncRun.Status.RUNNING).count() == 2
    assert AuthCodeExchange.objects.get(pk=exchange.pk).status == "succeeded"
