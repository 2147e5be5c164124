"""What an exchange refuses, what it deletes at Trackstar, and what it recovers: attacks on
store-token driven over HTTP against the sandbox (the worker's step is the service)."""

import dataclasses
import json
from datetime import timedelta

import pytest
from django.db.models import F
from django.test import Client

from connections import services
from connections.models import (
    AuthCodeExchange,
    Connection,
    LinkTokenGrant,
    MagicLink,
    UnassignedConnection,
)
from connections.trackstar import TrackstarUnavailable

MAGIC = {"HTTP_X_DOCKSIDE_ACTOR": "magic-link"}


def link_token_for(client, **headers) -> str:
    """What connect.js does first: our get-link-token (which asks Trackstar)."""
    response = client.post("/portal/get-link-token", "{}", content_type="text/plain", **headers)
    assert response.status_code == 200, response.content
    return response.json()["link_token"]


def store_token(client, auth_code, link_token, integration="shipbob", **headers):
    body = {"auth_code": auth_code, "integration_name": integration, "link_token": link_token}
    return client.post(
        "/portal/store-token", json.dumps(body), content_type="text/plain", **headers
    )


def remote_exists(sandbox, connection_id) -> bool:
    return sandbox.get(f"/_sandbox/connections/{connection_id}").status_code == 200


@pytest.fixture
def acme(client, portal_user):
    client.force_login(portal_user)
    return client


@pytest.fixture
def globex(other_portal_user):
    client = Client()
    client.force_login(other_portal_user)
    return client


@pytest.fixture
def owed(monkeypatch):
    """Exchanges whose refused connection was handed to the delete task after commit."""
    enqueued: list[int] = []
    monkeypatch.setattr(
        services.exchanges,
        "refused_delete_enqueue",
        lambda *, exchange_id: enqueued.append(exchange_id) or True,
    )
    return enqueued


def process(exchange_id, capture):
    with capture(execute=True):
        services.exchange_process(exchange_id=exchange_id)
    return AuthCodeExchange.objects.get(pk=exchange_id)


def own_connection(sandbox, customer, *, status=Connection.Status.ACTIVE, api_key="sk_1"):
    """A connection of this customer, made through Link and stored by us."""
    made = sandbox.connect("shipbob", {"api_key": api_key}, customer_id=customer.public_id)
    row = Connection.objects.create(
        customer=customer,
        trackstar_connection_id=made["connection_id"],
        integration_name="shipbob",
        access_token=made["access_token"],
        status=status,
        source=Connection.Source.PORTAL,
    )
    return made, row


