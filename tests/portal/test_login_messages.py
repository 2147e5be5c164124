"""What the login form says on the way to a lockout (tries left), and what the lockout page
says (how long to wait), from the thresholds in settings (AXES_FAILURE_LIMIT 5, cool-off
15 minutes)."""

import uuid
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.test import Client

from portal.logins.slowdown import login_slowdown_clear
from tests.builders import PASSWORD, make_user


@pytest.fixture
def username(db):
    # The slowdown's per-username counts live in Redis, outside the test's transaction.
    name = f"user-{uuid.uuid4().hex[:10]}"
    make_user(username=name)
    yield name
    login_slowdown_clear(name)


def log_in(client, username, password, path="/portal/login/"):
    return client.post(path, {"username": username, "password": password})


def wrong_tries(client, username, count, path="/portal/login/"):
    return [log_in(client, username, "wrong-password", path) for _ in range(count)][-1]


def test_the_login_page_offers_a_password_reset(client, db):
    page = client.get("/portal/login/").content.decode()

    assert "Forgot your password?" in page
    assert 'href="/portal/password-reset/"' in page


def test_a_first_wrong_password_says_only_that_it_did_not_match(username):
    page = wrong_tries(Client(), username, 1).content.decode()

    assert "didn't match" in page
    assert "tries left" not in page  # four tries to go: not yet worth a warning


@pytest.mark.parametrize(
    ("failures", "words"), [(2, "3 tries left."), (3, "2 tries left."), (4, "1 try left.")]
)
def test_the_form_warns_before_the_lockout(username, failures, words):
    response = wrong_tries(Client(), username, failures)

    page = response.content.decode()
    assert response.status_code == 200
    assert words in page
    assert "paused for 15 minutes" in page


def test_the_warning_counts_tries_from_this_browser_only(username):
    """axes locks a username per address: another address's failures are not this
    user's tries."""
    wrong_tries(Client(REMOTE_ADDR="203.0.113.9"), username, 4)

    page = wrong_tries(Client(REMOTE_ADDR="198.51.100.4"), username, 1).content.decode()

    assert "tries left" not in page


def test_an_unknown_username_gets_the_same_warning(db):
    """The count is axes', kept for any username: the warning tells nothing about which
    usernames exist."""
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    try:
        page = wrong_tries(Client(), name, 3).content.decode()
    finally:
        login_slowdown_clear(name)

    assert "2 tries left." in page


def test_the_lockout_says_how_long_to_wait(username):
    response = wrong_tries(Client(), username, 5)

    page = response.content.decode()
    assert response.status_code == 429
    assert "Try again in 15 minutes." in page
    assert response["Retry-After"] == "900"
    assert 'href="/portal/password-reset/"' in page  # a way out that needs no wait


def test_the_wait_shrinks_as_time_passes(username):
    client = Client()
    wrong_tries(client, username, 5)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=11))

    response = log_in(client, username, PASSWORD)  # refused, and not counted

    assert response.status_code == 429
    assert "Try again in 4 minutes." in response.content.decode()
    assert 180 < int(response["Retry-After"]) <= 240


def test_the_last_minute_is_one_minute(username):
    client = Client()
    wrong_tries(client, username, 5)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=14, seconds=30))

    page = log_in(client, username, PASSWORD).content.decode()

    assert "Try again in 1 minute." in page


def test_the_admin_lockout_leads_back_to_the_admin_login(username):
    response = wrong_tries(Client(), username, 5, path="/admin/login/")

    page = response.content.decode()
    assert response.status_code == 429
    assert "Try again in 15 minutes." in page
    assert 'href="/admin/login/"' in page
    assert "/portal/password-reset/" not in page  # staff are not reset from the portal
