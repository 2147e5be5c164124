"""Limits an attacker could turn against other people: login lockouts, /connect/ guessing,
and the Link endpoints that spend the organisation's Trackstar budget."""

import hashlib
import json
import time
import uuid
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import signing
from django.core.cache import cache
from django.db.models import F
from django.test import Client, override_settings

from audit.models import AuditEntry
from connections.link import exchanges as exchange_service
from connections.link import magic_links as magic_link_service
from connections.models import AuthCodeExchange
from customers.models import Membership
from portal.logins.slowdown import (
    DEVICE_COOKIE,
    _pace_key,
    login_failures,
    login_pace_clear,
    login_slowdown_clear,
    network_of,
)
from tests.builders import PASSWORD, make_customer, make_link_token, make_user

MAGIC = {"HTTP_X_DOCKSIDE_ACTOR": "magic-link"}
BALANCER = "10.0.0.1"


@pytest.fixture
def username(db):
    """A user of our own: the per-username counts live in Redis, outside the test's
    transaction, so no other test shares them."""
    name = f"victim-{uuid.uuid4().hex[:10]}"
    make_user(username=name)
    yield name
    login_slowdown_clear(name)


def log_in(client, username, password, *, address=None, forwarded=None):
    extra = {}
    if address:
        extra["REMOTE_ADDR"] = address
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post("/portal/login/", {"username": username, "password": password}, **extra)


def age_attempts(minutes: int) -> None:
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=minutes))


# --- Logins: a lockout is per username and address, and does not stretch ----------------


def test_a_lockout_behind_the_balancer_is_for_that_client_only(settings, username):
    """Behind a load balancer every request comes from its address; with
    TRUSTED_PROXY_COUNT the attacker's failures lock the username from the attacker's
    address only, and a forged X-Forwarded-For entry changes nothing."""
    settings.TRUSTED_PROXY_COUNT = 1
    attacker, victim = Client(), Client()
    statuses = [
        log_in(attacker, username, "wrong", address=BALANCER, forwarded="203.0.113.5").status_code
        for _ in range(5)
    ]

    # The attacker forges an entry to the left of the one the balancer appends.
    locked = log_in(
        attacker, username, PASSWORD, address=BALANCER, forwarded="198.51.100.7, 203.0.113.5"
    )
    from_elsewhere = log_in(victim, username, PASSWORD, address=BALANCER, forwarded="198.51.100.7")

    assert statuses == [200, 200, 200, 200, 429]  # the fifth failure locks
    assert locked.status_code == 429
    assert from_elsewhere.status_code == 302


def test_a_forwarded_address_that_is_not_an_address_is_not_a_500(settings, username):
    settings.TRUSTED_PROXY_COUNT = 1

    response = log_in(Client(), username, "wrong", address=BALANCER, forwarded="not-an-ip")

    assert response.status_code == 200
    assert AccessAttempt.objects.get().ip_address == BALANCER


def test_attempts_during_a_lockout_do_not_extend_it(username):
    """One try every 14 minutes used to restart the 15-minute wait for ever."""
    client = Client()
    for _ in range(5):
        log_in(client, username, "wrong")
    age_attempts(14)

    during = log_in(client, username, PASSWORD)  # refused, and must not count
    also_during = log_in(client, username, "wrong")
    age_attempts(2)  # 16 minutes after the fifth failure
    after = log_in(client, username, PASSWORD)

    assert during.status_code == also_during.status_code == 429
    assert after.status_code == 302


def test_the_lockout_lasts_its_cool_off(username):
    client = Client()
    for _ in range(5):
        log_in(client, username, "wrong")
    age_attempts(10)

    assert log_in(client, username, PASSWORD).status_code == 429


# --- Logins: a username attacked from many addresses is slowed, never locked out --------


def _seconds_to_live(key: str) -> int:
    """The TTL Redis holds for this key of Django's cache (-2: no such key)."""
    return cache._cache.get_client(key).ttl(cache.make_and_validate_key(key))


