import hashlib
import json
import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from connections import services
from connections.link import exchanges as exchange_service
from connections.link import magic_links as magic_link_service
from connections.link.endpoints import MAGIC_LINK_SESSION_KEY, magic_link_page_ref
from connections.models import AuthCodeExchange, Connection, MagicLink
from tests.builders import make_connection, make_link_token

MAGIC = {"HTTP_X_DOCKSIDE_ACTOR": "magic-link"}


def issue(customer, **kwargs):
    return magic_link_service.magic_link_issue(customer=customer, created_by=None, **kwargs)


def token_of(issued) -> str:
    return issued.url.rstrip("/").rsplit("/", 1)[-1]


def store(client, auth_code="ac_1", integration="shipbob", **extra):
    """store-token from the link's page, with a link token our get-link-token would have
    handed that page (the link's customer, and its reinstall connection if any)."""
    from connections.link.endpoints import MAGIC_LINK_SESSION_KEY as grant_key

    link = MagicLink.objects.filter(pk=(client.session.get(grant_key) or [None])[-1]).first()
    if link is not None and "link_token" not in extra:
        extra["link_token"] = make_link_token(
            customer=link.customer, reinstall=link.reinstall_connection, magic_link=link
        )
    body = json.dumps({"auth_code": auth_code, "integration_name": integration, **extra})
    return client.post("/portal/store-token", body, content_type="text/plain", **MAGIC)


def test_only_the_hash_of_the_token_is_stored(customer, staff_user):
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=staff_user)

    token = token_of(issued)
    assert len(token) >= 43  # 32 random bytes, url-safe base64
    assert issued.link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not MagicLink.objects.filter(token_hash__contains=token).exists()
    entry = AuditEntry.objects.get(action="magic_link.issued")
    assert (entry.actor, entry.customer) == (staff_user, customer)
    assert token not in json.dumps(entry.detail)


