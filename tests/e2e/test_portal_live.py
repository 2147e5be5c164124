"""The portal dashboard moves by itself and tells the truth, in a real browser: a new
connection goes Connecting → Syncing → Connected with no reload, a failing resource turns
red with its reason, a paused connection is grey."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from connections.models import Connection, ResourceSync, SyncRun
from tests.builders import make_connection
from tests.e2e.conftest import connect_in_modal, login

pytestmark = pytest.mark.django_db(transaction=True)

RED = "rgb(180, 35, 24)"
GREY = "rgb(93, 102, 120)"

# Records every state a row of the table shows, in order, with the badge it showed then,
# and marks the window: a reload would lose all three. status.js redraws a row in one task,
# so the observer never sees a new state with the old badge.
WATCH_ROWS = """() => {
  window.__noReload = "still here";
  window.__states = [];
  window.__badges = {};
  var section = document.getElementById("connections");
  function look() {
    section.querySelectorAll("#connections-table tbody tr").forEach(function (row) {
      var state = row.dataset.state;
      if (window.__states[window.__states.length - 1] !== state) window.__states.push(state);
      var badge = row.querySelector('[data-live="badge"]');
      if (badge) window.__badges[state] = badge.textContent.trim();
    });
  }
  new MutationObserver(look).observe(section, {childList: true, subtree: true, attributes: true});
  look();
}"""


def _color(locator) -> str:
    return locator.evaluate("(node) => getComputedStyle(node).color")


def test_a_new_connection_goes_connecting_syncing_connected_without_a_reload(
    page, live_server, live_trackstar, acme, csp_violations
):
    # Slow enough for the page's look every 2 s (status.js) to catch each state: the
    # exchange answers after 6 s, and Trackstar's import of the history takes 8 s before
    # the worker reads it.
    live_trackstar.set_faults(statuses=[], delay_ms=6000, paths="/link/exchange")
    live_trackstar.configure(historical_sync_delay=8)
    login(page, live_server, "acme")
    expect(page.locator("#no-connections")).to_be_visible()
    page.evaluate(WATCH_ROWS)
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    page.get_by_role("button", name="Connect your WMS").click()
    connect_in_modal(page)

    # The passing states are read from what the observer saw (below), not caught live.
    rows = page.locator("#connections-table tbody tr")
    expect(rows.first).to_have_attribute("data-state", "connected", timeout=60_000)
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row.locator('[data-live="badge"]')).to_have_text("Connected")
    expect(row.locator(".last-sync")).not_to_have_text("Not yet")
    expect(page.locator(".freshness-line .chip.fresh").first).to_be_visible()

    assert page.evaluate("window.__noReload") == "still here"
    assert navigations == []
    states = page.evaluate("window.__states")
    assert {"connecting", "syncing", "connected"} <= set(states), states
    assert states.index("connecting") < states.index("syncing") < states.index("connected")
    badges = page.evaluate("window.__badges")
    assert (badges["connecting"], badges["syncing"]) == ("Connecting…", "Syncing…")
    assert csp_violations == []
    assert Connection.objects.get().status == Connection.Status.ACTIVE


def test_a_failing_resource_turns_red_with_its_reason_while_the_page_is_open(
    page, live_server, acme
):
    connection = make_connection(customer=acme, label="ShipBob", connected_at=timezone.now())
    ResourceSync.objects.create(
        connection=connection,
        resource="inventory",
        history_ready=True,
        last_success_at=timezone.now() - timedelta(minutes=2),
    )
    orders = ResourceSync.objects.create(
        connection=connection,
        resource="orders",
        history_ready=True,
        last_success_at=timezone.now() - timedelta(hours=3),
    )
    run = SyncRun.objects.create(
        connection=connection, resource="orders", kind=SyncRun.Kind.MANUAL, records=4000
    )
    orders.current_run = run
    orders.save()
    login(page, live_server, "acme")
    page.evaluate(WATCH_ROWS)
    row = page.locator(f'#connections-table tr[data-connection-id="{connection.pk}"]')
    chip = page.locator('.freshness-line .chip[data-resource="orders"]')
    expect(row).to_have_attribute("data-state", "syncing")
    expect(chip).to_contain_text("Orders: syncing, 4,000 so far")

    # The worker gave up on Trackstar: the run ends failed, as connections/sync/tasks.py leaves it.
    reason = "Trackstar stayed unreachable; the next scheduled sync tries again."
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.FAILED, error=reason)
    ResourceSync.objects.filter(pk=orders.pk).update(current_run=None, last_error=reason)

    expect(row).to_have_attribute("data-state", "failing", timeout=15_000)
    expect(row.locator('[data-live="badge"]')).to_have_text("Sync failing")
    expect(row).to_contain_text("Trackstar is not answering; we keep trying.")
    expect(row.locator(".last-sync")).to_have_text(re.compile(r"^3\s+hours ago · failing$"))
    expect(chip).to_have_class("chip failing")
    expect(chip).to_contain_text("Orders: Trackstar is not answering; we keep trying.")
    assert _color(chip) == RED
    assert _color(row.locator('[data-live="badge"]')) == RED
    # The inventory, still syncing fine, stays green.
    inventory = page.locator('.freshness-line .chip[data-resource="inventory"]')
    expect(inventory).to_have_class("chip fresh")
    assert page.evaluate("window.__noReload") == "still here"
    # Nothing is busy any more: the table tells status.js to stop asking.
    expect(page.locator("#connections-table")).to_have_attribute("data-busy", "false")


def test_a_paused_connection_is_grey_with_no_green_anywhere(page, live_server, acme):
    connection = make_connection(customer=acme, label="ShipBob", sync_paused=True)
    for resource in ("inventory", "orders"):
        ResourceSync.objects.create(
            connection=connection,
            resource=resource,
            history_ready=True,
            last_success_at=timezone.now(),
        )

    login(page, live_server, "acme")

    row = page.locator(f'#connections-table tr[data-connection-id="{connection.pk}"]')
    badge = row.locator('[data-live="badge"]')
    expect(badge).to_have_text("Paused")
    expect(row).to_contain_text("Paused by your account manager.")
    assert _color(badge) == GREY
    line = page.locator(f'.freshness-line[data-connection-id="{connection.pk}"]')
    expect(line).to_contain_text("Paused by your account manager")
    expect(line.locator(".chip.paused")).to_have_count(2)
    expect(line.locator(".chip.fresh")).to_have_count(0)
    # Its actions wait in the row's menu; nothing says "just now".
    expect(row.get_by_role("button", name="Reconnect")).to_have_count(0)
    row.locator("summary.row-menu-toggle").click()
    expect(row.get_by_role("button", name="Reconnect")).to_be_visible()
    expect(row.get_by_role("link", name="Disconnect")).to_be_visible()
    expect(row).not_to_contain_text("just now")
