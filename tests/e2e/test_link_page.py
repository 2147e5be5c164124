"""static/portal/connect.js against a Link script that tells the page as little as the real
main.js promises (API.md §2): it loads when it likes, and each buttonId is its own instance.
A stub stands in for main.js and Dockside's JSON endpoints are answered in the browser, so
this checks what the page does with Link, not the exchange (test_portal.py does that).

wait_for_function gets functions, not expressions: Playwright evals an expression on every
poll, which the page's Content-Security-Policy (no 'unsafe-eval') refuses."""

import json

import pytest
from playwright.sync_api import expect

from connections.link import magic_links as magic_link_service
from tests.builders import make_connection, make_customer, make_user
from tests.e2e.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT_URL = "https://link.trackstar.test/main.js"

# Loads nothing by itself: the test says when each instance is loaded, by onLoad or only by
# state.isLoaded, and plays the modal's callbacks.
STUB_MAIN_JS = """
(function () {
  var calls = window.__link = {inits: [], opens: [], closes: []};
  window.Trackstar = {
    state: {isLoaded: false},
    init: function (config) {
      var key = "Trackstar" + (config.buttonId || "");
      calls.inits.push({key: key, options: Object.keys(config).sort(),
                        allow: config.integrationAllowList || null});
      if (!config.buttonId) return;  // connect.js always names its instance
      var instance = window[key] = window[key] || {
        state: {isLoaded: false},
        open: function () { calls.opens.push(key); },
        close: function () {},
      };
      instance.state.isLoaded = false;  // an init loads again
      instance.config = config;
    },
  };
  window.__load = function (key, how) {
    window[key].state.isLoaded = true;
    if (how !== "state-only") window[key].config.onLoad();
  };
  window.__token = function (key) { return window[key].config.getLinkToken(); };
  window.__succeed = function (key, authCode) {
    window[key].config.onSuccess(authCode, "shipbob", function () { calls.closes.push(key); });
  };
})();
"""


@pytest.fixture
def acme(settings):
    settings.TRACKSTAR_LINK_SCRIPT_URL = SCRIPT_URL
    customer = make_customer(name="Acme Outdoor")
    make_user(username="acme", customer=customer)
    return customer


class Backend:
    """Dockside's Link endpoints, answered in the browser; records what the page sent."""

    def __init__(self, page):
        self.link_token_bodies: list[dict] = []
        self.store_token_bodies: list[dict] = []
        page.route(
            SCRIPT_URL,
            lambda route: route.fulfill(body=STUB_MAIN_JS, content_type="text/javascript"),
        )
        # The live status (status.js) would fetch the table again when it sees a row the page
        # does not show yet, at a moment set by its 2 s poll and the machine's load: these
        # tests are about connect.js's own refreshes, so that poll stops at its first answer.
        page.route("**/connections/status.json", lambda route: route.fulfill(status=404))
        page.route("**/get-link-token", self._link_token)
        page.route("**/store-token", self._store_token)
        page.route(
            "**/exchanges/stubbed",
            lambda route: route.fulfill(
                json={
                    "status": "failed",
                    "error": "Stubbed exchange.",
                    "status_url": "",
                    "exchange_id": "stubbed",
                    "connection": None,
                }
            ),
        )

    def _link_token(self, route):
        self.link_token_bodies.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(json={"linkToken": "lt_stub", "link_token": "lt_stub"})

    def _store_token(self, route):
        self.store_token_bodies.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(
            status=202,
            json={
                "exchange_id": "stubbed",
                "status": "pending",
                "status_url": "/portal/exchanges/stubbed",
            },
        )


def _inits(page) -> dict[str, int]:
    counts: dict[str, int] = {}
    for init in page.evaluate("window.__link.inits"):
        counts[init["key"]] = counts.get(init["key"], 0) + 1
    return counts


def _reconnect(page, connection):
    """A healthy row's Reconnect waits in the row's menu: open that menu (only that one)."""
    row = page.locator(f'#connections-table tr[data-connection-id="{connection.pk}"]')
    row.locator("details.row-menu").wait_for(state="attached")
    page.evaluate(
        """(id) => document.querySelectorAll("details.row-menu").forEach((menu) => {
          menu.open = menu.closest("tr").dataset.connectionId === String(id);
        })""",
        connection.pk,
    )
    return row.get_by_role("button", name="Reconnect")