def test_issuing_can_email_the_contact(customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        issued = issue(customer, email_to=customer.contact_email)

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [customer.contact_email]
    assert issued.url in mail.outbox[0].body


def test_expiry_is_bounded(customer):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        issue(customer, expires_in_days=31)


def test_opening_shows_the_customer_and_consumes_nothing(client, customer):
    issued = issue(customer)

    first = client.get(f"/connect/{token_of(issued)}/", follow=True)
    second = client.get(f"/connect/{token_of(issued)}/", follow=True)

    assert first.status_code == second.status_code == 200
    assert customer.name in first.content.decode()
    link = MagicLink.objects.get()
    assert link.use_count == 0
    assert link.open_count == 2
    assert link.first_opened_at is not None
    assert link.state == MagicLink.State.ACTIVE


def test_the_token_leaves_the_address_bar_after_the_first_get(client, customer):
    issued = issue(customer)
    token = token_of(issued)

    opened = client.get(f"/connect/{token}/")

    # The grant goes into the session, and the browser on to a URL without the token.
    assert opened.status_code == 302
    assert opened["Location"] == f"/connect/?link={magic_link_page_ref(issued.link.pk)}"
    assert opened["Referrer-Policy"] == "no-referrer"
    assert "no-store" in opened["Cache-Control"]
    page = client.get(opened["Location"])
    assert page.status_code == 200
    assert token not in page.request["PATH_INFO"] and token not in page.content.decode()
    assert customer.name in page.content.decode()
    assert "no-store" in page["Cache-Control"]
    # A reload of that page is not another visit; the session holds the grant it acts by.
    assert client.get(opened["Location"]).status_code == 200
    assert MagicLink.objects.get().open_count == 1
    assert client.session[MAGIC_LINK_SESSION_KEY] == [issued.link.pk]


def test_two_links_opened_in_one_browser_each_act_for_their_own_tab(client, customer):
    """Two reconnect emails, opened one after the other: the first tab's page (and a reload
    of it) still reconnects the first connection, not the one the newer link names."""
    first = make_connection(customer=customer, trackstar_connection_id="conn_first")
    second = make_connection(customer=customer, trackstar_connection_id="conn_second")
    link_one = issue(customer, reinstall_connection=first)
    link_two = issue(customer, reinstall_connection=second)
    tab_one = client.get(f"/connect/{token_of(link_one)}/")["Location"]
    tab_two = client.get(f"/connect/{token_of(link_two)}/")["Location"]
    assert tab_one != tab_two

    page_one = client.get(tab_one)  # a reload of the first tab
    config = page_one.context["link_config"]
    ref = config["headers"]["X-Dockside-Link"]
    assert ref == magic_link_page_ref(link_one.link.pk)
    assert config["reinstallConnectionId"] == first.pk

    seen = []
    fake = lambda *, customer, reinstall, **actor: seen.append(reinstall) or "lt_fake"  # noqa: E731
    with mock.patch.object(exchange_service, "link_token_create", fake):
        for headers in ({"HTTP_X_DOCKSIDE_LINK": ref}, {}):
            response = client.post(
                "/portal/get-link-token", "{}", content_type="text/plain", **MAGIC, **headers
            )
            assert response.status_code == 200
        # A reference this session never opened acts for nothing.
        stranger = client.post(
            "/portal/get-link-token",
            "{}",
            content_type="text/plain",
            HTTP_X_DOCKSIDE_LINK="0" * 32,
            **MAGIC,
        )
    assert seen == [first, second]  # the tab's own link; without a reference, the newest
    assert stranger.status_code == 403


def test_the_token_free_page_without_a_grant_asks_to_open_the_link_again(client, customer):
    issue(customer)

    response = client.get("/connect/")

    assert response.status_code == 403
    page = response.content.decode()
    assert "Open the link from your email again" in page
    assert "support@dockside.local" in page
    assert customer.name not in page


def test_the_token_free_page_says_so_when_the_link_was_spent_meanwhile(client, customer):
    issued = issue(customer)
    client.get(f"/connect/{token_of(issued)}/")
    MagicLink.objects.filter(pk=issued.link.pk).update(use_count=1)

    response = client.get("/connect/")

    assert response.status_code == 410
    assert "already used" in response.content.decode()


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"expires_at": timezone.now() - timedelta(minutes=1)}, "expired"),
        ({"revoked_at": timezone.now()}, "withdrawn"),
        ({"use_count": 1}, "already used"),
    ],
)
def test_unusable_links_are_410_with_a_friendly_page(client, customer, change, text):
    issued = issue(customer)
    MagicLink.objects.filter(pk=issued.link.pk).update(**change)

    response = client.get(f"/connect/{token_of(issued)}/")

    assert response.status_code == 410  # on the first GET: nothing to carry over
    assert text in response.content.decode()
    assert "support@" in response.content.decode()  # whom to contact
    assert response["Referrer-Policy"] == "no-referrer"
    assert client.get("/connect/").status_code == 403  # and no grant was given


def test_an_unknown_token_is_404_and_guessing_is_throttled(client, db, settings):
    from django.core.cache import cache

    cache.clear()
    settings.CONNECT_TOKEN_MISS_LIMIT = 3
    statuses = [client.get(f"/connect/guess{i}/").status_code for i in range(5)]

    assert statuses == [404, 404, 404, 429, 429]
    cache.clear()


def test_visitor_connects_through_the_link(client, customer, django_capture_on_commit_callbacks):
    issued = issue(customer)
    client.get(f"/connect/{token_of(issued)}/")

    with django_capture_on_commit_callbacks(execute=False):
        response = store(client)

    assert response.status_code == 202
    exchange = AuthCodeExchange.objects.get()
    assert (exchange.customer, exchange.source) == (customer, Connection.Source.MAGIC_LINK)
    assert exchange.magic_link == issued.link
    assert MagicLink.objects.get().use_count == 1
    # The status URL works for the visitor, who has no account.
    status = client.get(response.json()["status_url"], **MAGIC)
    assert status.json()["status"] == "pending"


def test_a_used_link_refuses_a_second_connection(
    client, customer, django_capture_on_commit_callbacks
):
    issued = issue(customer)
    client.get(f"/connect/{token_of(issued)}/")
    with django_capture_on_commit_callbacks(execute=False):
        assert store(client, auth_code="ac_1").status_code == 202

        response = store(client, auth_code="ac_2")

    assert response.status_code == 410
    assert AuthCodeExchange.objects.count() == 1


