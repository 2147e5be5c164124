"""The portal dashboard tells the truth per connection and per resource: fresh is green,
stale amber, failing red with its reason in plain words, paused grey, not yet synced says
so; a broken, paused or disconnected connection is never green; and the status JSON the
page polls is the customer's own, in a constant number of queries."""

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from connections.models import AuthCodeExchange, Connection, ResourceSync, SyncRun
from connections.selectors import status as status_selectors
from customers.models import Membership
from tests.builders import make_connection, make_customer, make_user

STATUS_URL = "/portal/connections/status.json"


@pytest.fixture
def owner(client, portal_user):
    client.force_login(portal_user)
    return client


@pytest.fixture
def member(customer):
    client = Client()
    client.force_login(
        make_user(username="acme-member", customer=customer, role=Membership.Role.MEMBER)
    )
    return client


def synced(connection, *resources, ago=timedelta(minutes=3), **fields):
    fields.setdefault("history_ready", True)
    for resource in resources or ("inventory", "orders"):
        ResourceSync.objects.create(
            connection=connection,
            resource=resource,
            interval_seconds=900,
            last_success_at=timezone.now() - ago if ago is not None else None,
            **fields,
        )
    return connection


def running(connection, resource="orders", *, records=0, error="", since=None, **fields):
    """A sync run in progress on the resource (made if missing)."""
    resource_sync, _ = ResourceSync.objects.get_or_create(
        connection=connection,
        resource=resource,
        defaults={"interval_seconds": 900, "history_ready": True, **fields},
    )
    run = SyncRun.objects.create(
        connection=connection,
        resource=resource,
        kind=SyncRun.Kind.INITIAL,
        records=records,
        pages=records // 1000,
        error=error,
        since=since,
    )
    resource_sync.current_run = run
    resource_sync.save()
    return run


def row(html: str, connection) -> str:
    """The table row of one connection."""
    match = re.search(rf'<tr data-connection-id="{connection.pk}".*?</tr>', html, flags=re.DOTALL)
    assert match, f"no row for connection {connection.pk}"
    return match.group(0)


def freshness_line(html: str, connection) -> str:
    match = re.search(
        rf'<p class="freshness-line[^"]*" data-connection-id="{connection.pk}".*?</p>',
        html,
        flags=re.DOTALL,
    )
    assert match, f"no freshness line for connection {connection.pk}"
    return match.group(0)


def page(client) -> str:
    response = client.get("/portal/")
    assert response.status_code == 200
    return response.content.decode()


def badge(html_row: str) -> tuple[str, str]:
    """(tone, words) of a row's status badge."""
    match = re.search(r'class="badge state-badge tone-(\w+)" data-live="badge">([^<]*)<', html_row)
    assert match, html_row
    return match.group(1), match.group(2)


# --- Each state, its colour and its words ---------------------------------------------------


def test_a_fresh_connection_is_green_and_says_when_it_last_synced(owner, customer):
    connection = synced(make_connection(customer=customer, label="ShipBob"))

    html = page(owner)

    assert badge(row(html, connection)) == ("green", "Connected")
    assert "3\xa0minutes ago" in row(html, connection)
    line = freshness_line(html, connection)
    assert 'class="chip fresh"' in line and "Orders: updated 3\xa0minutes ago" in line


def test_data_older_than_twice_its_schedule_is_amber(owner, customer):
    connection = synced(make_connection(customer=customer), ago=timedelta(minutes=31))

    html = page(owner)

    assert badge(row(html, connection)) == ("amber", "Out of date")
    line = freshness_line(html, connection)
    assert 'class="chip stale"' in line and "chip fresh" not in line
    assert "Orders: updated 31\xa0minutes ago (stale)" in line


def test_data_within_twice_its_schedule_is_still_fresh(owner, customer):
    connection = synced(make_connection(customer=customer), ago=timedelta(minutes=29))

    assert badge(row(page(owner), connection))[0] == "green"


def test_failing_syncs_are_red_with_the_reason_in_plain_words(owner, customer):
    connection = synced(make_connection(customer=customer), "inventory", ago=timedelta(seconds=5))
    synced(
        connection,
        "orders",
        ago=timedelta(hours=2),
        last_error="Trackstar stayed unreachable; the next scheduled sync tries again.",
    )

    html = page(owner)
    the_row = row(html, connection)

    assert badge(the_row) == ("red", "Sync failing")
    assert "Orders: Trackstar is not answering; we keep trying." in the_row
    # "Last sync" is the failing resource's last success, and says it fails; never "just now"
    # because another resource synced seconds ago.
    last_sync = re.search(r'data-live="last-sync">([^<]*)<', the_row).group(1)
    assert last_sync == "2\xa0hours ago · failing"
    assert "just now" not in the_row
    line = freshness_line(html, connection)
    assert re.search(
        r'class="chip failing"[^>]*>Orders: Trackstar is not answering; we keep trying\. '
        r"Last updated 2\xa0hours ago\.<",
        line,
    )