def test_each_target_has_its_own_instance_and_waits_for_it_to_load(page, live_server, acme):
    a, b = make_connection(customer=acme), make_connection(customer=acme)
    backend = Backend(page)
    login(page, live_server, "acme")
    page.wait_for_function("() => window.__link && window.__link.inits.length === 3")

    inits = page.evaluate("window.__link.inits")
    assert {i["key"] for i in inits} == {
        "Trackstarconnect",
        f"Trackstarreconnect-{a.pk}",
        f"Trackstarreconnect-{b.pk}",
    }
    for init in inits:  # empty lists are left out, not sent as []
        assert "integrationAllowList" not in init["options"]
        assert "integrationBlockList" not in init["options"]
        assert {"getLinkToken", "onSuccess", "onClose", "onLoad"} <= set(init["options"])
    connect = page.get_by_role("button", name="Connect your WMS")
    # Nothing is enabled before its own instance says it is loaded.
    expect(connect).to_be_disabled()
    expect(_reconnect(page, a)).to_be_disabled()
    expect(_reconnect(page, b)).to_be_disabled()

    page.evaluate(f"window.__load('Trackstarreconnect-{a.pk}')")  # by onLoad
    expect(_reconnect(page, a)).to_be_enabled()
    expect(_reconnect(page, b)).to_be_disabled()
    expect(connect).to_be_disabled()
    page.evaluate(f"window.__load('Trackstarreconnect-{b.pk}', 'state-only')")  # no onLoad
    expect(_reconnect(page, b)).to_be_enabled()
    expect(connect).to_be_disabled()
    page.evaluate("window.__load('Trackstarconnect')")
    expect(connect).to_be_enabled()

    _reconnect(page, b).click()
    connect.click()
    assert page.evaluate("window.__link.opens") == [
        f"Trackstarreconnect-{b.pk}",
        "Trackstarconnect",
    ]
    # Each instance's getLinkToken asks for its own target.
    for key in (f"Trackstarreconnect-{b.pk}", "Trackstarconnect", f"Trackstarreconnect-{a.pk}"):
        assert page.evaluate(f"window.__token('{key}')") == "lt_stub"
    assert [body.get("connection_id") for body in backend.link_token_bodies] == [
        str(b.pk),
        None,
        str(a.pk),
    ]
    assert {body["customer_id"] for body in backend.link_token_bodies} == {acme.public_id}
    # The auth code goes back with the link token its instance was opened with: the server
    # takes a code only with a link token it minted for this customer and this target.
    page.evaluate(f"window.__succeed('Trackstarreconnect-{b.pk}', 'ac_b')")
    expect(page.locator("#connect-status")).to_have_text("Stubbed exchange.")
    assert backend.store_token_bodies[-1] == {
        "auth_code": "ac_b",
        "integration_name": "shipbob",
        "customer_id": acme.public_id,
        "link_token": "lt_stub",
        "connection_id": str(b.pk),
    }


def test_a_table_refresh_keeps_the_instances_and_adds_one_for_a_new_row(page, live_server, acme):
    a = make_connection(customer=acme)
    backend = Backend(page)
    login(page, live_server, "acme")
    page.wait_for_function("() => window.__link && window.__link.inits.length === 2")
    for key in ("Trackstarconnect", f"Trackstarreconnect-{a.pk}"):
        page.evaluate(f"window.__load('{key}')")
    c = make_connection(customer=acme, integration_name="shiphero")  # shows on the refresh

    # Link reports a reconnect of A; the (stubbed) exchange fails; the table is refreshed.
    page.evaluate(f"window.__succeed('Trackstarreconnect-{a.pk}', 'ac_stub')")
    expect(page.locator("#connect-status")).to_have_text("Stubbed exchange.")
    expect(page.locator("#connections-table tbody tr")).to_have_count(2)

    assert backend.store_token_bodies == [
        {
            "auth_code": "ac_stub",
            "integration_name": "shipbob",
            "customer_id": acme.public_id,
            "connection_id": str(a.pk),
        }
    ]
    assert page.evaluate("window.__link.closes") == [f"Trackstarreconnect-{a.pk}"]
    page.wait_for_function(
        f"() => window.__link.inits.some(i => i.key === 'Trackstarreconnect-{c.pk}')"
    )
    # The connect instance is kept; A's is init-ed once more (a fresh token for its next
    # open), not made anew by the refresh; the new row gets its own.
    assert _inits(page) == {
        "Trackstarconnect": 1,
        f"Trackstarreconnect-{a.pk}": 2,
        f"Trackstarreconnect-{c.pk}": 1,
    }
    expect(page.get_by_role("button", name="Connect your WMS")).to_be_enabled()
    expect(_reconnect(page, a)).to_be_disabled()  # until A's instance has loaded again
    expect(_reconnect(page, c)).to_be_disabled()
    page.evaluate(f"window.__load('Trackstarreconnect-{a.pk}')")
    page.evaluate(f"window.__load('Trackstarreconnect-{c.pk}')")
    expect(_reconnect(page, a)).to_be_enabled()
    expect(_reconnect(page, c)).to_be_enabled()


def test_the_magic_link_page_passes_its_allow_list(page, live_server, acme, csp_violations):
    issued = magic_link_service.magic_link_issue(
        customer=acme, created_by=None, allowed_integrations=["shipbob"]
    )
    Backend(page)
    page.goto(live_server.url + issued.url[issued.url.index("/connect/") :])
    # The token URL hands the session its grant and moves on to a URL without the token.
    assert page.url.startswith(f"{live_server.url}/connect/?link=")
    assert issued.url.rstrip("/").rsplit("/", 1)[-1] not in page.url
    page.wait_for_function("() => window.__link && window.__link.inits.length === 1")

    [init] = page.evaluate("window.__link.inits")
    assert init["key"] == "Trackstarconnect"
    assert init["allow"] == ["shipbob"]
    assert "integrationBlockList" not in init["options"]
    expect(page.get_by_role("button", name="Connect your WMS")).to_be_disabled()
    page.evaluate("window.__load('Trackstarconnect')")
    expect(page.get_by_role("button", name="Connect your WMS")).to_be_enabled()
    assert csp_violations == []  # the Link script's host is allowed, inline nothing