def test_the_allow_list_is_enforced_on_the_server(client, customer):
    issued = issue(customer, allowed_integrations=["shiphero"])
    client.get(f"/connect/{token_of(issued)}/")

    response = store(client, integration="shipbob")

    assert response.status_code == 403
    assert AuthCodeExchange.objects.count() == 0
    assert MagicLink.objects.get().use_count == 0


def test_a_reinstall_link_reconnects_its_connection_whatever_the_page_sends(
    client, customer, django_capture_on_commit_callbacks
):
    target = make_connection(customer=customer, status=Connection.Status.NEEDS_RECONNECT)
    other = make_connection(customer=customer)
    issued = issue(customer, reinstall_connection=target)
    client.get(f"/connect/{token_of(issued)}/")

    with django_capture_on_commit_callbacks(execute=False):
        response = store(client, connection_id=other.pk)

    assert response.status_code == 202
    assert AuthCodeExchange.objects.get().reinstall_connection == target


def test_without_the_header_a_link_grant_does_not_act_as_the_portal(client, customer):
    issued = issue(customer)
    client.get(f"/connect/{token_of(issued)}/")

    response = client.post(
        "/portal/store-token",
        json.dumps({"auth_code": "a", "integration_name": "shipbob"}),
        content_type="text/plain",
    )

    assert response.status_code == 403


def test_a_failed_exchange_gives_the_use_back(
    customer, trackstar, django_capture_on_commit_callbacks
):
    issued = issue(customer)
    with django_capture_on_commit_callbacks(execute=False):
        exchange = exchange_service.exchange_submit(
            customer=customer,
            auth_code="made-up",
            link_token=make_link_token(customer=customer, magic_link=issued.link),
            integration_name="shipbob",
            source=Connection.Source.MAGIC_LINK,
            magic_link=issued.link,
        ).exchange
    assert MagicLink.objects.get().use_count == 1

    exchange_service.exchange_process(exchange_id=exchange.pk)

    assert MagicLink.objects.get().use_count == 0
    assert MagicLink.objects.get().state == MagicLink.State.ACTIVE


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_completions_of_a_one_use_link_let_exactly_one_through(
    customer, monkeypatch
):
    monkeypatch.setattr(exchange_service, "exchange_enqueue", lambda *, exchange_id: True)
    issued = issue(customer)
    token = token_of(issued)
    barrier = threading.Barrier(2)
    statuses = []

    def visitor(n: int) -> None:
        from django.db import connection as db_connection

        client = Client()
        client.get(f"/connect/{token}/")
        barrier.wait()
        statuses.append(store(client, auth_code=f"ac_{n}").status_code)
        db_connection.close()

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [202, 410]
    assert AuthCodeExchange.objects.count() == 1
    assert MagicLink.objects.get().use_count == 1


def test_expiry_task_stamps_links_that_ran_out(customer):
    ran_out = issue(customer).link
    live = issue(customer).link
    MagicLink.objects.filter(pk=ran_out.pk).update(expires_at=timezone.now() - timedelta(days=1))

    assert magic_link_service.magic_links_expire() == 1
    assert MagicLink.objects.get(pk=ran_out.pk).expired_at is not None
    assert MagicLink.objects.get(pk=live.pk).expired_at is None


def test_a_plain_link_cannot_reinstall_another_connection(
    client, customer, django_capture_on_commit_callbacks
):
    existing = make_connection(customer=customer)
    issued = issue(customer)
    client.get(f"/connect/{token_of(issued)}/")

    with django_capture_on_commit_callbacks(execute=False):
        response = store(client, connection_id=existing.pk)

    assert response.status_code == 202
    assert AuthCodeExchange.objects.get().reinstall_connection is None


