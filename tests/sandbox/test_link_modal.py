"""The emulated Link modal in headless Chromium, loaded by a page on another origin."""

import pytest

PAGE = """<!doctype html>
<html><head><title>Dockside test page</title></head><body>
<h1>Connect your warehouse</h1>
<button id="open-main" onclick="window.Trackstar.open()">Open Trackstar</button>
<button id="open-b" onclick="window.TrackstarB.open()">Open button B</button>
<script src="%(sandbox)s/link/main.js"></script>
<script>
  window.linkToken = null;
  window.successes = [];
  window.closes = 0;
  window.loads = 0;
  window.tokenCalls = {};  // instance ("main" or its buttonId) -> getLinkToken calls
  function config(extra) {
    var name = (extra && extra.buttonId) || "main";
    return Object.assign({
      getLinkToken: function () {
        window.tokenCalls[name] = (window.tokenCalls[name] || 0) + 1;
        return Promise.resolve(window.linkToken);
      },
      onSuccess: function (authCode, integrationName, close) {
        window.successes.push([authCode, integrationName, typeof close]);
      },
      onClose: function () { window.closes += 1; },
      onLoad: function () { window.loads += 1; }
    }, extra || {});
  }
  window.Trackstar.init(config(%(main)s));
  window.Trackstar.init(config({buttonId: "B", integrationAllowList: ["shiphero"]}));
</script>
</body></html>
"""


@pytest.fixture
def open_page(page, sandbox, httpserver):
    def load(main_config: str = "{}"):
        html = PAGE % {"sandbox": sandbox.base_url, "main": main_config}
        httpserver.expect_request("/connect").respond_with_data(html, content_type="text/html")
        # localhost vs 127.0.0.1: the page and the sandbox are different origins.
        page.goto(httpserver.url_for("/connect").replace("127.0.0.1", "localhost"))
        page.wait_for_function("window.Trackstar && window.Trackstar.state.isLoaded")
        return page

    return load


def _set_token(page, token: str) -> None:
    page.evaluate("token => { window.linkToken = token; }", token)


def test_connect_shipbob_through_the_modal(open_page, sandbox):
    page = open_page()
    assert page.evaluate("window.loads") == 2
    _set_token(page, sandbox.link_token(customer_id="cust_42"))
    page.get_by_role("button", name="Open Trackstar").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="ShipBob").click()
    dialog.get_by_label("API key").fill("sk_live_123")
    assert dialog.get_by_label("API key").get_attribute("type") == "password"
    dialog.get_by_role("button", name="Connect").click()
    page.wait_for_function("window.successes.length === 1")
    auth_code, integration, close_type = page.evaluate("window.successes[0]")
    assert (integration, close_type) == ("shipbob", "function")
    assert page.evaluate("window.closes") == 1
    assert page.locator("#trackstar-link").count() == 0
    exchanged = sandbox.exchange(auth_code)
    assert exchanged["integration_name"] == "shipbob"
    assert exchanged["customer_id"] == "cust_42"


def test_wrong_credentials_show_an_error_in_the_modal(open_page, sandbox):
    page = open_page()
    _set_token(page, sandbox.link_token())
    page.get_by_role("button", name="Open Trackstar").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="ShipBob").click()
    dialog.get_by_label("API key").fill("wrong")
    dialog.get_by_role("button", name="Connect").click()
    alert = dialog.get_by_role("alert")
    alert.wait_for()
    assert "ShipBob rejected these credentials" in alert.inner_text()
    assert page.evaluate("window.successes.length") == 0
    # The user can fix the key and carry on in the same modal.
    dialog.get_by_label("API key").fill("right")
    dialog.get_by_role("button", name="Connect").click()
    page.wait_for_function("window.successes.length === 1")


def test_button_instance_with_one_item_allow_list_skips_the_picker(open_page, sandbox):
    page = open_page()
    assert page.evaluate("typeof window.TrackstarB.open") == "function"
    _set_token(page, sandbox.link_token())
    page.get_by_role("button", name="Open button B").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("heading", name="Connect to ShipHero").wait_for()
    dialog.get_by_label("Username").fill("ops@example.com")
    dialog.get_by_label("Password").fill("hunter2")
    dialog.get_by_role("button", name="Connect").click()
    page.wait_for_function("window.successes.length === 1")
    assert page.evaluate("window.successes[0][1]") == "shiphero"