def test_many_addresses_slow_the_username_down_and_never_lock_it(settings, username):
    settings.LOGIN_SLOWDOWN_AFTER = 20
    settings.LOGIN_SLOWDOWN_SECONDS = 30  # far longer than the test: no clock in it
    usual_browser = Client()
    assert log_in(usual_browser, username, PASSWORD).status_code == 302
    assert DEVICE_COOKIE in usual_browser.cookies
    usual_browser.post("/portal/logout/")  # the device cookie stays, as in a browser

    for i in range(21):  # 21 addresses, one failure each: axes locks none of them
        log_in(Client(), username, "wrong", address=f"198.51.100.{i + 1}")

    # A new browser on the attacker's network (the /24) shares the attacker's pace.
    new_browser = Client()
    paced = log_in(new_browser, username, PASSWORD, address="198.51.100.200")
    usual = log_in(usual_browser, username, PASSWORD, address="198.51.100.201")
    pace_ends_in = _seconds_to_live(_pace_key(username, network_of("198.51.100.200")))
    login_pace_clear(username, "198.51.100.200")  # as if those seconds had passed
    after_the_pause = log_in(new_browser, username, PASSWORD, address="198.51.100.200")

    assert paced.status_code == 429
    assert paced["Retry-After"] == "30"
    assert "wait 30 seconds" in paced.content.decode()
    assert 0 < pace_ends_in <= 30  # the pause ends by itself
    assert usual.status_code == 302  # a browser the user logged in from is never slowed
    assert after_the_pause.status_code == 302


def test_an_address_axes_locked_out_cannot_slow_the_username_for_anyone(settings, username):
    """Tries axes refuses during a lockout check no password. They used to count toward
    the per-username limit, so one address reached it in seconds, then held the one pace
    slot there was: the real user, on a new browser elsewhere, got 429 after 429."""
    settings.LOGIN_SLOWDOWN_AFTER = 20
    settings.LOGIN_SLOWDOWN_SECONDS = 30
    attacker = Client()
    statuses = [
        log_in(attacker, username, "wrong", address="203.0.113.5").status_code for _ in range(40)
    ]

    victim = log_in(Client(), username, PASSWORD, address="198.51.100.7")

    assert statuses[4:] == [429] * 36  # axes locks that address at the fifth
    assert login_failures(username) == 5  # the wrong passwords axes checked
    assert victim.status_code == 302


@pytest.mark.parametrize(
    ("attacker", "attackers_network_too", "victim"),
    [
        ("203.0.113.{}", "203.0.113.250", "198.51.100.7"),
        ("2001:db8:0:1::{}", "2001:db8:0:1:ffff::1", "2001:db8:0:2::7"),
        # The same client in IPv4-mapped IPv6 form is on the same /24.
        ("203.0.113.{}", "::ffff:203.0.113.251", "198.51.100.7"),
    ],
)
def test_an_attackers_pace_is_kept_for_the_attackers_network_not_the_real_users(
    settings, username, attacker, attackers_network_too, victim
):
    """The pace was one slot per username: every try of the attacker took it, and the real
    user's first try from a new browser met a 429. It is one slot per (username, client
    network), so the attacker only ever waits for their own."""
    settings.LOGIN_SLOWDOWN_AFTER = 20
    settings.LOGIN_SLOWDOWN_SECONDS = 30
    for i in range(25):  # one wrong password from each of 25 addresses: axes locks none
        log_in(Client(), username, "wrong", address=attacker.format(i + 1))

    again = log_in(Client(), username, "wrong", address=attackers_network_too)
    real_user = log_in(Client(), username, PASSWORD, address=victim)

    assert login_failures(username) == 21  # the 22nd to 25th waited for the slot
    assert again.status_code == 429
    assert real_user.status_code == 302


def test_a_paced_try_is_not_counted_by_axes(settings, username):
    settings.LOGIN_SLOWDOWN_AFTER = 1
    settings.LOGIN_SLOWDOWN_SECONDS = 30
    client = Client()
    log_in(client, username, "wrong")  # the first failure
    log_in(client, username, "wrong")  # takes the pace's slot
    for _ in range(10):
        assert log_in(client, username, "wrong").status_code == 429

    assert sum(AccessAttempt.objects.values_list("failures_since_start", flat=True)) == 2


