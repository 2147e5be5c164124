"""A customer connects a WMS in the portal: real browser, web server, worker and sandbox."""

import json

import pytest
from playwright.sync_api import expect

from config.celery_app import app as celery_app
from connections.link import exchanges as exchange_service
from connections.models import AuthCodeExchange, Connection
from tests.e2e.conftest import connect_in_modal, connected_through_exchange, login, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_customer_connects_a_wms_and_sees_itconnected_through_exchange(
    page, live_server, live_trackstar, acme
):
    login(page, live_server, "acme")
    expect(page.get_by_role("heading", name="Warehouse connections")).to_be_visible()

    page.get_by_role("button", name="Connect your WMS").click()
    connect_in_modal(page)

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=30_000)
    row = page.locator("#connections-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ShipBob")
    # Trackstar imports the history, the worker reads it, and the row says so by itself.
    expect(row.locator(".last-sync")).not_to_have_text("Not yet", timeout=40_000)
    expect(row).not_to_contain_text("Waiting for Trackstar", timeout=40_000)
    expect(row).to_contain_text("Connected", timeout=40_000)
    connection = Connection.objects.get()
    assert connection.customer == acme
    assert connection.source == Connection.Source.PORTAL
    remote = live_trackstar.connection(connection.trackstar_connection_id)
    assert connection.access_token == remote["access_token"]


def test_a_busy_store_token_is_tried_again_and_the_auth_code_is_not_lost(
    page, live_server, live_trackstar, acme
):
    """A 429 from our per-user limit (or a 503) after Link succeeded: the page keeps the
    one-time code, waits Retry-After and sends it again, instead of showing an error."""
    refused = []

    def busy_once(route):
        if not refused:
            refused.append(route.request.post_data)
            route.fulfill(
                status=429,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body='{"error": "Too many attempts; try again in a moment."}',
            )
        else:
            route.continue_()

    page.route("**/portal/store-token", busy_once)
    login(page, live_server, "acme")
    page.get_by_role("button", name="Connect your WMS").click()
    connect_in_modal(page)

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=30_000)
    assert len(refused) == 1
    assert Connection.objects.get().customer == acme


def test_wrong_credentials_show_the_error_and_create_nothing(
    page, live_server, live_trackstar, acme
):
    login(page, live_server, "acme")
    page.get_by_role("button", name="Connect your WMS").click()

    connect_in_modal(page, api_key="wrong")

    alert = page.get_by_role("dialog").get_by_role("alert")
    expect(alert).to_contain_text("rejected these credentials")
    assert AuthCodeExchange.objects.count() == 0
    assert Connection.objects.count() == 0


def test_reconnect_keeps_the_connection_id(page, live_server, live_trackstar, acme):
    login(page, live_server, "acme")
    page.get_by_role("button", name="Connect your WMS").click()
    connect_in_modal(page)
    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=30_000)
    connection = Connection.objects.get()
    live_trackstar.break_connection(connection.trackstar_connection_id)
    Connection.objects.filter(pk=connection.pk).update(
        status=Connection.Status.NEEDS_RECONNECT,
        last_error="ShipBob stopped accepting the credentials.",
    )

    page.reload()
    row = page.locator("#connections-table tbody tr")
    expect(row).to_contain_text("Needs reconnect")
    expect(row).to_contain_text("Reconnect to resume syncing.")
    row.get_by_role("button", name="Reconnect").click()
    # A reinstall link token goes straight to that integration's form.
    connect_in_modal(page, api_key="sk_live_rotated", pick=False)

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=30_000)
    expect(row).to_have_attribute("data-status", "active")  # its first sync may still run
    connection.refresh_from_db()
    assert Connection.objects.count() == 1
    assert connection.status == Connection.Status.ACTIVE
    assert live_trackstar.connection(connection.trackstar_connection_id)["broken"] is False


