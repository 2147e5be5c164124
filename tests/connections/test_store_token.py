import json

import pytest
from django.db import connection as db_connection

from connections.models import AuthCodeExchange

URL = "/portal/store-token"


@pytest.fixture
def portal_client(client, portal_user):
    client.force_login(portal_user)
    return client


def post(client, body, content_type="text/plain"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=data, content_type=content_type)


def test_store_token_writes_one_exchange_and_enqueues_it(
    portal_client, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        # The seed's frontend sends text/plain; JSON is read whatever the content type.
        response = post(portal_client, {"auth_code": "ac_123", "integration_name": "shipbob"})

    assert response.status_code == 202
    body = response.json()
    exchange = AuthCodeExchange.objects.get()
    assert body["exchange_id"] == str(exchange.public_id)
    assert body["status"] == "pending"
    assert body["status_url"] == f"/portal/exchanges/{exchange.public_id}"
    assert exchange.customer == customer
    assert exchange.source == "portal"
    assert len(callbacks) == 1
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT auth_code FROM connections_authcodeexchange WHERE id = %s", [exchange.pk]
        )
        assert "ac_123" not in cursor.fetchone()[0]


def test_double_submit_is_one_exchange(portal_client, django_capture_on_commit_callbacks):
    body = {"auth_code": "ac_same", "integration_name": "shipbob"}
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = post(portal_client, body)
        second = post(portal_client, body)

    assert first.status_code == second.status_code == 202
    assert first.json()["exchange_id"] == second.json()["exchange_id"]
    assert AuthCodeExchange.objects.count() == 1
    assert len(callbacks) == 1


def test_matching_customer_id_is_accepted(portal_client, customer):
    response = post(
        portal_client,
        {"auth_code": "ac_1", "integration_name": "shipbob", "customer_id": customer.public_id},
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
def test_bad_input_is_a_clear_4xx_and_writes_nothing(portal_client, body, status, message):
    response = post(portal_client, body)

    assert response.status_code == status
    assert message in response.json()["error"]
    assert AuthCodeExchange.objects.count() == 0


def test_a_foreign_customer_id_is_refused(portal_client, other_customer):
    response = post(
        portal_client,
        {
            "auth_code": "ac_1",
            "integration_name": "shipbob",
            "customer_id": other_customer.public_id,
        },
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
    client, portal_user, other_portal_user, django_capture_on_commit_callbacks
):
    body = {"auth_code": "ac_shared", "integration_name": "shipbob"}
    client.force_login(other_portal_user)
    with django_capture_on_commit_callbacks(execute=False):
        assert post(client, body).status_code == 202
    client.force_login(portal_user)

    response = post(client, body)

    assert response.status_code == 409
    assert AuthCodeExchange.objects.count() == 1


def test_a_non_ascii_digit_id_is_a_400_not_a_500(portal_client):
    response = post(
        portal_client, {"auth_code": "ac_1", "integration_name": "shipbob", "connection_id": "²"}
    )

    assert response.status_code == 400


@pytest.mark.django_db(transaction=True)
def test_the_same_code_submitted_at_the_same_moment_is_one_exchange(portal_user, monkeypatch):
    import threading

    from django.test import Client

    from connections import services

    monkeypatch.setattr(services.exchanges, "exchange_enqueue", lambda *, exchange_id: True)
    barrier = threading.Barrier(4)
    answers = []

    def submit():
        from django.db import connection as db_connection

        client = Client()
        client.force_login(portal_user)
        barrier.wait()
        response = post(client, {"auth_code": "ac_race", "integration_name": "shipbob"})
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
