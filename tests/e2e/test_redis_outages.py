"""Redis stopped, hung or emptied under a real browser, web server, worker and sandbox: the
pages and store-token carry on, /healthz says so, and the database brings everything back.
Each test has a Redis server of its own (tests/plugins/redis_server.py)."""

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from playwright.sync_api import expect

from connections.link import exchanges as exchange_service
from connections.link.tasks import exchanges_sweep as exchanges_sweep_task
from connections.models import AuthCodeExchange, Connection, Order, WebhookEvent
from connections.webhooks import services as webhook_service
from connections.webhooks.tasks import webhooks_sweep as webhooks_sweep_task
from tests.builders import make_connection, make_link_token
from tests.e2e.conftest import login, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_here(trackstar):
    yield trackstar
    trackstar.reset()  # no webhook outlives the test


def healthz(live_server) -> tuple[int, dict]:
    response = requests.get(f"{live_server.url}/healthz", timeout=30)
    return response.status_code, response.json()


def backdate_pending_work(seconds: int) -> None:
    """Time passes for the sweeps (beat runs them every minute): the rows were written,
    and handed to the broker, `seconds` ago."""
    past = timezone.now() - timedelta(seconds=seconds)
    AuthCodeExchange.objects.filter(status=AuthCodeExchange.Status.PENDING).update(
        created_at=past, updated_at=past
    )
    WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).update(
        received_at=past, enqueued_at=past
    )


def test_redis_stopped_during_a_portal_connect(
    page, live_server, sandbox_here, acme, private_redis, private_redis_worker
):
    private_redis_worker()
    login(page, live_server, "acme")
    page.get_by_role("button", name="Connect your WMS").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="ShipBob").click()
    dialog.get_by_label("API key").fill("sk_live_123")  # Link is open: its link token is ours

    private_redis.stop()
    with page.expect_response("**/portal/store-token") as stored:
        dialog.get_by_role("button", name="Connect").click()

    # The auth code is kept (the outbox row) and the customer told it is on its way.
    assert stored.value.status == 202
    expect(page.locator("#connect-status")).to_contain_text("Connecting ShipBob")
    exchange = AuthCodeExchange.objects.get()
    assert exchange.status == AuthCodeExchange.Status.PENDING
    # Every page still works; /healthz says what is down.
    assert page.request.get(f"{live_server.url}/portal/").status == 200
    assert page.request.get(f"{live_server.url}/portal/orders/").status == 200
    assert requests.get(f"{live_server.url}/portal/login/", timeout=30).status_code == 200
    assert requests.get(f"{live_server.url}/connect/guess/", timeout=30).status_code == 404
    status, body = healthz(live_server)
    assert status == 503
    assert body == {"status": "unavailable", "database": "ok", "broker": "down", "cache": "down"}

    private_redis.start()  # back, and empty: the exchange's message never reached it
    assert healthz(live_server) == (
        200,
        {"status": "ok", "database": "ok", "broker": "ok", "cache": "ok"},
    )
    # A minute later beat's sweep finds the exchange in the database.
    backdate_pending_work(90)
    exchanges_sweep_task.delay()

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=30_000)
    connection = Connection.objects.get()
    assert connection.status == Connection.Status.ACTIVE and connection.access_token
    # Active; its first sync may still be running.
    row = page.locator("#connections-table tbody tr")
    expect(row).to_have_attribute("data-status", "active")


@pytest.mark.django_db  # not transactional: store-token's publish runs when captured
def test_store_token_does_not_wait_on_a_hung_redis(
    client, acme, private_redis, django_capture_on_commit_callbacks, monkeypatch
):
    """A hung Redis (it accepts connections, answers nothing) holds a publish for its
    socket timeouts (5 s, more with the publish retry): once per REDIS_RETRY_SECONDS in a
    process, not on every store-token. Counted: the publishes tried, and the commands
    sent to the hung Redis."""
    from redis.connection import AbstractConnection

    from config.celery_app import app as celery_app
    from connections import degrade

    user = acme.memberships.get().user
    client.force_login(user)
    publishes, commands = [], []
    send_task, send_command = celery_app.send_task, AbstractConnection.send_packed_command

    def counting_send_task(name, *args, **kwargs):
        publishes.append(name)
        return send_task(name, *args, **kwargs)

    def counting_send_command(self, *args, **kwargs):
        if self.port == private_redis.port:
            commands.append(args)
        return send_command(self, *args, **kwargs)

    monkeypatch.setattr(celery_app, "send_task", counting_send_task)
    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting_send_command)
    private_redis.pause()

    def store_token(auth_code: str):
        body = {
            "auth_code": auth_code,
            "integration_name": "shipbob",
            "link_token": make_link_token(customer=acme, user=user),
        }
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/portal/store-token", body, content_type="application/json")

    first = store_token("ac_first")  # pays the timeouts
    asked_first = (len(publishes), len(commands))
    started = time.monotonic()
    second = store_token("ac_second")
    second_took = time.monotonic() - started

    assert (first.status_code, second.status_code) == (202, 202)
    assert asked_first[0] == 1 and asked_first[1] >= 1  # the first tried, and waited
    assert (len(publishes), len(commands)) == asked_first  # the second asked Redis nothing
    assert degrade.redis_is_down(f"broker:{private_redis.url}")
    assert second_took < 4  # a smoke bound: one publish alone would hang for 5 s
    assert AuthCodeExchange.objects.filter(status=AuthCodeExchange.Status.PENDING).count() == 2


