""" "Forgot your password?": Django's reset views under /portal/password-reset/, emailed
(locmem outbox here), saying the same whether or not an account has the address, limited
per address and per email, and landing in the portal logged in."""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from customers.models import Membership
from customers.services import invitation_url
from tests.builders import PASSWORD, make_customer, make_user

NEW_PASSWORD = "a-much-better-passphrase-42"
LINK = re.compile(r"https?://\S+/portal/password-reset/[^/\s]+/[^/\s]+/")


@pytest.fixture
def browser_client():
    """A client from an address of its own: the request limits live in Redis, outside the
    test's transaction."""
    return Client(REMOTE_ADDR=f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7")


@pytest.fixture
def email():
    return f"jane-{uuid.uuid4().hex[:8]}@acme-outdoor.example"


@pytest.fixture
def jane(customer, email):
    return make_user(username=f"jane-{uuid.uuid4().hex[:6]}", email=email, customer=customer)


def ask(client, email):
    return client.post("/portal/password-reset/", {"email": email}, follow=True)


def emailed_link(message) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(0)


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def set_password(client, url, password=NEW_PASSWORD):
    form = client.get(path_of(url), follow=True)
    assert form.status_code == 200
    assert "Choose a new password" in form.content.decode()
    return client.post(
        form.redirect_chain[-1][0],
        {"new_password1": password, "new_password2": password},
    )


def test_request_email_link_new_password_and_logged_in(browser_client, jane, email, settings):
    settings.DOCKSIDE_BASE_URL = "https://portal.dockside.example"
    page = browser_client.get("/portal/password-reset/")
    assert page.status_code == 200

    sent = ask(browser_client, email)

    assert sent.redirect_chain[-1][0] == "/portal/password-reset/sent/"
    assert "Check your email" in sent.content.decode()
    (message,) = mail.outbox
    assert message.to == [email]
    assert jane.username in message.body
    url = emailed_link(message)
    assert url.startswith("https://portal.dockside.example/portal/password-reset/")

    done = set_password(browser_client, url)

    assert done.status_code == 302
    assert done["Location"] == "/portal/"
    assert browser_client.get("/portal/").status_code == 200  # logged in, in the portal
    jane.refresh_from_db()
    assert jane.check_password(NEW_PASSWORD)
    fresh = Client(REMOTE_ADDR="192.0.2.77")
    old = fresh.post("/portal/login/", {"username": jane.username, "password": PASSWORD})
    new = fresh.post("/portal/login/", {"username": jane.username, "password": NEW_PASSWORD})
    assert old.status_code == 200  # the old password no longer works
    assert new.status_code == 302


def test_an_unknown_address_gets_the_same_page_and_no_email(browser_client, jane, email):
    known = ask(browser_client, email)
    mail.outbox.clear()

    unknown = ask(browser_client, f"nobody-{uuid.uuid4().hex[:6]}@acme-outdoor.example")

    assert mail.outbox == []
    assert unknown.redirect_chain == known.redirect_chain
    assert unknown.status_code == known.status_code == 200
    strip = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')
    assert strip.sub("", unknown.content.decode()) == strip.sub("", known.content.decode())


def test_the_address_is_matched_without_regard_to_case(browser_client, jane, email):
    ask(browser_client, email.upper())

    assert [m.to for m in mail.outbox] == [[email]]


def test_a_used_reset_link_says_already_used_and_links_to_login(browser_client, jane, email):
    ask(browser_client, email)
    url = emailed_link(mail.outbox[0])
    set_password(browser_client, url)

    again = Client().get(path_of(url))

    page = again.content.decode()
    assert again.status_code == 410
    assert "already used" in page
    assert "expired" not in page
    assert 'href="/portal/login/"' in page
    jane.refresh_from_db()
    assert jane.check_password(NEW_PASSWORD)


def test_an_unused_link_after_a_login_does_not_claim_a_new_password_was_set(
    browser_client, jane, email
):
    """A login ends a reset link too (Django's token hashes last_login): the page cannot
    tell that from a used link, so it says what is true of both."""
    ask(browser_client, email)
    url = emailed_link(mail.outbox[0])
    logged_in = Client(REMOTE_ADDR="192.0.2.78")
    assert (
        logged_in.post(
            "/portal/login/", {"username": jane.username, "password": PASSWORD}
        ).status_code
        == 302
    )

    again = Client().get(path_of(url))

    page = again.content.decode()
    assert again.status_code == 410
    assert "This link no longer works" in page
    assert "you have logged in since it was sent" in page
    assert "password is set" not in page
    assert "expired" not in page
    assert 'href="/portal/login/"' in page
    assert 'href="/portal/password-reset/"' in page
    jane.refresh_from_db()
    assert jane.check_password(PASSWORD)  # nothing was reset


def test_an_old_reset_link_says_expired_and_offers_a_new_one(jane, monkeypatch, settings):
    # The generator's own clock: naive, as the timestamps in its tokens are.
    made = default_token_generator._now() - timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)
    monkeypatch.setattr(default_token_generator, "_now", lambda: made)
    token = default_token_generator.make_token(jane)
    monkeypatch.undo()
    uid = urlsafe_base64_encode(force_bytes(jane.pk))
    response = Client().get(f"/portal/password-reset/{uid}/{token}/")

    page = response.content.decode()
    assert response.status_code == 410
    assert "This link has expired" in page
    assert 'href="/portal/password-reset/"' in page