def test_a_forged_device_cookie_is_ignored(settings, username):
    settings.LOGIN_SLOWDOWN_AFTER = 1
    settings.LOGIN_SLOWDOWN_SECONDS = 30
    client = Client()
    log_in(client, username, "wrong")
    log_in(client, username, "wrong")
    client.cookies[DEVICE_COOKIE] = '["anything"]'

    assert log_in(client, username, PASSWORD).status_code == 429


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize(
    "typed",
    [" {}", "{} ", "\t{}\r\n", "fullwidth"],
    ids=["leading-space", "trailing-space", "tab-and-newline", "fullwidth"],
)
def test_spaces_and_fullwidth_letters_count_as_the_username(settings, username, typed):
    """The login form strips the username and applies NFKC before authenticate(), so each
    of these is a guess at the real username, and axes counts it so; the slowdown counted
    it under another name, and never slowed the real one."""
    settings.LOGIN_SLOWDOWN_AFTER = 3
    settings.LOGIN_SLOWDOWN_SECONDS = 30
    variant = _fullwidth(username) if typed == "fullwidth" else typed.format(username)
    for i in range(4):  # the fourth takes the slot of the network's pace
        log_in(Client(), variant, "wrong", address=f"203.0.113.{i + 1}")

    paced = log_in(Client(), username, PASSWORD, address="203.0.113.50")

    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {username}
    assert login_failures(username) == 4
    assert paced.status_code == 429


def test_a_right_password_with_the_username_typed_with_spaces_is_a_login(username):
    """It logs in (the form strips the username): it was counted as a failure, and the
    browser was given no device cookie."""
    client = Client()

    response = log_in(client, f" {username} ", PASSWORD)

    assert response.status_code == 302
    assert DEVICE_COOKIE in client.cookies
    assert login_failures(username) == login_failures(f" {username} ") == 0


def test_another_case_is_another_username(settings, username):
    """ModelBackend looks the username up as typed (case-sensitive): a guess at
    VICTIM-… is no guess at victim-…, so it does not count toward its slowdown."""
    for i in range(3):
        log_in(Client(), username.upper(), "wrong", address=f"203.0.113.{i + 1}")

    assert login_failures(username) == 0
    assert login_failures(username.upper()) == 3


def _unkeyed_digests(text: str) -> set[str]:
    data = text.encode()
    return {
        digest[:n]
        for name in ("md5", "sha1", "sha256", "sha512")
        for digest in [hashlib.new(name, data).hexdigest()]
        for n in (16, 32, len(digest))
    }


def test_neither_the_device_cookie_nor_a_cache_key_can_be_checked_against_a_username(
    username,
):
    """The cookie (readable by anyone who sees it: signing only signs) and the cache keys
    held sha256(username)[:32]: a list of likely usernames told whose browser it was."""
    browser = Client()
    log_in(browser, username, PASSWORD)
    log_in(Client(), username, "wrong")

    payload = browser.cookies[DEVICE_COOKIE].value.split(":")[0]
    readable = signing.b64_decode(payload.encode()).decode()
    guesses = _unkeyed_digests(username)

    assert not any(guess in readable for guess in guesses)
    assert login_failures(username) == 1
    assert not any(cache.get(f"login-failures:{guess}") for guess in guesses)


def test_a_password_change_ends_a_browsers_exemption(settings, username):
    """The device cookie is bound to the password: whoever logged in with a password the
    user has since changed is not spared the slowdown (the user's browser is trusted again
    once it logs in with the new one)."""
    settings.LOGIN_SLOWDOWN_AFTER = 1
    settings.LOGIN_SLOWDOWN_SECONDS = 30
    browser = Client()
    assert log_in(browser, username, PASSWORD, address="203.0.113.9").status_code == 302
    browser.post("/portal/logout/")
    log_in(Client(), username, "wrong", address="203.0.113.10")
    log_in(Client(), username, "wrong", address="203.0.113.11")  # takes the network's slot
    exempt = log_in(browser, username, PASSWORD, address="203.0.113.9")
    browser.post("/portal/logout/")
    user = get_user_model().objects.get(username=username)
    user.set_password("a-new-password-1")
    user.save()

    after_the_change = log_in(browser, username, "a-new-password-1", address="203.0.113.9")

    assert exempt.status_code == 302
    assert after_the_change.status_code == 429