def test_redis_emptied_with_queued_work_completes_from_the_database(
    sandbox_here, acme, private_redis, private_redis_worker
):
    # Work handed to Redis while no worker runs: five webhook events, one exchange.
    connection = make_connection(customer=acme, trackstar_connection_id="conn_flushed")
    for n in range(5):
        webhook_service.webhook_receive(
            svix_id=f"msg_flushed_{n}",
            payload={
                "connection_id": connection.trackstar_connection_id,
                "event_type": "order.created",
                "data": {
                    "id": f"ord_{n}",
                    "order_number": f"#{1000 + n}",
                    "status": "open",
                    "created_date": "2026-11-01T10:00:00Z",
                    "updated_date": "2026-11-01T10:00:00Z",
                },
            },
        )
    link_token = exchange_service.link_token_create(customer=acme)
    exchange_service.exchange_submit(
        customer=acme,
        auth_code=sandbox_here.authorize(
            link_token, "shiphero", {"username": "u", "password": "p"}
        ),
        link_token=link_token,
        integration_name="shiphero",
        source=Connection.Source.PORTAL,
    )
    assert WebhookEvent.objects.filter(enqueued_at__isnull=False).count() == 5

    private_redis.flushall()  # Redis restarted empty: every message is gone
    private_redis_worker()
    # Beat's sweeps run every minute: 90 s after the flush they have run at least once
    # with every row older than its threshold.
    backdate_pending_work(90)
    webhooks_sweep_task.delay()
    exchanges_sweep_task.delay()

    wait_for(
        lambda: (
            not WebhookEvent.objects.exclude(status=WebhookEvent.Status.PROCESSED).exists()
            and not AuthCodeExchange.objects.filter(status=AuthCodeExchange.Status.PENDING).exists()
        ),
        timeout=30,
        message="the sweeps to bring back every event and the exchange",
    )
    assert Order.objects.filter(connection=connection).count() == 5
    assert AuthCodeExchange.objects.get().status == AuthCodeExchange.Status.SUCCEEDED
    assert Connection.objects.get(integration_name="shiphero").status == Connection.Status.ACTIVE


def test_redis_emptied_under_running_workers_still_gets_the_sweeps_sends_delivered(
    sandbox_here, acme, private_redis, private_redis_worker
):
    """FLUSHALL while workers run (not only a restart): the queue bindings go too, and the
    sweep in a worker that declared them before must still get its sends delivered."""
    from config.celery_app import app

    connection = make_connection(customer=acme, trackstar_connection_id="conn_flushed_live")

    def lost_event(n: int) -> WebhookEvent:
        webhook_service.webhook_receive(
            svix_id=f"msg_live_{n}",
            payload={
                "connection_id": connection.trackstar_connection_id,
                "event_type": "order.created",
                "data": {
                    "id": f"ord_live_{n}",
                    "order_number": f"#{2000 + n}",
                    "status": "open",
                    "created_date": "2026-11-01T10:00:00Z",
                    "updated_date": "2026-11-01T10:00:00Z",
                },
            },
        )
        return WebhookEvent.objects.get(svix_id=f"msg_live_{n}")

    # Stored before any worker runs, its message then lost: the worker's own sweep sends it
    # again, and that worker's producer has declared the queues.
    lost_event(0)
    private_redis.flushall()
    private_redis_worker()
    backdate_pending_work(90)
    webhooks_sweep_task.delay()
    wait_for(
        lambda: Order.objects.filter(connection=connection).count() == 1,
        timeout=30,
        message="the first sweep to bring the first event back",
    )

    # Redis emptied again, the worker still running: its producer remembers the queues.
    # The event's own message is lost with the bindings (this process declared before too).
    private_redis.flushall()
    lost_event(1)
    assert Order.objects.filter(connection=connection).count() == 1
    backdate_pending_work(90)
    app._after_fork()  # this process publishes afresh (and so declares); the worker does not
    webhooks_sweep_task.delay()

    wait_for(
        lambda: Order.objects.filter(connection=connection).count() == 2,
        timeout=30,
        message="the sweep, in a worker that declared before the flush, to bring it back",
    )