def test_the_allow_list_holds_even_if_the_browser_lies(
    client, customer, trackstar, monkeypatch, django_capture_on_commit_callbacks
):
    issued = issue(customer, allowed_integrations=["shiphero"])
    client.get(f"/connect/{token_of(issued)}/", follow=True)
    response = client.post("/portal/get-link-token", "{}", content_type="text/plain", **MAGIC)
    link_token = response.json()["link_token"]
    # Link's allow list is only a filter in the browser: the visitor connects ShipBob.
    auth_code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_1"})
    owed = []
    monkeypatch.setattr(
        exchange_service, "refused_delete_enqueue", lambda *, exchange_id: owed.append(1)
    )
    with django_capture_on_commit_callbacks(execute=False):
        # The page claims ShipHero.
        response = store(client, auth_code=auth_code, integration="shiphero", link_token=link_token)
    assert response.status_code == 202
    exchange = AuthCodeExchange.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        exchange_service.exchange_process(exchange_id=exchange.pk)

    exchange.refresh_from_db()
    assert exchange.status == AuthCodeExchange.Status.FAILED
    assert "does not allow" in exchange.last_error
    assert Connection.objects.count() == 0
    # The visitor caused it: the one-use link stays used, so it cannot make another.
    assert MagicLink.objects.get().use_count == 1
    assert store(client, auth_code="ac_again", integration="shiphero").status_code == 410
    # The ShipBob connection holding the visitor's credentials is deleted at Trackstar,
    # after the commit.
    remote_id = exchange.refused_connection_id
    assert trackstar.get(f"/_sandbox/connections/{remote_id}").status_code == 200
    assert owed == [1]
    exchange_service.exchange_refused_delete(exchange_id=exchange.pk)
    assert trackstar.get(f"/_sandbox/connections/{remote_id}").status_code == 404
    exchange.refresh_from_db()
    assert exchange.refused_delete == AuthCodeExchange.RefusedDelete.DELETED
    assert exchange.refused_access_token == ""


def test_a_spent_link_names_our_support_address_not_the_staff_member(client, customer):
    from tests.builders import make_user

    staff = make_user(username="jane", email="jane.personal@dockside.example", is_staff=True)
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=staff)
    MagicLink.objects.filter(pk=issued.link.pk).update(revoked_at=timezone.now())

    page = client.get(f"/connect/{token_of(issued)}/").content.decode()

    assert "jane.personal@" not in page
    assert "support@dockside.local" in page


def test_the_invalid_link_page_says_whom_to_contact(client, db):
    page = client.get("/connect/not-a-real-token-at-all-0123456789/").content.decode()

    assert "support@dockside.local" in page


@pytest.mark.parametrize("max_uses", [1, 2])
def test_a_link_visitor_learns_how_a_recovery_without_its_token_finishes(
    client, customer, max_uses, django_capture_on_commit_callbacks
):
    issued = issue(customer, max_uses=max_uses)
    client.get(f"/connect/{token_of(issued)}/")
    with django_capture_on_commit_callbacks(execute=False):
        response = store(client)
    # The worker died after Trackstar answered; the retry recovered the connection, without
    # its token, and the customer's contact was emailed a reconnect link.
    connection = make_connection(
        customer=customer, access_token="", status=Connection.Status.PENDING
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.connection_mark_needs_reconnect(
            connection_id=connection.pk,
            reason="The connection was made, but its access token did not reach us.",
            cause=Connection.ReconnectCause.TOKEN_MISSING,
        )
    AuthCodeExchange.objects.update(status=AuthCodeExchange.Status.SUCCEEDED, connection=connection)

    body = client.get(response.json()["status_url"], **MAGIC).json()

    assert body["reconnect_to_finish"] is True
    assert body["message"].startswith("Almost there: reconnect to finish.")
    if max_uses == 1:
        # The link is used up: the emailed link does it.
        assert body["reconnect_connection_id"] is None
        assert "emailed" in body["message"]
    else:
        # A use is left: the page reconnects it, named by a reference bound to the link.
        from connections.link.services import magic_link_reconnect_ref

        assert body["reconnect_connection_id"] == magic_link_reconnect_ref(issued.link, connection)


@pytest.mark.parametrize("state", ["spent", "unknown"])
def test_a_link_page_that_stays_on_the_token_url_keeps_the_token_out_of_the_log(
    client, customer, caplog, state
):
    """A spent or unknown link answers on /connect/<token>/ itself; Django logs that 410/404
    with the path. The token must not reach the log (or the admins' error mail)."""
    issued = issue(customer)
    token = token_of(issued)
    if state == "spent":
        MagicLink.objects.filter(pk=issued.link.pk).update(use_count=1)
    else:
        token = token[::-1]

    with caplog.at_level("WARNING", logger="django.request"):
        response = client.get(f"/connect/{token}/")

    assert response.status_code in (404, 410)
    lines = [r.getMessage() for r in caplog.records if r.name == "django.request"]
    assert lines and all(token not in line for line in lines)
    assert any("/connect/<token>/" in line for line in lines)
