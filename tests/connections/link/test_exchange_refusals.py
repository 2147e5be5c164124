"""What an exchange refuses, what it deletes at Trackstar, and what it recovers: attacks on
store-token driven over HTTP against the sandbox (the worker's step is the service)."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from celery.exceptions import Retry
from django.db.models import F
from django.test import Client
from svix.webhooks import Webhook

from connections import task_retry as retry_policy
from connections.link import adoption as adoption_service
from connections.link import exchanges as exchange_service
from connections.link import magic_links as magic_link_service
from connections.link import tasks as exchange_tasks
from connections.models import (
    AuthCodeExchange,
    Connection,
    LinkTokenGrant,
    MagicLink,
    UnassignedConnection,
    WebhookEvent,
)
from connections.trackstar import TrackstarUnavailable
from connections.webhooks import services as webhook_service
from tests.builders import make_user
from tests.celery_tasks import catch_retries, run_as_worker

MAGIC = {"HTTP_X_DOCKSIDE_ACTOR": "magic-link"}
EXTENSIV = {"client_id": "c", "client_secret": "s", "tpl_guid": "g"}


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
        exchange_service,
        "refused_delete_enqueue",
        lambda *, exchange_id: enqueued.append(exchange_id) or True,
    )
    return enqueued


def process(exchange_id, capture):
    with capture(execute=True):
        exchange_service.exchange_process(exchange_id=exchange_id)
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
        adoption_service.connection_adopt(
            trackstar_connection_id=remote_id,
            access_token=trackstar.connection(remote_id)["access_token"],
            details=trackstar.get_connection(remote_id),
            customer_id=other_customer.public_id,
            seen_via=UnassignedConnection.SeenVia.WEBHOOK,
        )
        is None
    )
    exchange_service.exchange_refused_delete(exchange_id=exchange.pk)
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
        exchange_service.exchange_refused_delete(exchange_id=exchange.pk)

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
    exchange_service.exchanges_sweep()
    assert owed == [exchange.pk]
    exchange_service.exchange_refused_delete(exchange_id=exchange.pk)
    assert not remote_exists(trackstar, remote_id)


@pytest.fixture
def owed_delete(trackstar, acme, globex, owed, django_capture_on_commit_callbacks):
    """A refused exchange (Globex's code on Acme's page) whose connection is still to be
    deleted at Trackstar, which now answers 503 to it."""
    globex_code = trackstar.authorize(link_token_for(globex), "shipbob", {"api_key": "sk_g"})
    with django_capture_on_commit_callbacks(execute=False):
        store_token(acme, globex_code, link_token_for(acme))
    exchange = process(AuthCodeExchange.objects.get().pk, django_capture_on_commit_callbacks)
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.OWED
    trackstar.set_faults(statuses=[503], paths="/connections")
    owed.clear()
    return exchange


@pytest.fixture
def delete_retries(monkeypatch):
    """The countdowns the delete task asked to be retried with (instead of publishing);
    every backoff is 250 s (a late retry)."""
    monkeypatch.setattr(retry_policy, "backoff", lambda retries, **kwargs: 250.0)
    return catch_retries(monkeypatch, exchange_tasks.exchange_refused_delete)


def run_delete_task(exchange_id: int, retries: int = 0) -> None:
    run_as_worker(exchange_tasks.exchange_refused_delete, exchange_id, retries=retries)


def later(exchange, by: timedelta) -> None:
    """As if `by` had passed since the row was last touched (and its retry scheduled)."""
    AuthCodeExchange.objects.filter(pk=exchange.pk).update(
        updated_at=F("updated_at") - by,
        refused_delete_retry_at=F("refused_delete_retry_at") - by,
    )


def test_the_sweep_starts_no_second_delete_while_the_tasks_own_retry_is_due(
    owed_delete, owed, delete_retries
):
    with pytest.raises(Retry):
        run_delete_task(owed_delete.pk, retries=7)
    assert delete_retries == [250.0]

    later(owed_delete, timedelta(seconds=90))  # the retry is still 160 s away
    exchange_service.exchanges_sweep()
    assert owed == []
    later(owed_delete, timedelta(minutes=5))  # long overdue: that retry was lost
    exchange_service.exchanges_sweep()
    assert owed == [owed_delete.pk]


def test_a_delete_out_of_retries_waits_and_a_week_later_gives_up_telling_staff_once(
    trackstar, owed_delete, owed, delete_retries, mailoutbox
):
    run_delete_task(owed_delete.pk, retries=8)  # the last retry: no more of its own
    assert delete_retries == []

    later(owed_delete, timedelta(minutes=2))
    exchange_service.exchanges_sweep()
    assert owed == []  # not a new chain every minute: after a pause
    later(owed_delete, timedelta(minutes=15))
    exchange_service.exchanges_sweep()
    assert owed == [owed_delete.pk]
    assert mailoutbox == []

    # Trackstar has been down for a week of such tries.
    AuthCodeExchange.objects.filter(pk=owed_delete.pk).update(
        finished_at=F("finished_at") - timedelta(days=7)
    )
    run_delete_task(owed_delete.pk)  # no Retry: it ends here

    exchange = AuthCodeExchange.objects.get(pk=owed_delete.pk)
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.GAVE_UP
    assert exchange.refused_access_token == ""
    assert "7 days" in exchange.refused_delete_error
    [alert] = mailoutbox
    assert exchange.refused_connection_id in alert.subject
    assert "Trackstar's dashboard" in alert.body
    # Once: nothing retries it, nothing mails again, nothing adopts it meanwhile.
    later(exchange, timedelta(hours=1))
    owed.clear()
    exchange_service.exchanges_sweep()
    assert owed == []
    assert exchange_service.exchange_refused_delete(exchange_id=exchange.pk) is None
    assert len(mailoutbox) == 1
    trackstar.clear_faults()
    remote_id = exchange.refused_connection_id
    assert (
        adoption_service.connection_adopt(
            trackstar_connection_id=remote_id,
            access_token=trackstar.connection(remote_id)["access_token"],
            details=trackstar.get_connection(remote_id),
            customer_id=trackstar.connection(remote_id)["customer_id"],
            seen_via=UnassignedConnection.SeenVia.WEBHOOK,
        )
        is None
    )


def test_a_delete_with_no_token_to_do_it_with_ends_instead_of_looping(
    owed_delete, owed, mailoutbox
):
    AuthCodeExchange.objects.filter(pk=owed_delete.pk).update(refused_access_token="")

    exchange_service.exchange_refused_delete(exchange_id=owed_delete.pk)

    exchange = AuthCodeExchange.objects.get(pk=owed_delete.pk)
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.GAVE_UP
    assert "no access token" in exchange.refused_delete_error
    assert len(mailoutbox) == 1
    later(exchange, timedelta(minutes=10))
    exchange_service.exchanges_sweep()
    assert owed == []  # not re-run every minute


def test_an_answer_without_a_customer_id_is_bound_by_the_link_token_and_connected(
    trackstar, acme, customer, owed, django_capture_on_commit_callbacks, monkeypatch
):
    """The docs do not say Trackstar ever leaves customer_id out; if it does, that proves
    nothing against the customer, so the connection is stored, not refused and deleted."""
    code = trackstar.authorize(link_token_for(acme), "shipbob", {"api_key": "sk_1"})
    with django_capture_on_commit_callbacks(execute=False):
        assert store_token(acme, code, link_token_for(acme)).status_code == 202
    client = exchange_service.trackstar_client()
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


def test_a_link_token_is_taken_only_from_whom_it_was_handed_to(
    trackstar, acme, customer, portal_user, django_capture_on_commit_callbacks
):
    """A link token is one Link session's: another owner of the customer, the visitor of
    another of its magic links, or of the same customer's portal, cannot submit a code
    with it (a token seen over a shoulder, in a log, in a shared browser's history)."""
    colleague = Client()
    colleague.force_login(make_user(customer=customer))
    link_visitor = open_magic_link(customer)
    other_link_visitor = open_magic_link(customer)
    owners = link_token_for(acme)
    visitors = link_token_for(link_visitor, **MAGIC)

    with django_capture_on_commit_callbacks(execute=False):
        refused = [
            store_token(colleague, "ac_1", owners),
            store_token(link_visitor, "ac_2", owners, **MAGIC),
            store_token(other_link_visitor, "ac_3", visitors, **MAGIC),
            store_token(acme, "ac_4", visitors),
        ]
        mine = (
            store_token(acme, "ac_5", owners),
            store_token(link_visitor, "ac_6", visitors, **MAGIC),
        )

    assert [r.status_code for r in refused] == [403] * 4
    assert all("start on this page" in r.json()["error"] for r in refused)
    assert [r.status_code for r in mine] == [202, 202]
    assert AuthCodeExchange.objects.count() == 2  # nothing written for the refused ones
    assert [link.use_count for link in MagicLink.objects.order_by("pk")] == [1, 0]


def test_a_webhook_first_for_another_wms_than_the_page_said_is_not_adopted_past_the_exchange(
    trackstar, customer, owed, django_capture_on_commit_callbacks
):
    """A magic link allows ShipBob; the visitor connects ShipHero in Link and the page says
    "shipbob". Trackstar's connection.created arrives before the worker exchanges the code:
    it must not be adopted (active, syncing) under the customer, or the allow list is void."""
    issued = magic_link_service.magic_link_issue(
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
    result = exchange_service.trackstar_client().exchange_auth_code(auth_code=code)
    remote = trackstar.get_connection(result.connection_id)

    adopted = adoption_service.connection_adopt(
        trackstar_connection_id=result.connection_id,
        access_token=result.access_token,
        details=remote,
        customer_id=customer.public_id,
        seen_via=UnassignedConnection.SeenVia.WEBHOOK,
    )

    assert adopted is None  # the pending exchange decides
    assert Connection.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        exchange_service._complete(exchange, result)
    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert exchange.last_error == "This link does not allow that integration."
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.OWED
    assert owed == [exchange.pk]
    assert Connection.objects.count() == 0


# --- A code kept from store-token: what Link made is not adopted past the magic link --------


def deliver_connection_created(trackstar, made, svix_id="msg_created"):
    """Trackstar's connection.created for a connection Link made, over HTTP and signed
    (API.md §8, §10), then applied as the webhook worker does."""
    payload = {
        "connection_id": made["connection_id"],
        "integration_name": made["integration_name"],
        "integration_type": "general",
        "event_type": "connection.created",
        "customer_id": made["customer_id"],
        "data": {"created_date": "2026-12-01T10:00:00Z", "access_token": made["access_token"]},
    }
    body = json.dumps(payload)
    at = datetime.now(UTC)
    headers = {
        "HTTP_SVIX_ID": svix_id,
        "HTTP_SVIX_TIMESTAMP": str(int(at.timestamp())),
        "HTTP_SVIX_SIGNATURE": Webhook(trackstar.webhook_secret).sign(svix_id, at, body),
    }
    response = Client().post(
        "/webhooks/trackstar/", body, content_type="application/json", **headers
    )
    assert response.status_code == 200, response.content
    return webhook_service.webhook_apply(event_id=WebhookEvent.objects.get(svix_id=svix_id).pk)


def open_magic_link(customer, **kwargs) -> Client:
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None, **kwargs)
    visitor = Client()
    visitor.get(issued.url[issued.url.index("/connect/") :], follow=True)
    return visitor


def test_a_wms_the_link_does_not_allow_connected_without_store_token_is_not_adopted(
    trackstar, customer, staff_user, django_capture_on_commit_callbacks
):
    """A ShipBob-only link. The visitor takes the link token our page hands out, connects
    Extensiv in Link and never calls store-token. Trackstar made the connection with the
    customer's customer_id and says so in connection.created: adopting it gave the
    customer a WMS the link does not allow, and left the link unspent, to do it again."""
    visitor = open_magic_link(customer, allowed_integrations=["shipbob"])
    link_token = link_token_for(visitor, **MAGIC)
    code = trackstar.authorize(link_token, "extensiv-3pl-central", EXTENSIV)
    # Link makes the connection when the visitor finishes; the sandbox makes it when the
    # code is exchanged, so Trackstar's side of it is played here (no store-token).
    made = trackstar.exchange(code)
    assert made["customer_id"] == customer.public_id

    with django_capture_on_commit_callbacks(execute=True):
        event = deliver_connection_created(trackstar, made)

    assert event.status == WebhookEvent.Status.PROCESSED
    assert not Connection.objects.filter(customer=customer).exists()
    held = UnassignedConnection.objects.get(trackstar_connection_id=made["connection_id"])
    assert held.resolution == ""  # waiting for staff, with its token (they may assign it)
    assert "allows only ShipBob" in held.held_reason
    assert held.access_token == made["access_token"]
    link = MagicLink.objects.get()
    assert link.use_count == 0 and link.completed_at is None
    # Staff see it in the unassigned list, and why it waits for them.
    staff = Client()
    staff.force_login(staff_user)
    page = staff.get("/admin/connections/unassignedconnection/").content.decode()
    assert made["connection_id"] in page and "allows only ShipBob" in page
    # Nothing adopts it later either: the link token expires, the reconcile job comes.
    LinkTokenGrant.objects.update(expires_at=F("expires_at") - timedelta(hours=2))
    adoption_service.connections_reconcile()
    deliver_connection_created(trackstar, made, svix_id="msg_created_again")
    assert not Connection.objects.exists()
    assert remote_exists(trackstar, made["connection_id"])  # never deleted: staff decide


def test_an_allowed_wms_connected_without_store_token_does_not_leave_the_link_unspent(
    trackstar, customer, django_capture_on_commit_callbacks
):
    """The same with a WMS the link allows: a one-use link would otherwise make any
    number of connections, none of them spending its use."""
    visitor = open_magic_link(customer, allowed_integrations=["shipbob"])
    made = trackstar.exchange(
        trackstar.authorize(link_token_for(visitor, **MAGIC), "shipbob", {"api_key": "sk_1"})
    )

    with django_capture_on_commit_callbacks(execute=True):
        deliver_connection_created(trackstar, made)

    assert not Connection.objects.exists()
    held = UnassignedConnection.objects.get(trackstar_connection_id=made["connection_id"])
    assert "never reached Dockside" in held.held_reason
    assert MagicLink.objects.get().use_count == 0


def test_a_webhook_before_store_token_is_still_stored_by_its_exchange(
    trackstar, customer, acme, django_capture_on_commit_callbacks
):
    """The normal cases stay as they were: a magic link's connect whose connection.created
    arrives before its store-token is stored by the exchange (the wait for staff ends);
    a portal owner's unrestricted connect is adopted by the webhook, then stored; and a
    connection made in Trackstar's dashboard, no Link open, is adopted."""
    capture = django_capture_on_commit_callbacks
    visitor = open_magic_link(customer, allowed_integrations=["shipbob"])
    link_token = link_token_for(visitor, **MAGIC)
    code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_1"})
    exchange_result = exchange_service.trackstar_client().exchange_auth_code(auth_code=code)
    made = trackstar.get_connection(exchange_result.connection_id)
    made = {**made, "access_token": exchange_result.access_token}
    with capture(execute=True):
        deliver_connection_created(trackstar, made)
    with capture(execute=False):
        assert store_token(visitor, code, link_token, **MAGIC).status_code == 202
    exchange = AuthCodeExchange.objects.get()
    with capture(execute=True):
        exchange_service._complete(exchange, exchange_result)  # the worker's answer

    connection = Connection.objects.get(trackstar_connection_id=made["connection_id"])
    assert (connection.customer, connection.status) == (customer, Connection.Status.ACTIVE)
    held = UnassignedConnection.objects.get(trackstar_connection_id=made["connection_id"])
    assert held.resolution == UnassignedConnection.Resolution.ASSIGNED
    assert held.connection == connection
    assert MagicLink.objects.get().use_count == 1

    # A portal owner's own connect, its token open: adopted when its webhook comes first.
    owners = trackstar.exchange(
        trackstar.authorize(link_token_for(acme), "extensiv-3pl-central", EXTENSIV)
    )
    with capture(execute=True):
        deliver_connection_created(trackstar, owners, svix_id="msg_owner")
    assert Connection.objects.get(trackstar_connection_id=owners["connection_id"]).status == (
        Connection.Status.ACTIVE
    )

    # Made in Trackstar's dashboard for this customer: adopted as ever (the magic link's
    # token above is answered for by its exchange).
    dashboard = trackstar.dashboard_connect(
        "shipbob", customer_id=customer.public_id, webhook=False
    )
    with capture(execute=True):
        deliver_connection_created(trackstar, dashboard, svix_id="msg_dashboard")
    assert Connection.objects.get(trackstar_connection_id=dashboard["connection_id"]).customer == (
        customer
    )


# --- A refusal the visitor caused keeps the link's use; ours are never deleted ---------------


def test_a_magic_link_code_landing_on_another_customers_connection_spends_the_link(
    trackstar, customer, other_customer, owed, django_capture_on_commit_callbacks
):
    """The code reinstalled Globex's live connection (a link token naming it): refused, the
    one-use link stays used, and Globex's connection is left alone at Trackstar."""
    theirs, theirs_row = own_connection(trackstar, other_customer, api_key="sk_g")
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None)
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
    exchange_service.exchange_refused_delete(exchange_id=exchange.pk)
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
        exchange_service.exchange_process(exchange_id=exchange.pk)
    # The retry: Trackstar's 422 now reads like "this code was spent by the first try".
    return process(exchange.pk, capture)