def test_a_run_retrying_a_page_is_red_and_shows_no_http_code(owner, customer):
    connection = synced(make_connection(customer=customer), "inventory")
    running(
        connection,
        records=3000,
        error="Trackstar is busy or unreachable; will retry (503 Service Unavailable).",
    )

    html = page(owner)

    assert badge(row(html, connection))[0] == "red"
    assert "Trackstar is not answering; we keep trying." in row(html, connection)
    assert "503" not in html and "Service Unavailable" not in html


@pytest.mark.parametrize(
    ("stored", "words"),
    [
        ("Trackstar refused the sync: 500 Internal Server Error", "the next sync tries again"),
        ("Internal error: IntegrityError", "Something went wrong on our side"),
        ("Paused: Trackstar refuses our API key.", "held up on our side"),
        ("Lost the database connection; resuming.", "resumes by itself"),
        ("Trackstar refused this connection's access token.", "no longer accepts"),
    ],
)
def test_stored_sync_errors_become_plain_words(stored, words):
    plain = status_selectors.sync_error_words(stored)

    assert words in plain
    assert not re.search(r"\d{3}|Error|Internal Server|API key", plain)


def test_a_paused_connection_is_grey_and_says_who_paused_it(owner, customer):
    connection = synced(make_connection(customer=customer, sync_paused=True), ago=timedelta(0))

    html = page(owner)

    assert badge(row(html, connection)) == ("grey", "Paused")
    assert "Paused by your account manager." in row(html, connection)
    line = freshness_line(html, connection)
    assert "Paused by your account manager" in line
    assert "chip fresh" not in line and "tone-green" not in line


def test_a_paused_resource_is_grey_and_the_others_stay_green(owner, customer):
    connection = synced(make_connection(customer=customer), "inventory")
    synced(connection, "orders", paused=True)

    line = freshness_line(page(owner), connection)

    assert 'class="chip fresh" data-resource="inventory"' in line
    assert 'class="chip paused" data-resource="orders"' in line


def test_a_connection_not_yet_synced_says_so(owner, customer):
    waiting = synced(make_connection(customer=customer, label="A"), ago=None, history_ready=False)
    none_yet = make_connection(customer=customer, label="B")

    html = page(owner)

    assert badge(row(html, waiting)) == ("blue", "Syncing…")
    assert "Waiting for Trackstar to import your history." in row(html, waiting)
    assert "Orders: first sync in progress" in freshness_line(html, waiting)
    assert badge(row(html, none_yet)) == ("neutral", "Not yet synced")
    assert ">Not yet<" in row(html, none_yet)


def test_a_long_first_sync_shows_its_progress(owner, customer):
    connection = make_connection(customer=customer)
    # An earlier full read of the orders found about 20,000.
    SyncRun.objects.create(
        connection=connection,
        resource="orders",
        kind=SyncRun.Kind.INITIAL,
        status=SyncRun.Status.SUCCEEDED,
        records=20000,
    )
    running(connection, records=12000)
    counting = make_connection(customer=customer)
    running(counting, records=3000, since=timezone.now() - timedelta(days=1))

    html = page(owner)

    assert badge(row(html, connection)) == ("blue", "Syncing…")
    assert "12,000 of about 20,000 orders" in row(html, connection)
    assert re.search(r'<progress class="sync-progress"[^>]* value="12000" max="20000"', html)
    # No total known: a count, and a bar that only says it is busy.
    assert "3,000 orders so far" in row(html, counting)
    assert re.search(
        r'<progress class="sync-progress" data-live="progress" aria-label', row(html, counting)
    )


@pytest.mark.parametrize(
    "fields",
    [
        {
            "status": Connection.Status.NEEDS_RECONNECT,
            "reconnect_cause": Connection.ReconnectCause.INVALID_CREDENTIALS,
        },
        {"status": Connection.Status.ERROR},
        {"status": Connection.Status.DISCONNECTED},
        {"sync_paused": True},
    ],
)
def test_a_broken_paused_or_disconnected_connection_is_never_green(owner, customer, fields):
    connection = synced(make_connection(customer=customer, **fields), ago=timedelta(seconds=5))

    html = page(owner)

    assert "tone-green" not in row(html, connection)
    assert "chip fresh" not in freshness_line(html, connection)
    assert "just now" not in row(html, connection)