def _link_token(client) -> str:
    response = client.post("/portal/get-link-token", "{}", content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()["link_token"]


def _store_token(client, auth_code, link_token=None):
    body = {
        "auth_code": auth_code,
        "integration_name": "shipbob",
        "link_token": link_token or _link_token(client),
    }
    return client.post("/portal/store-token", json.dumps(body), content_type="text/plain")


def _auth_code(sandbox, client):
    """Link opened with a token from our get-link-token: (auth code, that link token)."""
    link_token = _link_token(client)
    return sandbox.authorize(link_token, "shipbob", {"api_key": "sk_1"}), link_token


def test_an_auth_code_sent_while_the_broker_is_down_is_exchanged_later(
    client, live_trackstar, acme, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    client.force_login(acme.memberships.get().user)
    real_broker = celery_app.conf.broker_url
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    celery_app._after_fork()  # drop pooled connections to the real broker

    response = _store_token(client, *_auth_code(live_trackstar, client))

    assert response.status_code == 202
    exchange = AuthCodeExchange.objects.get()
    assert exchange.status == AuthCodeExchange.Status.PENDING
    # The broker comes back; a minute later the beat sweep finds the exchange.
    monkeypatch.setattr(celery_app.conf, "broker_url", real_broker)
    celery_app._after_fork()
    AuthCodeExchange.objects.filter(pk=exchange.pk).update(
        updated_at=timezone.now() - timedelta(minutes=2)
    )
    assert exchange_service.exchanges_sweep() == 1

    wait_for(
        lambda: AuthCodeExchange.objects.get().status == "succeeded",
        message="the worker to exchange the code",
    )
    assert Connection.objects.count() == 1


def test_double_submit_is_one_exchange_and_one_connection(client, live_trackstar, acme):
    client.force_login(acme.memberships.get().user)
    auth_code, link_token = _auth_code(live_trackstar, client)

    first = _store_token(client, auth_code, link_token)
    second = _store_token(client, auth_code, link_token)

    assert first.json()["exchange_id"] == second.json()["exchange_id"]
    wait_for(
        lambda: AuthCodeExchange.objects.get().status == "succeeded",
        message="the worker to exchange the code",
    )
    assert Connection.objects.count() == 1
    status = client.get(first.json()["status_url"]).json()
    assert status["status"] == "succeeded"
    assert status["connection"]["integration_name"] == "shipbob"


def test_a_failed_exchange_shows_its_reason(client, live_trackstar, acme):
    client.force_login(acme.memberships.get().user)

    response = _store_token(client, "ac_made_up")

    wait_for(
        lambda: AuthCodeExchange.objects.get().status == "failed",
        message="the worker to fail the exchange",
    )
    status = client.get(response.json()["status_url"]).json()
    assert status["error"].startswith("Trackstar refused the connection")
    assert Connection.objects.count() == 0


def test_reconnecting_two_connections_reinstalls_each_its_own(
    page, live_server, live_trackstar, acme
):
    """The sandbox's Link reuses an instance's first link token on every later open (the
    real script may too): with one instance for the whole page, the second reconnect would
    reinstall the first connection again."""
    connections = [
        connected_through_exchange(live_trackstar, acme, key) for key in ("sk_first", "sk_second")
    ]
    for connection in connections:
        live_trackstar.break_connection(connection.trackstar_connection_id)
    Connection.objects.update(
        status=Connection.Status.NEEDS_RECONNECT,
        last_error="ShipBob stopped accepting the credentials.",
    )

    login(page, live_server, "acme")
    expect(page.locator("#connections-table tbody tr")).to_have_count(2)
    for connection in connections:
        row = page.locator(f'#connections-table tbody tr[data-connection-id="{connection.pk}"]')
        expect(row).to_contain_text("Needs reconnect")
        row.get_by_role("button", name="Reconnect").click()
        # A reinstall link token goes straight to that connection's form.
        connect_in_modal(page, api_key=f"sk_rotated_{connection.pk}", pick=False)
        # Each says which of the two it was: "ShipBob", then "ShipBob 2".
        expect(page.locator("#connect-status")).to_have_text(
            f"Connected: {connection.label}.", timeout=30_000
        )
        expect(row).to_have_attribute("data-status", "active")  # its first sync may still run

        exchange = AuthCodeExchange.objects.get(reinstall_connection=connection)
        assert exchange.status == AuthCodeExchange.Status.SUCCEEDED
        assert exchange.connection_id == connection.pk
        assert live_trackstar.connection(connection.trackstar_connection_id)["broken"] is False

    assert sorted(Connection.objects.values_list("label", flat=True)) == ["ShipBob", "ShipBob 2"]
    assert not AuthCodeExchange.objects.filter(status=AuthCodeExchange.Status.FAILED).exists()
