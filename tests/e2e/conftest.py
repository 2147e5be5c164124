import socket
import time

import pytest
import requests

from config.celery_app import app as celery_app
from connections.link import exchanges as exchange_service
from connections.models import AuthCodeExchange, Connection
from tests.builders import PASSWORD, make_customer, make_user
from tests.plugins.worker import WorkerProcess


@pytest.fixture
def live_trackstar(transactional_db, trackstar, live_server, celery_worker_process):
    """Web (live server), a real worker process and the sandbox, wired together; the
    sandbox's webhooks go to this live server.

    A new connection sets off work that outlives the test: the sandbox's webhooks
    (historical-sync-completed, 1 s later) and the worker's initial syncs. Left running, they
    deadlock with the flush that empties the database after the test. So afterwards: stop
    the webhooks, pause syncing, and let the worker finish."""
    trackstar.configure(webhook_url=f"{live_server.url}/webhooks/trackstar/")
    yield trackstar
    try:
        trackstar.reset()  # drops pending deliveries and the webhook URL
    except requests.ConnectionError:  # a pooled keep-alive connection the sandbox closed
        trackstar.reset()
    Connection.objects.update(sync_paused=True)  # queued syncs now end at once
    _wait_for_idle_worker(celery_worker_process)


@pytest.fixture
def acme():
    """The portal customer of the browser tests, with its owner "acme" (password as the
    builders set it)."""
    customer = make_customer(name="Acme Outdoor")
    make_user(username="acme", customer=customer)
    return customer


def _worker_is_idle(name: str) -> bool:
    node = f"{name}@{socket.gethostname()}"
    inspect = celery_app.control.inspect(destination=[node], timeout=2.0, limit=1)
    for busy in (inspect.active, inspect.reserved, inspect.scheduled):
        if (busy() or {}).get(node, True):  # no reply counts as busy
            return False
    with celery_app.connection_for_read() as conn:  # tasks not yet handed to a worker
        redis = conn.default_channel.client
        return not any(redis.llen(queue.name) for queue in celery_app.conf.task_queues)


def _wait_for_idle_worker(worker: WorkerProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:  # twice in a row: nothing in flight
        quiet = quiet + 1 if _worker_is_idle(worker.name) else 0
        time.sleep(0.2)
    if quiet < 2:
        # Say so here: the database flush after the test would deadlock with its work.
        raise AssertionError(f"worker still busy after {timeout:.0f} s:\n{worker.log()}")


def login(page, live_server, username: str, *, url: str = "/portal/login/") -> None:
    page.goto(f"{live_server.url}{url}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    # Wait for the form's answer (a redirect in, or the page again): a test that goes on at
    # once (page.reload(), page.goto()) would otherwise race the login's own navigation.
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


def connect_in_modal(
    page, *, integration: str = "ShipBob", api_key: str = "sk_live_123", pick: bool = True
) -> None:
    dialog = page.get_by_role("dialog")
    if pick:
        dialog.get_by_role("button", name=integration).click()
    dialog.get_by_label("API key").fill(api_key)
    dialog.get_by_role("button", name="Connect").click()


def wait_for(predicate, *, timeout: float = 20.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {message}")


def connected_through_exchange(sandbox, customer, api_key: str = "sk_first") -> Connection:
    """A ShipBob connection made through the exchange service, as the worker makes it."""
    link_token = exchange_service.link_token_create(customer=customer)  # as get-link-token does
    exchange = exchange_service.exchange_submit(
        customer=customer,
        auth_code=sandbox.authorize(link_token, "shipbob", {"api_key": api_key}),
        link_token=link_token,
        integration_name="shipbob",
        source=Connection.Source.PORTAL,
    ).exchange
    # The live worker got the exchange too (submit enqueues it): whichever of the two takes
    # it first completes it, and the other finds it taken. Wait for the connection.
    exchange_service.exchange_process(exchange_id=exchange.pk)
    return wait_for(
        lambda: AuthCodeExchange.objects.get(pk=exchange.pk).connection,
        timeout=30,
        message=f"exchange {exchange.pk} to make its connection",
    )