def reconnect_token_for(client, connection) -> str:
    response = client.post(
        "/portal/get-link-token",
        json.dumps({"connection_id": connection.pk}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()["link_token"]


def store_reconnect(client, capture, auth_code, link_token, connection) -> AuthCodeExchange:
    body = {
        "auth_code": auth_code,
        "integration_name": "shipbob",
        "link_token": link_token,
        "connection_id": connection.pk,
    }
    with capture(execute=False):
        response = client.post("/portal/store-token", json.dumps(body), content_type="text/plain")
    assert response.status_code == 202, response.content
    return AuthCodeExchange.objects.get(public_id=response.json()["exchange_id"])


# --- An auth code is bound to the customer whose link token made it ---------------------------


def test_another_customers_auth_code_is_refused_and_its_connection_deleted_at_trackstar(
    trackstar, acme, globex, customer, other_customer, owed, django_capture_on_commit_callbacks
):
    # Globex's user opens Link and signs in to Globex's WMS; the code reaches Acme's user
    # (a shared screen, a log, a colleague of both), who submits it with Acme's own token.
    globex_code = trackstar.authorize(link_token_for(globex), "shipbob", {"api_key": "sk_globex"})
    with django_capture_on_commit_callbacks(execute=False):
        response = store_token(acme, globex_code, link_token_for(acme))
    assert response.status_code == 202  # nothing at submit time can tell the code apart

    exchange = process(AuthCodeExchange.objects.get().pk, django_capture_on_commit_callbacks)

    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert "started for another account" in exchange.last_error
    assert Connection.objects.count() == 0  # Acme never sees Globex's warehouse
    status = acme.get(response.json()["status_url"]).json()
    assert status["status"] == "failed" and "another account" in status["error"]
    # Trackstar made the connection for the code, with Globex's credentials: deleted.
    remote_id = exchange.refused_connection_id
    assert remote_exists(trackstar, remote_id)
    assert trackstar.connection(remote_id)["customer_id"] == other_customer.public_id
    assert owed == [exchange.pk]
    # While it is owed, its connection.created does not make it Globex's either.
    assert (
        services.connection_adopt(
            trackstar_connection_id=remote_id,
            access_token=trackstar.connection(remote_id)["access_token"],
            details=trackstar.get_connection(remote_id),
            customer_id=other_customer.public_id,
            seen_via=UnassignedConnection.SeenVia.WEBHOOK,
        )
        is None
    )
    services.exchange_refused_delete(exchange_id=exchange.pk)
    assert not remote_exists(trackstar, remote_id)
    exchange.refresh_from_db()
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.DELETED
    assert exchange.refused_access_token == ""
    assert exchange.last_error.startswith("This sign-in")  # the reason stays readable


def test_a_delete_owed_while_trackstar_is_down_is_kept_and_done_later(
    trackstar, acme, globex, owed, django_capture_on_commit_callbacks
):
    globex_code = trackstar.authorize(link_token_for(globex), "shipbob", {"api_key": "sk_g"})
    with django_capture_on_commit_callbacks(execute=False):
        store_token(acme, globex_code, link_token_for(acme))
    exchange = process(AuthCodeExchange.objects.get().pk, django_capture_on_commit_callbacks)
    remote_id = exchange.refused_connection_id
    trackstar.set_faults(statuses=[503], paths="/connections")

    with pytest.raises(TrackstarUnavailable):  # the task retries this
        services.exchange_refused_delete(exchange_id=exchange.pk)

    exchange.refresh_from_db()
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.OWED
    assert "unreachable" in exchange.refused_delete_error
    assert exchange.refused_access_token  # still able to delete it
    assert remote_exists(trackstar, remote_id)
    # The task gave up long ago; Trackstar is back; the sweep finds what is still owed.
    trackstar.clear_faults()
    AuthCodeExchange.objects.filter(pk=exchange.pk).update(
        updated_at=F("updated_at") - timedelta(minutes=10)
    )
    owed.clear()
    services.exchanges_sweep()
    assert owed == [exchange.pk]
    services.exchange_refused_delete(exchange_id=exchange.pk)
    assert not remote_exists(trackstar, remote_id)


def test_an_answer_without_a_customer_id_is_bound_by_the_link_token_and_connected(
    trackstar, acme, customer, owed, django_capture_on_commit_callbacks, monkeypatch
):
    """The docs do not say Trackstar ever leaves customer_id out; if it does, that proves
    nothing against the customer, so the connection is stored, not refused and deleted."""
    code = trackstar.authorize(link_token_for(acme), "shipbob", {"api_key": "sk_1"})
    with django_capture_on_commit_callbacks(execute=False):
        assert store_token(acme, code, link_token_for(acme)).status_code == 202
    client = services.exchanges.trackstar_client()
    real = client.exchange_auth_code
    monkeypatch.setattr(
        type(client),
        "exchange_auth_code",
        lambda self, **kw: dataclasses.replace(real(**kw), customer_id=None),
    )

    exchange = process(AuthCodeExchange.objects.get().pk, django_capture_on_commit_callbacks)

    assert exchange.status == AuthCodeExchange.Status.SUCCEEDED
    assert Connection.objects.get().customer == customer
    assert owed == []


def test_a_retry_of_a_stored_code_answers_with_its_exchange_after_the_link_token_expired(
    trackstar, acme, customer, django_capture_on_commit_callbacks
):
    """connect.js retries store-token (a 429, a dropped answer): the code is ours already, so
    the retry gets its exchange, not a "took too long" that reads as a failure."""
    link_token = link_token_for(acme)
    code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_1"})
    with django_capture_on_commit_callbacks(execute=False):
        first = store_token(acme, code, link_token)
    assert first.status_code == 202
    LinkTokenGrant.objects.update(expires_at=F("expires_at") - timedelta(hours=2))

    again = store_token(acme, code, link_token)

    assert again.status_code == 202
    assert again.json()["exchange_id"] == first.json()["exchange_id"]
    assert AuthCodeExchange.objects.count() == 1


def test_a_webhook_first_for_another_wms_than_the_page_said_is_not_adopted_past_the_exchange(
    trackstar, customer, owed, django_capture_on_commit_callbacks
):
    """A magic link allows ShipBob; the visitor connects ShipHero in Link and the page says
    "shipbob". Trackstar's connection.created arrives before the worker exchanges the code:
    it must not be adopted (active, syncing) under the customer, or the allow list is void."""
    issued = services.magic_link_issue(
        customer=customer, created_by=None, allowed_integrations=["shipbob"]
    )
    visitor = Client()
    visitor.get(issued.url[issued.url.index("/connect/") :], follow=True)
    link_token = link_token_for(visitor, **MAGIC)
    code = trackstar.authorize(link_token, "shiphero", {"username": "u", "password": "p"})
    with django_capture_on_commit_callbacks(execute=False):
        assert store_token(visitor, code, link_token, "shipbob", **MAGIC).status_code == 202
    exchange = AuthCodeExchange.objects.get()
    # The code is exchanged at Trackstar (here by the worker, whose answer is then applied
    # after the webhook's adoption attempt).
    result = services.exchanges.trackstar_client().exchange_auth_code(auth_code=code)
    remote = trackstar.get_connection(result.connection_id)

    adopted = services.connection_adopt(
        trackstar_connection_id=result.connection_id,
        access_token=result.access_token,
        details=remote,
        customer_id=customer.public_id,
        seen_via=UnassignedConnection.SeenVia.WEBHOOK,
    )

    assert adopted is None  # the pending exchange decides
    assert Connection.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        services.exchanges._complete(exchange, result)
    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert exchange.last_error == "This link does not allow that integration."
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.OWED
    assert owed == [exchange.pk]
    assert Connection.objects.count() == 0


# --- A refusal the visitor caused keeps the link's use; ours are never deleted ---------------


def test_a_magic_link_code_landing_on_another_customers_connection_spends_the_link(
    trackstar, customer, other_customer, owed, django_capture_on_commit_callbacks
):
    """The code reinstalled Globex's live connection (a link token naming it): refused, the
    one-use link stays used, and Globex's connection is left alone at Trackstar."""
    theirs, theirs_row = own_connection(trackstar, other_customer, api_key="sk_g")
    issued = services.magic_link_issue(customer=customer, created_by=None)
    visitor = Client()
    visitor.get(issued.url[issued.url.index("/connect/") :], follow=True)
    own_token = link_token_for(visitor, **MAGIC)
    stray = trackstar.link_token(
        customer_id=customer.public_id, connection_id=theirs_row.trackstar_connection_id
    )
    code = trackstar.authorize(stray, "shipbob", {"api_key": "sk_visitor"})
    with django_capture_on_commit_callbacks(execute=False):
        assert store_token(visitor, code, own_token, **MAGIC).status_code == 202

    exchange = process(AuthCodeExchange.objects.get().pk, django_capture_on_commit_callbacks)

    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert exchange.last_error == "This connection belongs to another account."
    assert MagicLink.objects.get().use_count == 1  # not given back: no second try
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.KEPT
    assert owed == []
    assert remote_exists(trackstar, theirs["connection_id"])
    assert trackstar.wms(theirs["access_token"], "/wms/warehouses").status_code == 200
    theirs_row.refresh_from_db()
    assert theirs_row.customer == other_customer
    assert theirs_row.status == Connection.Status.ACTIVE


def test_a_reconnect_that_came_back_as_a_new_connection_deletes_that_one_only(
    trackstar, acme, customer, owed, django_capture_on_commit_callbacks
):
    first, mine = own_connection(trackstar, customer, status=Connection.Status.NEEDS_RECONNECT)
    # The page asks to reconnect it, but the code made a new connection (a fresh Link).
    code = trackstar.authorize(link_token_for(acme), "shipbob", {"api_key": "sk_2"})
    exchange = store_reconnect(
        acme, django_capture_on_commit_callbacks, code, reconnect_token_for(acme, mine), mine
    )

    exchange = process(exchange.pk, django_capture_on_commit_callbacks)

    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert "different connection" in exchange.last_error
    assert exchange.refused_connection_id != mine.trackstar_connection_id
    assert owed == [exchange.pk]
    services.exchange_refused_delete(exchange_id=exchange.pk)
    assert not remote_exists(trackstar, exchange.refused_connection_id)
    assert remote_exists(trackstar, mine.trackstar_connection_id)  # ours stays
    assert trackstar.wms(first["access_token"], "/wms/warehouses").status_code == 200


# --- False recovery after a 503 ----------------------------------------------------------------


def _made_up_code_after_a_503(trackstar, client, capture, *, before_processing=None):
    with capture(execute=False):
        response = store_token(client, "ac_made_up_by_the_visitor", link_token_for(client))
    assert response.status_code == 202
    exchange = AuthCodeExchange.objects.get(public_id=response.json()["exchange_id"])
    if before_processing:
        before_processing(exchange)
    trackstar.set_faults(statuses=[503], paths="/link/exchange", count=1)
    with pytest.raises(TrackstarUnavailable):
        services.exchange_process(exchange_id=exchange.pk)
    # The retry: Trackstar's 422 now reads like "this code was spent by the first try".
    return process(exchange.pk, capture)


def test_a_made_up_code_after_a_503_adopts_no_orphan_but_a_lost_answer_is_recovered(
    trackstar, acme, customer, other_customer, django_capture_on_commit_callbacks
):
    # Orphans of the same WMS at Trackstar: another customer's, and one of this customer's
    # that the reconcile job already keeps in the unassigned list (its webhook was lost).
    trackstar.dashboard_connect("shipbob", customer_id=other_customer.public_id, webhook=False)
    waiting = trackstar.dashboard_connect("shipbob", customer_id=customer.public_id, webhook=False)
    services.connections_reconcile()
    assert UnassignedConnection.objects.filter(
        trackstar_connection_id=waiting["connection_id"]
    ).exists()

    exchange = _made_up_code_after_a_503(trackstar, acme, django_capture_on_commit_callbacks)

    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert exchange.last_error.startswith("Trackstar refused the connection")
    assert Connection.objects.count() == 0

    # The genuine case, with the same orphans around: a first attempt reached Trackstar
    # (the code is spent) and the worker died before saving.
    link_token = link_token_for(acme)
    code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_1"})
    with django_capture_on_commit_callbacks(execute=False):
        response = store_token(acme, code, link_token)
    genuine = AuthCodeExchange.objects.get(public_id=response.json()["exchange_id"])
    made = trackstar.exchange(genuine.auth_code)
    AuthCodeExchange.objects.filter(pk=genuine.pk).update(attempts=1)

    genuine = process(genuine.pk, django_capture_on_commit_callbacks)

    assert genuine.status == AuthCodeExchange.Status.SUCCEEDED
    assert genuine.connection.trackstar_connection_id == made["connection_id"]
    assert genuine.connection.customer == customer
    assert Connection.objects.count() == 1


def test_a_connection_made_before_the_code_reached_us_is_not_recovered(
    trackstar, acme, customer, django_capture_on_commit_callbacks
):
    trackstar.dashboard_connect("shipbob", customer_id=customer.public_id, webhook=False)

    def two_minutes_later(exchange):
        # As if the visitor submitted the code two minutes after that connection was made.
        AuthCodeExchange.objects.filter(pk=exchange.pk).update(
            created_at=F("created_at") + timedelta(minutes=2)
        )

    exchange = _made_up_code_after_a_503(
        trackstar, acme, django_capture_on_commit_callbacks, before_processing=two_minutes_later
    )

    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert Connection.objects.count() == 0


def test_two_connections_that_could_be_the_lost_one_are_left_to_the_reconcile_job(
    trackstar, acme, customer, django_capture_on_commit_callbacks
):
    def two_appear(exchange):
        for _ in range(2):
            trackstar.dashboard_connect("shipbob", customer_id=customer.public_id, webhook=False)

    exchange = _made_up_code_after_a_503(
        trackstar, acme, django_capture_on_commit_callbacks, before_processing=two_appear
    )

    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert "more than one new connection" in exchange.last_error
    assert Connection.objects.count() == 0


def test_a_made_up_reconnect_code_after_a_503_does_not_pass_for_a_reconnect(
    trackstar, acme, customer, django_capture_on_commit_callbacks
):
    made, mine = own_connection(trackstar, customer, status=Connection.Status.NEEDS_RECONNECT)
    trackstar.break_connection(made["connection_id"])  # invalid_credentials: why it reconnects
    capture = django_capture_on_commit_callbacks

    made_up = store_reconnect(acme, capture, "ac_made_up", reconnect_token_for(acme, mine), mine)
    trackstar.set_faults(statuses=[503], paths="/link/exchange", count=1)
    with pytest.raises(TrackstarUnavailable):
        services.exchange_process(exchange_id=made_up.pk)
    made_up = process(made_up.pk, capture)

    assert made_up.status == AuthCodeExchange.Status.FAILED  # the credentials still fail
    assert trackstar.connection(made["connection_id"])["broken"] is True

    # The genuine lost answer: Trackstar reinstalled it, the worker died before saving.
    link_token = reconnect_token_for(acme, mine)
    code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_new"})
    genuine = store_reconnect(acme, capture, code, link_token, mine)
    trackstar.exchange(genuine.auth_code)
    AuthCodeExchange.objects.filter(pk=genuine.pk).update(attempts=1)
    genuine = process(genuine.pk, capture)

    assert genuine.status == AuthCodeExchange.Status.SUCCEEDED
    assert genuine.connection == mine