def test_a_missing_permission_is_never_green(owner, customer):
    connection = synced(make_connection(customer=customer), "inventory", ago=timedelta(seconds=5))
    synced(connection, "returns", ago=None, permission_error="403 Forbidden: no returns scope")

    html = page(owner)

    assert badge(row(html, connection)) == ("red", "Missing permission")
    assert "No access to returns" in row(html, connection)
    assert "403" not in html


def test_broken_credentials_say_so_plainly_and_offer_reconnect_in_sight(owner, customer):
    connection = synced(
        make_connection(
            customer=customer,
            status=Connection.Status.NEEDS_RECONNECT,
            reconnect_cause=Connection.ReconnectCause.INVALID_CREDENTIALS,
            last_error="Trackstar answered 401: invalid_credentials",
        )
    )

    the_row = row(page(owner), connection)

    assert badge(the_row) == ("red", "Needs reconnect")
    assert "no longer accepts the saved credentials. Reconnect to resume syncing." in the_row
    assert "401" not in the_row and "invalid_credentials" not in the_row
    # The Reconnect button is in plain sight, not in the row's menu.
    menu_at = the_row.find('<details class="row-menu"')
    button_at = the_row.find('class="btn small primary reconnect"')
    assert 0 <= button_at < menu_at
    assert the_row.count('aria-label="Reconnect') == 1


def test_a_member_is_told_an_owner_can_reconnect(member, customer):
    connection = make_connection(
        customer=customer,
        status=Connection.Status.NEEDS_RECONNECT,
        reconnect_cause=Connection.ReconnectCause.INVALID_CREDENTIALS,
    )

    the_row = row(page(member), connection)

    assert "An owner of your account can reconnect it." in the_row
    assert "Reconnect" not in the_row and "row-menu" not in the_row


def test_a_healthy_row_keeps_reconnect_rename_and_disconnect_in_its_menu(owner, customer):
    connection = synced(make_connection(customer=customer))

    the_row = row(page(owner), connection)

    menu = the_row.split('<details class="row-menu">', 1)
    assert len(menu) == 2, "no row menu"
    before, inside = menu
    for action in ("Reconnect", "Rename", "Disconnect"):
        assert f'aria-label="{action} ' not in before
        assert f'aria-label="{action} ' in inside


def test_a_disconnected_connection_shows_one_quiet_line(owner, customer):
    connection = synced(
        make_connection(customer=customer, status=Connection.Status.DISCONNECTED),
        "inventory",
        "orders",
        "returns",
        ago=timedelta(days=3),
    )

    html = page(owner)

    assert badge(row(html, connection)) == ("grey", "Disconnected")
    line = freshness_line(html, connection)
    assert line.count('class="chip') == 1
    assert "Disconnected · data from 3\xa0days ago" in line
    assert "stale" not in line and "tone-amber" not in line
    assert "Reconnect" not in row(html, connection)


def test_a_code_being_exchanged_shows_a_connecting_row(owner, customer, other_customer):
    AuthCodeExchange.objects.create(
        customer=customer,
        auth_code_hash=uuid.uuid4().hex,
        integration_name="shiphero",
        source=Connection.Source.PORTAL,
    )
    AuthCodeExchange.objects.create(
        customer=other_customer,
        auth_code_hash=uuid.uuid4().hex,
        integration_name="deposco",
        source=Connection.Source.PORTAL,
    )

    html = page(owner)

    assert html.count('class="row-connecting"') == 1
    connecting = html.split('class="row-connecting"', 1)[1].split("</tr>", 1)[0]
    assert "Shiphero" in connecting and "Connecting…" in connecting
    assert "Deposco" not in html


# --- The status JSON ------------------------------------------------------------------------


