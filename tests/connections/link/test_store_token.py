import json
import uuid

import pytest
from django.db import connection as db_connection

from connections.link import exchanges as exchange_service
from connections.models import AuthCodeExchange, Connection
from customers.models import Membership
from tests.builders import make_connection, make_link_token, make_user

URL = "/portal/store-token"


@pytest.fixture
def portal_client(client, portal_user):
    client.force_login(portal_user)
    return client


@pytest.fixture
def link_token(customer, portal_user):
    """One our get-link-token handed to this customer's page, for portal_user."""
    return make_link_token(customer=customer, user=portal_user)


def post(client, body, content_type="text/plain", *, link_token=None):
    if isinstance(body, dict) and link_token is not None:
        body = {"link_token": link_token, **body}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=data, content_type=content_type)


def test_store_token_writes_one_exchange_and_enqueues_it(
    portal_client, customer, link_token, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        # The seed's frontend sends text/plain; JSON is read whatever the content type.
        response = post(
            portal_client,
            {"auth_code": "ac_123", "integration_name": "shipbob"},
            link_token=link_token,
        )

    assert response.status_code == 202
    body = response.json()
    exchange = AuthCodeExchange.objects.get()
    assert body["exchange_id"] == str(exchange.public_id)
    assert body["status"] == "pending"
    assert body["status_url"] == f"/portal/exchanges/{exchange.public_id}"
    assert exchange.customer == customer
    assert exchange.source == "portal"
    assert exchange.link_token.customer == customer  # the grant it came with
    assert len(callbacks) == 1
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT auth_code FROM connections_authcodeexchange WHERE id = %s", [exchange.pk]
        )
        assert "ac_123" not in cursor.fetchone()[0]


def test_double_submit_is_one_exchange(
    portal_client, link_token, django_capture_on_commit_callbacks
):
    body = {"auth_code": "ac_same", "integration_name": "shipbob"}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = post(portal_client, body, link_token=link_token)
        second = post(portal_client, body, link_token=link_token)

    assert first.status_code == second.status_code == 202
    assert first.json()["exchange_id"] == second.json()["exchange_id"]
    assert AuthCodeExchange.objects.count() == 1
    assert len(callbacks) == 1


def test_matching_customer_id_is_accepted(portal_client, customer, link_token):
    response = post(
        portal_client,
        {"auth_code": "ac_1", "integration_name": "shipbob", "customer_id": customer.public_id},
        link_token=link_token,
    )

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("", 400, "must be a JSON object"),
        ("{not json", 400, "not valid JSON"),
        ("[1, 2]", 400, "must be a JSON object"),
        ({"integration_name": "shipbob"}, 400, "'auth_code' is required"),
        ({"auth_code": "ac_1"}, 400, "'integration_name' is required"),
        ({"auth_code": 123, "integration_name": "shipbob"}, 400, "must be a string"),
        ({"auth_code": "ac_1", "integration_name": ["shipbob"]}, 400, "must be a string"),
        ({"auth_code": "ac_1", "integration_name": "Not A Slug!"}, 400, "Unknown integration"),
        (
            {"auth_code": "ac_1", "integration_name": "shipbob", "connection_id": "x"},
            400,
            "must be a connection id",
        ),
        ({"auth_code": "x" * 20000, "integration_name": "shipbob"}, 413, "too large"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    portal_client, link_token, body, status, message
):
    response = post(portal_client, body, link_token=link_token)

    assert response.status_code == status
    assert message in response.json()["error"]
    assert AuthCodeExchange.objects.count() == 0


def test_a_foreign_customer_id_is_refused(portal_client, other_customer, link_token):
    response = post(
        portal_client,
        {
            "auth_code": "ac_1",
            "integration_name": "shipbob",
            "customer_id": other_customer.public_id,
        },
        link_token=link_token,
    )

    assert response.status_code == 403
    assert AuthCodeExchange.objects.count() == 0


def test_anonymous_visitors_cannot_store_tokens(client, db):
    response = post(client, {"auth_code": "ac_1", "integration_name": "shipbob"})

    assert response.status_code == 403
    assert "error" in response.json()
    assert AuthCodeExchange.objects.count() == 0


def test_get_is_not_allowed(portal_client):
    assert portal_client.get(URL).status_code == 405