# --- Logins: staff unlock -------------------------------------------------------------------


def _lock(username, address="127.0.0.1"):
    client = Client()
    for _ in range(5):
        log_in(client, username, "wrong", address=address)
    assert log_in(client, username, PASSWORD, address=address).status_code == 429
    return client


def _unlock(staff_client, attempts=None):
    attempts = AccessAttempt.objects.all() if attempts is None else attempts
    return staff_client.post(
        "/admin/axes/accessattempt/",
        {"action": "unlock", "_selected_action": list(attempts.values_list("pk", flat=True))},
    )


def _staff(*codenames):
    staff = make_user(username=f"ops-{uuid.uuid4().hex[:6]}", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="axes", codename__in=codenames)
    )
    client = Client()
    client.force_login(staff)
    return staff, client


def test_staff_who_may_delete_attempts_unlock_a_username(settings, username):
    settings.LOGIN_SLOWDOWN_AFTER = 5
    settings.LOGIN_SLOWDOWN_SECONDS = 600
    locked_client = _lock(username)
    staff, staff_client = _staff("view_accessattempt", "delete_accessattempt")

    response = _unlock(staff_client)

    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username=username).exists()
    entry = AuditEntry.objects.get(action="login.unlocked")
    assert (entry.actor, entry.detail["username"]) == (staff, username)
    assert entry.detail["ip_address"] == "127.0.0.1"
    # Neither the lockout nor the slowdown's slot (past 5 failures) holds for that address.
    assert log_in(locked_client, username, PASSWORD).status_code == 302


def test_unlock_lifts_the_selected_addresss_lockout_not_the_attackers(username):
    """Unlock cleared the username from every address (and its whole count): staff
    unlocking the real user also unlocked the attacker who had locked the real user out."""
    attacker = _lock(username, address="203.0.113.5")
    victim = _lock(username, address="198.51.100.7")
    _staff_user, staff_client = _staff("view_accessattempt", "delete_accessattempt")

    _unlock(staff_client, AccessAttempt.objects.filter(ip_address="198.51.100.7"))

    still_locked = log_in(attacker, username, PASSWORD, address="203.0.113.5")
    unlocked = log_in(victim, username, PASSWORD, address="198.51.100.7")
    assert still_locked.status_code == 429
    assert unlocked.status_code == 302
    assert login_failures(username) == 10  # the attacker's five still count
    entry = AuditEntry.objects.get(action="login.unlocked")
    assert (entry.detail["ip_address"], entry.detail["attempts"]) == ("198.51.100.7", 1)


def test_staff_who_may_only_view_attempts_cannot_unlock(username):
    locked_client = _lock(username)
    _viewer, viewer_client = _staff("view_accessattempt")

    listing = viewer_client.get("/admin/axes/accessattempt/")
    _unlock(viewer_client)

    assert listing.status_code == 200
    action_form = listing.context["action_form"]
    offered = [name for name, _ in action_form.fields["action"].choices] if action_form else []
    assert "unlock" not in offered
    assert AccessAttempt.objects.filter(username=username).exists()
    assert not AuditEntry.objects.filter(action="login.unlocked").exists()
    assert log_in(locked_client, username, PASSWORD).status_code == 429


CLEAR_SLOWDOWN = "/admin/axes/accessattempt/clear-slowdown/"


def _slow_down(settings, username):
    """Past the limit by one failure from each of six addresses (axes locks none), the
    pace's slot of their network taken for ten minutes."""
    settings.LOGIN_SLOWDOWN_AFTER = 5
    settings.LOGIN_SLOWDOWN_SECONDS = 600
    for i in range(6):
        log_in(Client(), username, "wrong", address=f"203.0.113.{i + 1}")
    assert log_in(Client(), username, PASSWORD, address="203.0.113.50").status_code == 429


