"""The magic-link page carries our name and who sent the link (their name, never their
email or username), and every page a link can end on says whom to write to."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from connections.link import magic_links as magic_link_service
from connections.models import MagicLink
from tests.builders import make_customer, make_user

SUPPORT = "support@dockside.local"


@pytest.fixture
def jane(db):
    return make_user(
        username="jane.doe@dockside.example",
        email="jane.personal@mail.example",
        first_name="Jane",
        last_name="Doe",
        is_staff=True,
    )


def token_of(issued) -> str:
    return issued.url.rstrip("/").rsplit("/", 1)[-1]


def open_link(client, issued):
    return client.get(f"/connect/{token_of(issued)}/", follow=True)


def test_the_page_names_dockside_and_the_account_manager(client, customer, jane):
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=jane)

    response = open_link(client, issued)

    page = response.content.decode()
    assert response.status_code == 200
    assert '<span class="brand">Dockside</span>' in page
    assert "Jane Doe, your account manager at Dockside, sent you this link." in page
    assert SUPPORT in page
    assert "jane.personal@" not in page
    assert "jane.doe@" not in page  # a username is not a name to show


def test_a_link_issued_by_no_one_in_particular_still_says_it_is_from_us(client, customer):
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None)

    page = open_link(client, issued).content.decode()

    assert "Your account manager at Dockside sent you this link." in page


def test_a_sender_without_a_name_is_not_shown_by_username(client, customer):
    nameless = make_user(username="ops-robot@dockside.example", is_staff=True)
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=nameless)

    page = open_link(client, issued).content.decode()

    assert "ops-robot" not in page
    assert "Your account manager at Dockside sent you this link." in page


@pytest.mark.parametrize("name", ["Bright Botanicals", "Acme Outdoor"])
def test_the_page_title_names_the_customer_without_a_broken_possessive(client, jane, name):
    customer = make_customer(name=name)
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=jane)

    page = open_link(client, issued).content.decode()

    assert f"<title>Connect a warehouse system for {name} · Dockside</title>" in page
    assert "'s warehouse" not in page and "&#x27;s warehouse" not in page


@pytest.mark.parametrize(
    ("spend", "status", "heading"),
    [
        ({"use_count": 1}, 410, "This link was already used"),
        ({"revoked_at": timezone.now()}, 410, "This link was withdrawn"),
        ({"expires_at": timezone.now() - timedelta(days=1)}, 410, "This link has expired"),
    ],
)
def test_a_spent_link_says_why_whom_to_ask_and_where_to_write(
    client, customer, jane, spend, status, heading
):
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=jane)
    MagicLink.objects.filter(pk=issued.link.pk).update(**spend)

    response = client.get(f"/connect/{token_of(issued)}/")

    page = response.content.decode()
    assert response.status_code == status
    assert heading in page
    assert "Dockside" in page
    assert "Jane Doe" in page
    assert SUPPORT in page
    assert "jane.personal@" not in page


def test_the_used_link_page_does_not_say_expired(client, customer, jane):
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=jane)
    MagicLink.objects.filter(pk=issued.link.pk).update(use_count=1)

    page = client.get(f"/connect/{token_of(issued)}/").content.decode()

    assert "already used" in page
    assert "expired" not in page


def test_the_invalid_link_page_says_whom_to_contact(client, db):
    response = client.get("/connect/not-a-real-token-at-all-0123456789/")

    page = response.content.decode()
    assert response.status_code == 404
    assert "This link is not valid" in page
    assert f'href="mailto:{SUPPORT}"' in page
    assert '<span class="brand">Dockside</span>' in page


def test_the_too_many_guesses_page_says_whom_to_contact(settings, db):
    settings.CONNECT_TOKEN_MISS_LIMIT = 1
    guesser = Client(REMOTE_ADDR="198.51.100.213")
    for i in range(3):
        response = guesser.get(f"/connect/guess-{i}-0123456789abcdef0123456789/")

    assert response.status_code == 429
    assert SUPPORT in response.content.decode()


def test_a_page_opened_in_another_browser_says_whom_to_contact(client, db):
    response = client.get("/connect/?link=nothing")

    assert response.status_code == 403
    assert SUPPORT in response.content.decode()
