"""The Content-Security-Policy, enforced by a real browser: the Link pages still work under
it and log no violation. The sandbox serves Link's script from its own origin, as
link.trackstarhq.com serves main.js; real browser, web server, worker and sandbox."""

import pytest
from playwright.sync_api import expect

from connections.link import magic_links as magic_link_service
from connections.models import Connection, MagicLink
from tests.builders import make_user
from tests.e2e.conftest import connect_in_modal, login, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ASYNC = 30_000  # ms: Link, the worker's exchange and the page's polling


def test_the_portal_connects_under_the_policy(
    page, live_server, live_trackstar, acme, csp_violations
):
    login(page, live_server, "acme")
    response = page.reload()
    policy = response.headers["content-security-policy"]
    assert live_trackstar.base_url in policy  # the Link script's origin, and only ours else

    page.get_by_role("button", name="Connect your WMS").click()
    connect_in_modal(page)

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=ASYNC)
    expect(page.locator("#connections-table tbody tr")).to_contain_text("ShipBob")
    assert Connection.objects.get().customer == acme
    assert csp_violations == []


def test_the_magic_link_page_connects_under_the_policy(
    page, live_server, live_trackstar, acme, csp_violations
):
    issued = magic_link_service.magic_link_issue(customer=acme, created_by=None)
    token = issued.url.rstrip("/").rsplit("/", 1)[-1]

    response = page.goto(live_server.url + issued.url[issued.url.index("/connect/") :])

    # The browser followed the token URL to a page whose address holds no token.
    assert response.status == 200
    assert page.url.startswith(f"{live_server.url}/connect/?link=") and token not in page.url
    assert "content-security-policy" in response.headers
    expect(page.locator("#customer-name")).to_have_text("Acme Outdoor")
    page.get_by_role("button", name="Connect your WMS").click()
    connect_in_modal(page)

    expect(page.locator("#connect-status")).to_have_text("Connected: ShipBob.", timeout=ASYNC)
    # static/portal/connected.js (an inline script before) swaps the button for this.
    expect(page.get_by_text("All set. You can close this page.")).to_be_visible()
    expect(page.get_by_role("button", name="Connect your WMS")).to_be_hidden()
    assert MagicLink.objects.get().use_count == 1
    assert Connection.objects.get().source == Connection.Source.MAGIC_LINK
    # A reload shows the link spent, still without the token.
    again = page.reload()
    assert again.status == 410
    expect(page.get_by_role("heading", name="This link was already used")).to_be_visible()
    assert csp_violations == []


def test_staff_pages_run_under_the_policy(
    page, live_server, trackstar, settings, acme, csp_violations
):
    settings.DOCKSIDE_BASE_URL = live_server.url
    make_user(username="ops", is_staff=True, is_superuser=True)
    login(page, live_server, "ops", url="/admin/login/")
    page.goto(f"{live_server.url}/admin/customers/customer/{acme.pk}/change/")
    page.get_by_role("link", name="Issue a magic link").click()
    page.get_by_role("button", name="Issue the link").click()
    expect(page.get_by_role("heading", name="Magic link issued")).to_be_visible()

    # static/staff/magic-link-issued.js (an inline script and onclick before).
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.locator("#magic-link-url").click()
    assert page.evaluate("document.activeElement.selectionEnd") > 0  # the URL is selected
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    page.goto(f"{live_server.url}/admin/connections/magiclink/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert csp_violations == []


def test_an_injected_inline_script_does_not_run(page, live_server, trackstar, acme, csp_violations):
    """What the policy is for: markup that slips into a page cannot run script."""
    login(page, live_server, "acme")
    expect(page.get_by_role("heading", name="Warehouse connections")).to_be_visible()

    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__injected = true;";
            document.body.appendChild(script);
            const img = document.createElement("img");
            img.setAttribute("onerror", "window.__injected = true;");
            img.src = "data:,";
            document.body.appendChild(img);
        }"""
    )

    # Only once the browser has refused both (our listener logs each refusal) does the
    # negative check mean anything: before that, neither may have been evaluated yet.
    refusals = {
        "Content Security Policy violation: script-src-elem inline",  # the <script>
        "Content Security Policy violation: script-src-attr inline",  # the onerror
    }

    def both_refused() -> bool:
        page.wait_for_timeout(50)  # Playwright hands over console messages while it waits
        return refusals <= set(csp_violations)

    wait_for(both_refused, timeout=10, message="both injected scripts to be refused")
    assert page.evaluate("window.__injected") is None