def test_another_customers_auth_code_is_refused(
    client, portal_user, other_portal_user, link_token, django_capture_on_commit_callbacks
):
    body = {"auth_code": "ac_shared", "integration_name": "shipbob"}
    client.force_login(other_portal_user)
    theirs = make_link_token(
        customer=other_portal_user.memberships.get().customer, user=other_portal_user
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert post(client, body, link_token=theirs).status_code == 202
    client.force_login(portal_user)

    response = post(client, body, link_token=link_token)

    assert response.status_code == 409
    assert AuthCodeExchange.objects.count() == 1


def test_a_non_ascii_digit_id_is_a_400_not_a_500(portal_client, link_token):
    response = post(
        portal_client,
        {"auth_code": "ac_1", "integration_name": "shipbob", "connection_id": "²"},
        link_token=link_token,
    )

    assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_the_same_code_submitted_at_the_same_moment_is_one_exchange(
    portal_user, customer, monkeypatch
):
    import threading

    from django.test import Client

    monkeypatch.setattr(exchange_service, "exchange_enqueue", lambda *, exchange_id: True)
    link_token = make_link_token(customer=customer, user=portal_user)
    barrier = threading.Barrier(4)
    answers = []

    def submit():
        from django.db import connection as db_connection

        client = Client()
        client.force_login(portal_user)
        barrier.wait()
        response = post(
            client, {"auth_code": "ac_race", "integration_name": "shipbob"}, link_token=link_token
        )
        answers.append((response.status_code, response.json().get("exchange_id")))
        db_connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {status for status, _ in answers} == {202}
    assert len({exchange_id for _, exchange_id in answers}) == 1
    assert AuthCodeExchange.objects.count() == 1


# --- The link token Link was opened with --------------------------------------------------


def test_a_code_without_the_link_token_is_refused(portal_client):
    response = post(portal_client, {"auth_code": "ac_1", "integration_name": "shipbob"})

    assert response.status_code == 400
    assert "'link_token' is required" in response.json()["error"]
    assert AuthCodeExchange.objects.count() == 0


@pytest.mark.parametrize("whose", ["other customer", "never minted"])
def test_a_link_token_this_customer_never_received_is_refused(
    portal_client, other_customer, other_portal_user, whose
):
    token = (
        make_link_token(customer=other_customer, user=other_portal_user)
        if whose == "other customer"
        else "lt_x"
    )

    response = post(
        portal_client, {"auth_code": "ac_1", "integration_name": "shipbob"}, link_token=token
    )

    assert response.status_code == 403
    assert "start on this page" in response.json()["error"]
    assert AuthCodeExchange.objects.count() == 0


def test_an_expired_link_token_is_refused(portal_client, customer, link_token):
    from datetime import timedelta

    from django.utils import timezone

    from connections.models import LinkTokenGrant

    LinkTokenGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = post(
        portal_client, {"auth_code": "ac_1", "integration_name": "shipbob"}, link_token=link_token
    )

    assert response.status_code == 410
    assert AuthCodeExchange.objects.count() == 0


def test_a_link_token_for_another_reconnect_is_refused(
    portal_client, portal_user, customer, connection
):
    from tests.builders import make_connection

    other = make_connection(customer=customer)
    body = {"auth_code": "ac_1", "integration_name": "shipbob"}
    for token, target in [
        (make_link_token(customer=customer, user=portal_user, reinstall=connection), None),
        (make_link_token(customer=customer, user=portal_user), connection.pk),
        (make_link_token(customer=customer, user=portal_user, reinstall=other), connection.pk),
    ]:
        extra = {"connection_id": target} if target else {}
        response = post(portal_client, {**body, **extra}, link_token=token)
        assert response.status_code == 409
    assert AuthCodeExchange.objects.count() == 0


def test_get_link_token_hands_out_a_token_store_token_then_takes(
    trackstar, portal_client, other_portal_user, customer
):
    from django.test import Client

    token = portal_client.post("/portal/get-link-token", "{}", content_type="text/plain").json()[
        "link_token"
    ]
    theirs_client = Client()
    theirs_client.force_login(other_portal_user)
    theirs = theirs_client.post("/portal/get-link-token", "{}", content_type="text/plain").json()[
        "link_token"
    ]
    body = {"auth_code": "ac_1", "integration_name": "shipbob"}

    # Another customer's token, fresh from our own endpoint, is no key to this one.
    assert post(portal_client, body, link_token=theirs).status_code == 403
    response = post(portal_client, body, link_token=token)

    assert response.status_code == 202
    exchange = AuthCodeExchange.objects.get()
    assert exchange.customer == customer
    assert exchange.link_token.customer == customer
    assert token not in exchange.link_token.token_hash  # only its SHA-256 is kept


def _recovered_without_token(customer, *, user=None):
    """An exchange that succeeded by recovery, its connection still waiting for its token."""
    connection = make_connection(
        customer=customer,
        access_token="",
        status=Connection.Status.NEEDS_RECONNECT,
        reconnect_cause=Connection.ReconnectCause.TOKEN_MISSING,
        last_error="The connection was made, but its access token did not reach us.",
    )
    exchange = AuthCodeExchange.objects.create(
        customer=customer,
        auth_code_hash=uuid.uuid4().hex,
        integration_name="shipbob",
        source=Connection.Source.PORTAL,
        created_by=user,
        status=AuthCodeExchange.Status.SUCCEEDED,
        connection=connection,
    )
    return exchange, connection


@pytest.mark.parametrize("role", [Membership.Role.OWNER, Membership.Role.MEMBER])
def test_the_status_of_a_recovery_without_token_says_reconnect_to_finish(client, customer, role):
    user = make_user(customer=customer, role=role)
    client.force_login(user)
    exchange, connection = _recovered_without_token(customer, user=user)

    body = client.get(f"/portal/exchanges/{exchange.public_id}").json()

    assert body["status"] == "succeeded"
    assert body["reconnect_to_finish"] is True
    assert body["message"].startswith("Almost there: reconnect to finish.")
    assert body["connection"]["status"] == "needs_reconnect"
    if role == Membership.Role.OWNER:
        # What the page sends to get-link-token to reconnect that very connection.
        assert body["reconnect_connection_id"] == str(connection.pk)
    else:
        assert body["reconnect_connection_id"] is None
        assert "An owner of your account" in body["message"]
    # Once the token came (a late connection.created), it is an ordinary success.
    Connection.objects.filter(pk=connection.pk).update(
        status=Connection.Status.ACTIVE, reconnect_cause="", access_token="tok"
    )
    body = client.get(f"/portal/exchanges/{exchange.public_id}").json()
    assert body["reconnect_to_finish"] is False and body["message"] == ""