def test_a_made_up_code_after_a_503_adopts_no_orphan_but_a_lost_answer_is_recovered(
    trackstar, acme, customer, other_customer, django_capture_on_commit_callbacks
):
    # Orphans of the same WMS at Trackstar: another customer's, and one of this customer's
    # that the reconcile job already keeps in the unassigned list (its webhook was lost).
    trackstar.dashboard_connect("shipbob", customer_id=other_customer.public_id, webhook=False)
    waiting = trackstar.dashboard_connect("shipbob", customer_id=customer.public_id, webhook=False)
    adoption_service.connections_reconcile()
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
        # As if the visitor opened Link, and submitted the code, two minutes after that
        # connection was made.
        AuthCodeExchange.objects.filter(pk=exchange.pk).update(
            created_at=F("created_at") + timedelta(minutes=2)
        )
        LinkTokenGrant.objects.filter(pk=exchange.link_token_id).update(
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
        exchange_service.exchange_process(exchange_id=made_up.pk)
    made_up = process(made_up.pk, capture)

    assert made_up.status == AuthCodeExchange.Status.FAILED
    assert trackstar.connection(made["connection_id"])["broken"] is True

    # The genuine lost answer: Trackstar reinstalled it, the worker died before saving.
    # Nothing at Trackstar tells it from the made-up one, so it fails too: harmless, the
    # connection keeps its id and token, and reconnecting again finishes it.
    link_token = reconnect_token_for(acme, mine)
    code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_new"})
    genuine = store_reconnect(acme, capture, code, link_token, mine)
    trackstar.exchange(genuine.auth_code)
    AuthCodeExchange.objects.filter(pk=genuine.pk).update(attempts=1)
    genuine = process(genuine.pk, capture)

    assert genuine.status == AuthCodeExchange.Status.FAILED
    assert genuine.last_error == exchange_service.REINSTALL_UNCONFIRMED
    mine.refresh_from_db()
    assert mine.status == Connection.Status.NEEDS_RECONNECT
    assert mine.access_token == made["access_token"]
    link_token = reconnect_token_for(acme, mine)
    code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_new"})
    again = process(store_reconnect(acme, capture, code, link_token, mine).pk, capture)
    assert again.status == AuthCodeExchange.Status.SUCCEEDED
    assert again.connection == mine


def test_a_made_up_code_after_a_503_on_a_reconnect_link_does_not_spend_it(
    trackstar, customer, django_capture_on_commit_callbacks
):
    """A healthy connection and a one-use reconnect link for it. The visitor submits a
    made-up code; Trackstar answers 503, then 422 to the retry. A healthy target used to
    count as "reinstalled": the exchange succeeded, the link was spent, nothing changed."""
    made, mine = own_connection(trackstar, customer)
    issued = magic_link_service.magic_link_issue(
        customer=customer, created_by=None, reinstall_connection=mine
    )
    visitor = Client()
    visitor.get(issued.url[issued.url.index("/connect/") :], follow=True)
    capture = django_capture_on_commit_callbacks
    with capture(execute=False):
        response = store_token(visitor, "ac_made_up", link_token_for(visitor, **MAGIC), **MAGIC)
    assert response.status_code == 202
    exchange = AuthCodeExchange.objects.get()
    assert exchange.reinstall_connection == mine
    trackstar.set_faults(statuses=[503], paths="/link/exchange", count=1)
    with pytest.raises(TrackstarUnavailable):
        exchange_service.exchange_process(exchange_id=exchange.pk)

    exchange = process(exchange.pk, capture)

    assert exchange.status == AuthCodeExchange.Status.FAILED
    status = visitor.get(response.json()["status_url"], **MAGIC).json()
    assert status["status"] == "failed" and "Please reconnect again" in status["error"]
    link = MagicLink.objects.get()
    assert link.use_count == 0 and link.is_usable  # the visitor may try again
    assert link.completed_at is None
    mine.refresh_from_db()
    assert (mine.status, mine.access_token) == (Connection.Status.ACTIVE, made["access_token"])


def test_a_lost_answer_is_recovered_though_the_code_reached_us_minutes_after_link(
    trackstar, acme, customer, django_capture_on_commit_callbacks
):
    """connect.js retries store-token for a minute or two (a 429, a dropped answer), while
    Link made the connection when the visitor finished: the window starts at the link
    token, not at the row."""
    link_token = link_token_for(acme)
    code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_1"})
    with django_capture_on_commit_callbacks(execute=False):
        response = store_token(acme, code, link_token)
    exchange = AuthCodeExchange.objects.get(public_id=response.json()["exchange_id"])
    made = trackstar.exchange(exchange.auth_code)  # the first attempt; its worker died
    AuthCodeExchange.objects.filter(pk=exchange.pk).update(
        attempts=1, created_at=F("created_at") + timedelta(minutes=2)
    )

    exchange = process(exchange.pk, django_capture_on_commit_callbacks)

    assert exchange.status == AuthCodeExchange.Status.SUCCEEDED
    assert exchange.connection.trackstar_connection_id == made["connection_id"]
    assert exchange.connection.customer == customer


def test_a_made_up_code_after_a_503_does_not_take_the_connection_of_a_connect_in_flight(
    trackstar, acme, customer, django_capture_on_commit_callbacks
):
    """Two connects of one customer (two tabs, two colleagues). The second one's code made
    its connection at Trackstar, and its worker has not stored it yet: the first one, a
    made-up code retried after a 503, must not pass it off as its own."""
    in_flight = {}

    def another_connect_reaches_trackstar(exchange):
        link_token = link_token_for(acme)
        code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_2"})
        response = store_token(acme, code, link_token)
        in_flight["exchange"] = AuthCodeExchange.objects.get(
            public_id=response.json()["exchange_id"]
        )
        in_flight["made"] = trackstar.exchange(code)  # its answer is on its way

    made_up = _made_up_code_after_a_503(
        trackstar,
        acme,
        django_capture_on_commit_callbacks,
        before_processing=another_connect_reaches_trackstar,
    )

    assert made_up.status == AuthCodeExchange.Status.FAILED
    assert made_up.connection is None
    assert Connection.objects.count() == 0
    # The other one's worker died too; its own retry recovers what is its.
    other = in_flight["exchange"]
    AuthCodeExchange.objects.filter(pk=other.pk).update(attempts=1)
    other = process(other.pk, django_capture_on_commit_callbacks)
    assert other.status == AuthCodeExchange.Status.SUCCEEDED
    assert other.connection.trackstar_connection_id == in_flight["made"]["connection_id"]