def test_staff_clear_a_slowdown_whose_lockout_records_have_gone(settings, username):
    """A slowdown outlives axes' records (they expire with the cool-off; one failure per
    address never made one worth selecting): Unlock had nothing to select."""
    _slow_down(settings, username)
    AccessAttempt.objects.all().delete()  # expired
    staff, staff_client = _staff("view_accessattempt", "delete_accessattempt")

    listing = staff_client.get("/admin/axes/accessattempt/")
    form = staff_client.get(CLEAR_SLOWDOWN)
    unknown = staff_client.post(CLEAR_SLOWDOWN, {"username": "nobody-by-that-name"})
    response = staff_client.post(CLEAR_SLOWDOWN, {"username": f" {username}"})

    assert CLEAR_SLOWDOWN in listing.content.decode()
    assert form.status_code == 200
    assert unknown.status_code == 200
    assert "No user has this username" in unknown.content.decode()
    assert response.status_code == 302
    assert login_failures(username) == 0
    entry = AuditEntry.objects.get(action="login.slowdown_cleared")
    assert (entry.actor, entry.detail) == (
        staff,
        {"username": username, "failures": 6, "by": "staff"},
    )
    assert log_in(Client(), username, PASSWORD, address="203.0.113.51").status_code == 302


def test_staff_who_may_only_view_attempts_cannot_clear_a_slowdown(settings, username):
    _slow_down(settings, username)
    _viewer, viewer_client = _staff("view_accessattempt")

    listing = viewer_client.get("/admin/axes/accessattempt/")
    form = viewer_client.get(CLEAR_SLOWDOWN)
    response = viewer_client.post(CLEAR_SLOWDOWN, {"username": username})

    assert CLEAR_SLOWDOWN not in listing.content.decode()
    assert form.status_code == response.status_code == 403
    assert login_failures(username) == 6
    assert not AuditEntry.objects.filter(action="login.slowdown_cleared").exists()


# --- /connect/ guesses ------------------------------------------------------------------------


def test_guesses_never_block_a_real_link(customer, settings):
    settings.CONNECT_TOKEN_MISS_LIMIT = 20
    address = "192.0.2.77"
    cache.delete(f"connect-miss:{address}")
    client = Client(REMOTE_ADDR=address)
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None)
    token = issued.url.rstrip("/").rsplit("/", 1)[-1]

    guesses = [client.get(f"/connect/guess-{i}/").status_code for i in range(25)]
    real = client.get(f"/connect/{token}/", follow=True)
    one_more = client.get("/connect/guess-x/")
    cache.delete(f"connect-miss:{address}")

    assert guesses == [404] * 20 + [429] * 5
    assert real.status_code == 200
    assert customer.name in real.content.decode()
    assert one_more.status_code == 429


# --- get-link-token / store-token -------------------------------------------------------------


@pytest.fixture
def link_tokens(monkeypatch):
    """Stands in for Trackstar's POST /link/token: counts the calls that reach it."""
    calls = []

    def create(**kwargs):
        calls.append(kwargs)
        return f"lt_{len(calls)}"

    monkeypatch.setattr(exchange_service, "link_token_create", create)
    return calls


def get_link_token(client, url="/portal/get-link-token", **extra):
    return client.post(url, "{}", content_type="application/json", **extra)


def test_one_user_gets_ten_link_tokens_a_minute(
    settings, customer, portal_user, other_portal_user, link_tokens
):
    settings.LINK_TOKEN_LIMIT_PER_USER = 10
    client, other = Client(), Client()
    client.force_login(portal_user)
    other.force_login(other_portal_user)

    statuses = [get_link_token(client).status_code for _ in range(10)]
    limited = get_link_token(client)
    other_customer_user = get_link_token(other)

    assert statuses == [200] * 10
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert "try again" in limited.json()["error"]
    assert other_customer_user.status_code == 200
    assert len(link_tokens) == 11  # ten for the user, one for the other customer's


def test_a_customer_shares_one_budget_across_its_users(settings, customer, link_tokens):
    settings.LINK_TOKEN_LIMIT_PER_USER = 10
    settings.LINK_TOKEN_LIMIT_PER_CUSTOMER = 15
    first, second = Client(), Client()
    first.force_login(make_user(customer=customer))
    second.force_login(make_user(customer=customer))

    first_statuses = [get_link_token(first).status_code for _ in range(10)]
    second_statuses = [get_link_token(second).status_code for _ in range(6)]

    assert first_statuses == [200] * 10
    assert second_statuses == [200] * 5 + [429]
    assert len(link_tokens) == 15