@pytest.mark.parametrize(
    "tail", ["MQ/not-a-token/", "MQ/zzzzzzzzzzzzzzzzz-abc/", "%F0%9F%98%80/x-y/", "Zm9v/1-2/"]
)
def test_a_mangled_link_says_it_is_not_valid(db, tail):
    response = Client().get(f"/portal/password-reset/{tail}")

    assert response.status_code == 404
    assert "This link is not valid" in response.content.decode()


def test_one_users_link_cannot_set_another_users_password(browser_client, jane, email):
    """The link is for one account: its token with someone else's id (another customer's
    user) sets nothing."""
    other = make_user(username="globex-owner", customer=make_customer(name="Globex"))
    ask(browser_client, email)
    url = emailed_link(mail.outbox[0])
    token = url.rstrip("/").rsplit("/", 1)[1]
    uid = urlsafe_base64_encode(force_bytes(other.pk))
    response = browser_client.get(f"/portal/password-reset/{uid}/{token}/", follow=True)

    assert "Choose a new password" not in response.content.decode()
    other.refresh_from_db()
    assert other.check_password(PASSWORD)


def test_a_reset_changes_the_password_only(browser_client, jane, email, customer):
    before = list(Membership.objects.filter(user=jane).values_list("customer_id", "role"))
    ask(browser_client, email)
    set_password(browser_client, emailed_link(mail.outbox[0]))

    jane.refresh_from_db()
    after = list(Membership.objects.filter(user=jane).values_list("customer_id", "role"))
    assert after == before
    assert not jane.is_staff and jane.is_active


def test_staff_and_inactive_accounts_get_no_email(db, browser_client, email):
    make_user(username=f"staff-{uuid.uuid4().hex[:6]}", email=email, is_staff=True)
    other = f"gone-{uuid.uuid4().hex[:6]}@acme-outdoor.example"
    make_user(username=f"gone-{uuid.uuid4().hex[:6]}", email=other, is_active=False)

    staff = ask(browser_client, email)
    gone = ask(browser_client, other)

    assert mail.outbox == []
    assert (
        staff.redirect_chain[-1][0] == gone.redirect_chain[-1][0] == "/portal/password-reset/sent/"
    )


def test_an_invited_user_who_never_chose_a_password_can_ask_for_a_link(
    browser_client, customer, email
):
    user = get_user_model().objects.create_user(username=f"new-{uuid.uuid4().hex[:6]}", email=email)
    user.set_unusable_password()
    user.save()
    Membership.objects.create(user=user, customer=customer, role=Membership.Role.MEMBER)

    ask(browser_client, email)
    set_password(browser_client, emailed_link(mail.outbox[0]))

    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_a_used_invitation_says_already_used_not_expired(customer, email):
    user = get_user_model().objects.create_user(username=f"inv-{uuid.uuid4().hex[:6]}", email=email)
    user.set_unusable_password()
    user.save()
    Membership.objects.create(user=user, customer=customer)
    path = path_of(invitation_url(user))
    invited = Client()
    form = invited.get(path, follow=True)
    assert "Choose your password" in form.content.decode()
    invited.post(
        form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )

    again = Client().get(path)

    page = again.content.decode()
    assert again.status_code == 410
    assert "already used" in page
    assert "expired" not in page
    assert 'href="/portal/login/"' in page


def test_a_bad_or_missing_address_is_asked_again(browser_client, db):
    for data in ({}, {"email": ""}, {"email": "not-an-address"}, {"email": "a@" + "b" * 300}):
        response = browser_client.post("/portal/password-reset/", data)

        assert response.status_code == 200
        assert "Enter your email address" in response.content.decode()
    assert mail.outbox == []


def test_one_address_gets_a_few_emails_an_hour_and_the_same_page_after(browser_client, jane, email):
    pages = [ask(Client(REMOTE_ADDR=f"192.0.2.{i + 10}"), email) for i in range(5)]

    assert len(mail.outbox) == 3  # PASSWORD_RESET_PER_EMAIL
    assert {page.redirect_chain[-1][0] for page in pages} == {"/portal/password-reset/sent/"}


def test_many_requests_from_one_address_are_refused_with_the_wait(browser_client, db):
    statuses = [
        browser_client.post(
            "/portal/password-reset/", {"email": f"x{i}-{uuid.uuid4().hex[:6]}@example.com"}
        ).status_code
        for i in range(6)
    ]

    refused = browser_client.post("/portal/password-reset/", {"email": "y@example.com"})
    assert statuses[:5] == [302] * 5  # PASSWORD_RESET_PER_ADDRESS
    assert statuses[5] == 429
    assert refused.status_code == 429
    assert "Try again in" in refused.content.decode()
    assert int(refused["Retry-After"]) > 0