def test_sandbox_option_and_block_list(open_page, sandbox):
    page = open_page('{sandbox: true, integrationBlockList: ["deposco"]}')
    _set_token(page, sandbox.link_token())
    page.get_by_role("button", name="Open Trackstar").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Sandbox").wait_for()
    assert dialog.get_by_role("button", name="Deposco").count() == 0
    assert dialog.get_by_role("button", name="Infoplus").count() == 1
    dialog.get_by_role("button", name="Close").click()
    assert page.locator("#trackstar-link").count() == 0
    assert page.evaluate("window.closes") == 1


def test_reinstall_goes_straight_to_the_connections_form(open_page, sandbox):
    linked = sandbox.connect("shipbob", {"api_key": "k"})
    page = open_page()
    _set_token(page, sandbox.link_token(connection_id=linked["connection_id"]))
    page.get_by_role("button", name="Open Trackstar").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("heading", name="Connect to ShipBob").wait_for()
    dialog.get_by_label("API key").fill("rotated")
    dialog.get_by_role("button", name="Connect").click()
    page.wait_for_function("window.successes.length === 1")
    again = sandbox.exchange(page.evaluate("window.successes[0][0]"))
    assert again["connection_id"] == linked["connection_id"]
    assert again["access_token"] == linked["access_token"]


def test_expired_link_token_shows_an_error(open_page, sandbox):
    page = open_page()
    _set_token(page, "lt_expired")
    page.get_by_role("button", name="Open Trackstar").click()
    alert = page.get_by_role("dialog").get_by_role("alert")
    alert.wait_for()
    assert "expired" in alert.inner_text()


def _open_and_close(page, button: str, heading: str) -> None:
    page.get_by_role("button", name=button).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("heading", name=heading).wait_for()
    dialog.get_by_role("button", name="Close").click()
    page.locator("#trackstar-link").wait_for(state="detached")


def test_an_instance_asks_for_its_link_token_once_and_reuses_it_until_init(open_page, sandbox):
    """Pessimistic on what main.js leaves undocumented (API.md §10), so a page that needs
    another token (another connection to reinstall) must use another instance or re-init."""
    linked = sandbox.connect("shipbob", {"api_key": "k"})
    page = open_page()
    _set_token(page, sandbox.link_token())
    _open_and_close(page, "Open Trackstar", "Connect your warehouse")
    # The page now hands out a reinstall token; the instance still opens with its first one.
    _set_token(page, sandbox.link_token(connection_id=linked["connection_id"]))
    _open_and_close(page, "Open Trackstar", "Connect your warehouse")
    assert page.evaluate("window.tokenCalls") == {"main": 1}

    page.evaluate("window.Trackstar.init(config({}))")  # init again: the token is dropped
    _open_and_close(page, "Open Trackstar", "Connect to ShipBob")

    assert page.evaluate("window.tokenCalls") == {"main": 2}


def test_each_button_instance_keeps_its_own_link_token(open_page, sandbox):
    linked = sandbox.connect("shipbob", {"api_key": "k"})
    page = open_page()
    _set_token(page, sandbox.link_token(connection_id=linked["connection_id"]))
    _open_and_close(page, "Open Trackstar", "Connect to ShipBob")
    _set_token(page, sandbox.link_token())
    _open_and_close(page, "Open button B", "Connect to ShipHero")  # B's first open
    assert page.evaluate("window.tokenCalls") == {"main": 1, "B": 1}

    # Re-init of B through window.Trackstar resets B only.
    page.evaluate(
        'window.Trackstar.init(config({buttonId: "B", integrationAllowList: ["shiphero"]}))'
    )
    _open_and_close(page, "Open button B", "Connect to ShipHero")
    _open_and_close(page, "Open Trackstar", "Connect to ShipBob")

    assert page.evaluate("window.tokenCalls") == {"main": 1, "B": 2}


def test_a_failed_link_token_call_is_asked_again_on_the_next_open(open_page, sandbox):
    page = open_page()
    page.evaluate("""() => {
      window.Trackstar.init(config({
        getLinkToken: function () {
          window.tokenCalls.main = (window.tokenCalls.main || 0) + 1;
          return window.tokenCalls.main === 1 ? Promise.reject(new Error("Dockside is down"))
                                              : Promise.resolve(window.linkToken);
        }
      }));
    }""")
    _set_token(page, sandbox.link_token())
    page.get_by_role("button", name="Open Trackstar").click()
    page.get_by_role("dialog").get_by_role("alert").wait_for()
    assert "Dockside is down" in page.get_by_role("dialog").get_by_role("alert").inner_text()
    page.get_by_role("dialog").get_by_role("button", name="Close").click()

    _open_and_close(page, "Open Trackstar", "Connect your warehouse")

    assert page.evaluate("window.tokenCalls.main") == 2