def test_a_magic_link_is_limited_whatever_the_session(settings, customer, link_tokens):
    settings.LINK_TOKEN_LIMIT_PER_USER = 3
    issued = magic_link_service.magic_link_issue(customer=customer, created_by=None)
    token = issued.url.rstrip("/").rsplit("/", 1)[-1]
    visitor, fresh_session = Client(), Client()
    visitor.get(f"/connect/{token}/", follow=True)
    fresh_session.get(f"/connect/{token}/", follow=True)

    statuses = [get_link_token(visitor, **MAGIC).status_code for _ in range(4)]
    from_a_fresh_session = get_link_token(fresh_session, **MAGIC)

    assert statuses == [200, 200, 200, 429]
    assert from_a_fresh_session.status_code == 429
    assert len(link_tokens) == 3


def test_staff_link_tokens_are_limited_too(settings, customer, link_tokens):
    settings.LINK_TOKEN_LIMIT_PER_USER = 2
    staff = Client()
    staff.force_login(make_user(is_staff=True, is_superuser=True))
    url = f"/admin/customers/customer/{customer.pk}/connect/get-link-token"

    statuses = [get_link_token(staff, url).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert len(link_tokens) == 2


def store_token_body(auth_code: str, link_token: str = "lt_x") -> str:
    body = {"auth_code": auth_code, "integration_name": "shipbob", "link_token": link_token}
    return json.dumps(body)


def test_store_token_is_limited_for_what_would_write_an_exchange(
    settings, customer, portal_user, django_capture_on_commit_callbacks
):
    settings.STORE_TOKEN_LIMIT_PER_USER = 10
    client = Client()
    client.force_login(portal_user)
    link_token = make_link_token(customer=customer, user=portal_user)
    bad = json.dumps({"auth_code": "ac_x", "integration_name": "no-such-wms"})

    with django_capture_on_commit_callbacks(execute=False):
        refused = [
            client.post("/portal/store-token", bad, content_type="text/plain").status_code
            for _ in range(11)
        ]
        codes = [
            client.post(
                "/portal/store-token", store_token_body(f"ac_{i}", link_token), "text/plain"
            ).status_code
            for i in range(11)
        ]
        # connect.js retrying a code we hold writes nothing, and is answered.
        retry = client.post(
            "/portal/store-token", store_token_body("ac_0", link_token), "text/plain"
        )

    assert refused == [400] * 11  # refused before any Trackstar write: nothing charged
    assert codes == [202] * 10 + [429]
    assert AuthCodeExchange.objects.count() == 10
    assert retry.status_code == 202


def test_members_who_may_not_connect_do_not_spend_the_owners_budget(
    settings, customer, portal_user, link_tokens, django_capture_on_commit_callbacks
):
    """Three read-only members, ten tries each, used to take the customer's thirty link
    tokens (and store-tokens) a minute: the owner then got 429s."""
    settings.LINK_TOKEN_LIMIT_PER_USER = settings.STORE_TOKEN_LIMIT_PER_USER = 10
    settings.LINK_TOKEN_LIMIT_PER_CUSTOMER = settings.STORE_TOKEN_LIMIT_PER_CUSTOMER = 30
    members = []
    for _ in range(3):
        member = Client()
        member.force_login(make_user(customer=customer, role=Membership.Role.MEMBER))
        members.append(member)
    owner = Client()
    owner.force_login(portal_user)
    owners_token = make_link_token(customer=customer, user=portal_user)

    with django_capture_on_commit_callbacks(execute=False):
        refused = [
            response.status_code
            for member in members
            for _ in range(10)
            for response in (
                get_link_token(member),
                member.post("/portal/store-token", store_token_body("ac_m"), "text/plain"),
            )
        ]
        owner_link = get_link_token(owner)
        owner_store = owner.post(
            "/portal/store-token", store_token_body("ac_owner", owners_token), "text/plain"
        )

    assert refused == [403] * 60
    assert link_tokens == [link_tokens[0]]  # only the owner's reached Trackstar
    assert owner_link.status_code == 200
    assert owner_store.status_code == 202


def test_another_customer_is_unaffected_by_a_busy_one(db, settings, link_tokens):
    settings.LINK_TOKEN_LIMIT_PER_USER = 5
    settings.LINK_TOKEN_LIMIT_PER_CUSTOMER = 5
    busy, quiet = make_customer(), make_customer()
    busy_client, quiet_client = Client(), Client()
    busy_client.force_login(make_user(customer=busy))
    quiet_client.force_login(make_user(customer=quiet))

    for _ in range(6):
        get_link_token(busy_client)

    assert get_link_token(quiet_client).status_code == 200


# --- Redis down: the limits step aside, the requests still work ----------------------------

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused


def _reset_limiters():
    from connections import degrade, token_buckets

    token_buckets.cached_bucket.cache_clear()
    degrade.reset()


@pytest.fixture
def redis_down(db):
    """Django's cache and the Redis token buckets point at a Redis that is not there. A
    context manager rather than the `settings` fixture, so the sandbox fixture's
    cache.clear() at teardown finds the real cache again."""
    dead_cache = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
        }
    }
    _reset_limiters()
    with override_settings(CACHES=dead_cache, REDIS_URL=DEAD_REDIS):
        yield
    _reset_limiters()


