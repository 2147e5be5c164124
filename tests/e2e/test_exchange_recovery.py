"""An exchange whose answer was lost after Trackstar made the connection: the portal says
"Almost there: reconnect to finish", and a reconnect or a late connection.created finishes
it. Real browser, web server, worker and sandbox.

The answer is lost for real: the worker reaches Trackstar through a proxy that passes the
first /link/exchange on, lets the sandbox make the connection, and drops the connection
instead of the answer (as a worker that died, or a network that broke, then). The worker's
retry finds the code spent and recovers the connection from Trackstar's list, without its
token. The sandbox sends its connection.created nowhere (no webhook URL), as when the
delivery is late or lost."""

import json
import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from playwright.sync_api import expect
from svix.webhooks import Webhook

from connections.models import AuthCodeExchange, Connection, MagicLink
from tests.e2e.conftest import connect_in_modal, login, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "#connect-status"


@pytest.fixture
def answer_losing_proxy(trackstar):
    """A proxy to the sandbox that loses the answer to the first POST /link/exchange (after
    the sandbox made the connection); its URL, for the worker's TRACKSTAR_BASE_URL."""
    lose = ["/link/exchange"]

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            skip = {"host", "content-length", "connection", "accept-encoding"}
            upstream = requests.request(
                self.command,
                trackstar.base_url + self.path,
                data=body,
                headers={k: v for k, v in self.headers.items() if k.lower() not in skip},
                timeout=30,
            )
            if self.command == "POST" and self.path in lose:
                lose.remove(self.path)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # made, and the answer lost
                return
            self.send_response(upstream.status_code)
            for key, value in upstream.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("content-length", str(len(upstream.content)))
            self.end_headers()
            self.wfile.write(upstream.content)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def connect_losing_the_answer(
    page, live_server, trackstar, acme, private_redis, private_redis_worker, answer_losing_proxy
):
    """connect() → the portal after a connect whose exchange was recovered without its
    token: the page says so, the connection waits for its token."""

    def connect() -> Connection:
        private_redis_worker(TRACKSTAR_BASE_URL=answer_losing_proxy)
        login(page, live_server, "acme")
        page.get_by_role("button", name="Connect your WMS").click()
        connect_in_modal(page)

        expect(page.locator(STATUS)).to_contain_text(
            "Almost there: reconnect to finish.", timeout=30_000
        )
        connection = Connection.objects.get()
        assert connection.status == Connection.Status.NEEDS_RECONNECT
        assert connection.access_token == ""
        assert AuthCodeExchange.objects.get().status == AuthCodeExchange.Status.SUCCEEDED
        return connection

    yield connect
    trackstar.reset()


def test_the_page_says_reconnect_to_finish_and_its_reconnect_finishes_it(
    page, trackstar, acme, connect_losing_the_answer
):
    recovered = connect_losing_the_answer()
    row = page.locator("#connections-table tbody tr")
    expect(row).to_contain_text("Needs reconnect")
    expect(page.locator(STATUS)).not_to_contain_text("Connected:")
    # Told like any needs_reconnect: the customer's contact was emailed a reconnect link.
    emailed = MagicLink.objects.get(reinstall_connection=recovered)
    assert emailed.emailed_to == acme.contact_email

    page.locator(STATUS).get_by_role("button", name="Reconnect").click()
    # A reinstall link token goes straight to that integration's form.
    connect_in_modal(page, pick=False)

    expect(page.locator(STATUS)).to_have_text("Connected: ShipBob.", timeout=30_000)
    expect(row).to_contain_text("Connected")
    recovered.refresh_from_db()
    assert Connection.objects.count() == 1  # the same connection, now with its token
    assert recovered.status == Connection.Status.ACTIVE
    assert (
        recovered.access_token
        == trackstar.connection(recovered.trackstar_connection_id)["access_token"]
    )


def test_a_late_connection_created_finishes_it_while_the_page_waits(
    page, live_server, trackstar, acme, connect_losing_the_answer
):
    recovered = connect_losing_the_answer()
    remote = trackstar.connection(recovered.trackstar_connection_id)
    at = datetime.now(UTC)
    body = json.dumps(
        {
            "connection_id": recovered.trackstar_connection_id,
            "integration_name": "shipbob",
            "integration_type": "general",
            "event_type": "connection.created",
            "data": {"created_date": at.isoformat(), "access_token": remote["access_token"]},
            "customer_id": acme.public_id,
        }
    )
    response = requests.post(
        f"{live_server.url}/webhooks/trackstar/",
        data=body,
        headers={
            "content-type": "application/json",
            "svix-id": "msg_late_created",
            "svix-timestamp": str(int(at.timestamp())),
            "svix-signature": Webhook(trackstar.webhook_secret).sign("msg_late_created", at, body),
        },
        timeout=30,
    )
    assert response.status_code == 200

    # The page was still following the exchange: it turns connected by itself.
    expect(page.locator(STATUS)).to_have_text("Connected: ShipBob.", timeout=30_000)
    expect(page.locator("#connections-table tbody tr")).to_contain_text("Connected")
    wait_for(
        lambda: Connection.objects.get().access_token == remote["access_token"],
        message="the token from connection.created",
    )
    assert not MagicLink.objects.get(reinstall_connection=recovered).is_usable
