"""The portal's freshness line: one per connection (and resource), and a connection that is
broken, disconnected or paused never shows its data as fresh, however recent."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Connection, ResourceSync
from connections.selectors import status as status_selectors
from tests.builders import make_connection


@pytest.fixture
def portal(client, portal_user):
    client.force_login(portal_user)
    return client


def synced(connection, *resources, ago=timedelta(minutes=3), **fields):
    for resource in resources or ("inventory", "orders"):
        ResourceSync.objects.create(
            connection=connection,
            resource=resource,
            interval_seconds=900,
            last_success_at=timezone.now() - ago if ago is not None else None,
            **fields,
        )
    return connection


def lines(customer, **kwargs) -> dict[str, dict[str, bool]]:
    """label → {resource: stale}"""
    return {
        line.connection.label: {item.resource: item.stale for item in line.items}
        for line in status_selectors.freshness_list(customer=customer, **kwargs)
    }


def test_each_connection_has_its_own_line(customer):
    synced(make_connection(customer=customer, label="ShipBob"))
    synced(make_connection(customer=customer, label="ShipBob 2"), "orders", ago=timedelta(hours=2))

    assert lines(customer) == {
        "ShipBob": {"inventory": False, "orders": False},
        "ShipBob 2": {"orders": True},  # older than twice its 15-minute schedule
    }
    assert lines(customer, resources=["inventory"]) == {"ShipBob": {"inventory": False}}


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"status": Connection.Status.NEEDS_RECONNECT}, "needs reconnect, not updating"),
        ({"status": Connection.Status.ERROR}, "not syncing"),
        ({"status": Connection.Status.DISCONNECTED}, "disconnected, no longer updated"),
        ({"sync_paused": True}, "syncing paused"),
    ],
)
def test_a_broken_connection_is_stale_however_recent_its_last_sync(customer, fields, words):
    synced(make_connection(customer=customer, label="ShipBob", **fields), ago=timedelta(seconds=5))

    [line] = status_selectors.freshness_list(customer=customer)

    assert line.halted == words
    assert line.stale
    assert all(item.stale for item in line.items)


def test_a_paused_resource_is_stale_and_the_others_are_not(customer):
    connection = make_connection(customer=customer, label="ShipBob")
    synced(connection, "inventory")
    synced(connection, "orders", paused=True)

    assert lines(customer) == {"ShipBob": {"inventory": False, "orders": True}}


def test_a_disconnected_connection_that_never_synced_is_left_out(customer, other_customer):
    synced(make_connection(customer=customer, status=Connection.Status.DISCONNECTED), ago=None)
    synced(make_connection(customer=other_customer, label="Theirs"))

    assert status_selectors.freshness_list(customer=customer) == []


def test_the_portal_shows_a_line_per_connection_and_never_green_for_a_broken_one(
    portal, customer, other_customer
):
    synced(make_connection(customer=customer, label="ShipBob"))
    synced(
        make_connection(
            customer=customer, label="ShipBob 2", status=Connection.Status.NEEDS_RECONNECT
        )
    )
    synced(make_connection(customer=other_customer, label="Globex ShipBob"))

    for url in ("/portal/", "/portal/inventory/", "/portal/orders/"):
        html = portal.get(url).content.decode()
        block = html.split('aria-label="Data freshness"')[1].split("</div>")[0]
        healthy, broken = block.split('<p class="freshness-line')[1:]
        assert "ShipBob" in healthy and 'class="chip fresh"' in healthy, url
        assert "ShipBob 2" in broken and "needs reconnect, not updating" in broken, url
        assert "chip fresh" not in broken and 'class="chip halted"' in broken, url
        assert "Globex" not in block, url


def test_resources_without_a_first_sync_say_so(portal, customer):
    synced(make_connection(customer=customer, label="ShipBob"), "orders", ago=None)

    html = portal.get("/portal/orders/").content.decode()

    assert "Orders: first sync in progress" in html