def test_connecting_works_while_redis_is_down(trackstar, redis_down, customer, portal_user):
    """Used to be a 500 from each Link endpoint (and the customer's auth code lost)."""
    client = Client()
    client.force_login(portal_user)

    token_response = get_link_token(client)
    link_token = token_response.json()["link_token"]
    auth_code = trackstar.authorize(link_token, "shipbob", {"api_key": "sk_1"})
    body = {"link_token": link_token, "auth_code": auth_code, "integration_name": "shipbob"}
    stored = client.post("/portal/store-token", json.dumps(body), content_type="text/plain")

    assert token_response.status_code == 200
    assert stored.status_code == 202
    exchange = AuthCodeExchange.objects.get(public_id=stored.json()["exchange_id"])
    assert exchange.customer == customer


def test_the_link_limits_still_hold_per_process_while_redis_is_down(
    redis_down, portal_user, link_tokens
):
    client = Client()
    client.force_login(portal_user)

    # Nested inside redis_down's override (not the `settings` fixture, whose teardown would
    # run after redis_down's and bring the dead cache back for every later test).
    with override_settings(LINK_TOKEN_LIMIT_PER_USER=3):
        statuses = [get_link_token(client).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    assert len(link_tokens) == 3


@pytest.fixture
def silent_redis(db):
    """A Redis that accepts connections and never answers (a hung or partitioned one)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)  # the kernel completes the handshakes; nobody ever reads
    url = f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    _reset_limiters()
    with override_settings(REDIS_URL=url):
        yield url
    _reset_limiters()
    server.close()


def test_a_hung_redis_costs_one_short_wait_not_one_per_request(
    silent_redis, portal_user, link_tokens, monkeypatch
):
    """Counted, not timed: each connection opened to the hung Redis costs one socket
    timeout, and each failure the breaker is told of keeps this process off it."""
    from redis.connection import Connection as RedisConnection

    from connections import degrade, token_buckets

    silent_port = int(silent_redis.rsplit(":", 1)[1].split("/")[0])
    opened: list[float] = []  # the socket timeout of each connection to the hung Redis
    failures: list[str] = []
    connect, failed = RedisConnection._connect, token_buckets.redis_failed

    def counting_connect(self):
        if self.port == silent_port:
            opened.append(self.socket_timeout)
        return connect(self)

    def counting_failed(name, what, error):
        failures.append(name)
        failed(name, what, error)

    monkeypatch.setattr(RedisConnection, "_connect", counting_connect)
    monkeypatch.setattr(token_buckets, "redis_failed", counting_failed)
    client = Client()
    client.force_login(portal_user)

    started = time.monotonic()
    first = get_link_token(client)
    first_took = time.monotonic() - started
    asked_first = (list(opened), list(failures))
    more = [get_link_token(client).status_code for _ in range(5)]

    assert first.status_code == 200
    # One short socket timeout for the request, not one per bucket.
    assert asked_first == ([token_buckets.INTERACTIVE_TIMEOUT], [silent_redis])
    assert token_buckets.INTERACTIVE_TIMEOUT <= 1
    assert first_took < 10  # a smoke bound only
    assert more == [200] * 5
    # Redis is not asked again for a while.
    assert (opened, failures) == asked_first
    assert degrade.redis_is_down(silent_redis)


def test_logins_work_while_redis_is_down(username, redis_down):
    wrong = log_in(Client(), username, "wrong")
    counted = AccessAttempt.objects.get(username=username).failures_since_start
    right = log_in(Client(), username, PASSWORD)

    assert wrong.status_code == 200
    assert wrong.context["form"].errors
    assert counted == 1  # axes still counts, in the database
    assert right.status_code == 302


def test_an_unknown_connect_token_is_a_404_while_redis_is_down(redis_down):
    response = Client().get("/connect/no-such-token/")

    assert response.status_code == 404


def test_a_cache_outage_is_logged_once_not_per_request(username, redis_down, caplog):
    with caplog.at_level("WARNING", logger="connections.degrade"):
        for _ in range(3):
            log_in(Client(), username, "wrong")

    outages = [r for r in caplog.records if r.name == "connections.degrade"]
    assert len(outages) == 1
    assert "cache" in outages[0].getMessage()


# --- X-Forwarded-For entries with a port ------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "address"),
    [
        ("203.0.113.5:41234", "203.0.113.5"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:203.0.113.5", "::ffff:203.0.113.5"),
        # A zone is an address too, but PostgreSQL's inet has no room for it (was a 500).
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_a_forwarded_address_with_a_port_is_that_client(settings, username, entry, address):
    """Some balancers append address:port. That entry used to fail the address check, so
    every client behind the balancer counted as the balancer, and one attacker's failures
    locked everyone out."""
    settings.TRUSTED_PROXY_COUNT = 1

    log_in(Client(), username, "wrong", address=BALANCER, forwarded=f"198.51.100.7, {entry}")

    assert AccessAttempt.objects.get().ip_address == address


def test_clients_behind_a_balancer_that_sends_ports_are_locked_out_separately(settings, username):
    settings.TRUSTED_PROXY_COUNT = 1
    for port in range(5):
        log_in(Client(), username, "wrong", address=BALANCER, forwarded=f"203.0.113.5:4{port}00")

    victim = log_in(Client(), username, PASSWORD, address=BALANCER, forwarded="198.51.100.9:5000")

    assert victim.status_code == 302


@pytest.mark.parametrize(
    "entry", ["203.0.113.5:port", "[2001:db8::1", "[203.0.113.5]:1", "203.0.113.5:1:2"]
)
def test_an_unusable_forwarded_entry_falls_back_and_is_logged(settings, username, entry, caplog):
    from connections import degrade

    degrade.reset()
    settings.TRUSTED_PROXY_COUNT = 1

    with caplog.at_level("WARNING", logger="connections.link.guess_limits"):
        response = log_in(Client(), username, "wrong", address=BALANCER, forwarded=entry)

    assert response.status_code == 200
    assert AccessAttempt.objects.get().ip_address == BALANCER
    assert any("X-Forwarded-For" in r.getMessage() for r in caplog.records)


# --- Limits of zero ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "LINK_TOKEN_LIMIT_PER_USER",
        "LINK_TOKEN_LIMIT_PER_CUSTOMER",
        "STORE_TOKEN_LIMIT_PER_USER",
        "STORE_TOKEN_LIMIT_PER_CUSTOMER",
    ],
)
@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_link_limit_below_one_is_refused_at_start(monkeypatch, name, value):
    """Used to load, then fail every get-link-token or store-token with a 500."""
    import importlib.util

    from django.core.exceptions import ImproperlyConfigured

    import config.settings.base

    monkeypatch.setenv(name, value)
    # A fresh copy of base.py, as a process starting with this environment would load it.
    spec = importlib.util.spec_from_file_location(
        "config.settings._base_fresh", config.settings.base.__file__
    )
    assert spec and spec.loader
    fresh = importlib.util.module_from_spec(spec)

    with pytest.raises(ImproperlyConfigured, match=name):
        spec.loader.exec_module(fresh)