def test_the_status_json_says_each_connections_state_and_progress(owner, customer):
    syncing = make_connection(customer=customer, label="ShipBob")
    running(syncing, records=2500)
    fresh = synced(make_connection(customer=customer, label="ShipBob 2"))

    response = owner.get(STATUS_URL)

    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    data = response.json()
    assert data["busy"] is True
    by_id = {c["id"]: c for c in data["connections"]}
    assert by_id[syncing.pk]["state"] == "syncing"
    assert by_id[syncing.pk]["words"] == "2,500 orders so far"
    assert by_id[syncing.pk]["progress"] == {"records": 2500, "total": None}
    assert by_id[syncing.pk]["resources"][0]["state"] == "syncing"
    assert by_id[fresh.pk]["state"] == "connected" and by_id[fresh.pk]["tone"] == "green"
    assert by_id[fresh.pk]["busy"] is False
    assert {r["resource"]: r["state"] for r in by_id[fresh.pk]["resources"]} == {
        "inventory": "fresh",
        "orders": "fresh",
    }


def test_the_status_json_is_idle_when_nothing_moves(owner, customer):
    synced(make_connection(customer=customer))

    assert owner.get(STATUS_URL).json()["busy"] is False


def test_the_status_json_never_shows_another_customers_connections(owner, customer, other_customer):
    mine = synced(make_connection(customer=customer))
    theirs = synced(make_connection(customer=other_customer, label="Globex WMS"))
    running(theirs, "returns", records=10)
    AuthCodeExchange.objects.create(
        customer=other_customer,
        auth_code_hash=uuid.uuid4().hex,
        integration_name="deposco",
        source=Connection.Source.PORTAL,
    )

    response = owner.get(STATUS_URL)

    data = response.json()
    assert [c["id"] for c in data["connections"]] == [mine.pk]
    assert data["connecting"] == []
    assert "Globex" not in response.content.decode()
    assert data["busy"] is False


def test_members_read_the_status_json_too(member, customer):
    connection = make_connection(
        customer=customer,
        status=Connection.Status.NEEDS_RECONNECT,
        reconnect_cause=Connection.ReconnectCause.INVALID_CREDENTIALS,
    )

    data = member.get(STATUS_URL).json()

    [entry] = data["connections"]
    assert entry["id"] == connection.pk and entry["state"] == "needs_reconnect"
    assert "Reconnect" not in entry["words"]


def test_the_status_json_refuses_the_anonymous_and_other_methods(client, owner, customer):
    anonymous = Client()

    response = anonymous.get(STATUS_URL)

    assert response.status_code == 403
    assert "error" in response.json()
    assert owner.post(STATUS_URL).status_code == 405
    assert owner.get(STATUS_URL + "?customer=1&garbage=%ff").status_code == 200


def test_a_user_of_two_customers_must_choose_first(customer, other_customer):
    user = make_user(username="both", customer=customer)
    Membership.objects.create(user=user, customer=other_customer, role=Membership.Role.OWNER)
    client = Client()
    client.force_login(user)

    response = client.get(STATUS_URL)

    assert response.status_code == 403
    assert "Choose" in response.json()["error"]


@pytest.mark.parametrize("count", [1, 6])
def test_the_status_json_and_the_page_run_a_constant_number_of_queries(
    owner, customer, count, django_assert_max_num_queries
):
    other = make_customer(name="Other")
    for n in range(count):
        connection = synced(make_connection(customer=customer), "inventory")
        running(connection, "orders", records=1000 * (n + 1))
        AuthCodeExchange.objects.create(
            customer=customer,
            auth_code_hash=uuid.uuid4().hex,
            integration_name="shiphero",
            source=Connection.Source.PORTAL,
            reinstall_connection=connection if n % 2 else None,
        )
        synced(make_connection(customer=other))

    # Session, user, customer, membership, connections, their resources (with runs),
    # pending exchanges, full-run estimates.
    with django_assert_max_num_queries(9):
        data = owner.get(STATUS_URL).json()
    assert len(data["connections"]) == count
    with django_assert_max_num_queries(11):
        assert owner.get("/portal/").status_code == 200
    with django_assert_max_num_queries(11):
        assert owner.get("/portal/connections/table").status_code == 200


@pytest.mark.parametrize(
    ("zone", "day"), [("America/Los_Angeles", "Dec 1"), ("Asia/Tokyo", "Dec 2")]
)
def test_the_dashboard_shows_times_in_the_customers_timezone(owner, customer, zone, day):
    from datetime import UTC, datetime

    customer.timezone = zone
    customer.save()
    make_connection(customer=customer, connected_at=datetime(2026, 12, 1, 23, 30, tzinfo=UTC))

    page = owner.get("/portal/").content.decode()
    table = owner.get("/portal/connections/table").content.decode()

    for html in (page, table):
        assert f">{day}, 2026</time>" in html
