"""Failed logins for one username from many addresses: slow them down, never lock out.

django-axes locks a username from one address (AXES_LOCKOUT_PARAMETERS), so an attacker
cannot lock the real user out from elsewhere; but from many addresses the attacker gets
AXES_FAILURE_LIMIT tries from each. Wrong passwords are therefore also counted per username
from anywhere. Only wrong passwords: a try axes refuses during a lockout checks no password,
and counting it let one locked-out address reach the limit in seconds. Past
LOGIN_SLOWDOWN_AFTER of them in LOGIN_SLOWDOWN_WINDOW_SECONDS, each client network (the
address's /24, or /64 for IPv6) may try that username once every LOGIN_SLOWDOWN_SECONDS
(the others get a 429 with Retry-After): a pace, never a lockout, and one per network, so
the attacker's tries never take the slot of the real user on another network.

A browser the user has logged in from carries a signed device cookie and is not slowed at
all (OWASP, "Slow Down Online Guessing Attacks with Device Cookies"). The cookie names its
users by an HMAC keyed with SECRET_KEY over the user's id, username and password hash:
nothing a dictionary of usernames can be checked against, and worth nothing once the
password changes (a browser that logs in with the new one is trusted again).

The username is the one Django authenticates: the login form's UsernameField strips it and
applies NFKC, so " alice" and fullwidth letters are alice here too; its case is kept, as
ModelBackend's lookup keeps it. The counts live in Django's cache (Redis in production),
shared by every web process, under keys that hold an HMAC, not the username. While that
Redis is down nothing is counted or slowed (degrade.cache_or): logins go on, and
django-axes, which counts in the database, still locks a username per address.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.forms import UsernameField
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core import signing
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.crypto import salted_hmac

from connections.degrade import cache_or
from connections.link.guess_limits import client_ip
from connections.token_buckets import token_bucket

# The login forms whose POSTs are counted: the portal's and the admin's.
LOGIN_VIEWS = frozenset({"portal:login", "admin:login"})
USERNAME_FIELD = "username"
DEVICE_COOKIE = "dockside_device"
DEVICE_COOKIE_SALT = "dockside.login.device"
KEY_SALT = "dockside.login.counts"
DEVICE_COOKIE_MAX_USERS = 5  # a shared computer: the last few people who logged in on it
IPV4_NETWORK_PREFIX = 24
IPV6_NETWORK_PREFIX = 64
# Set on the request: the username tried, whether axes refuses it before any password check,
# and what Django's authenticate() then said (its signals).
LOGIN_ATTEMPT_ATTRIBUTE = "_dockside_login_username"
REFUSED_ATTRIBUTE = "_dockside_login_refused_by_axes"
FAILED_ATTRIBUTE = "_dockside_login_failed"
LOGGED_IN_ATTRIBUTE = "_dockside_logged_in_user"


def login_username(raw: str) -> str | None:
    """The username as the login forms hand it to authenticate() (their UsernameField:
    stripped, NFKC, case kept), or None when the form refuses it before any password is
    checked (blank, longer than the field, a NUL), or that no account can have (a lone
    surrogate, which PostgreSQL cannot store or look up)."""
    user_model = get_user_model()
    field = user_model._meta.get_field(user_model.USERNAME_FIELD)
    max_length = getattr(field, "max_length", None) or 254  # as AuthenticationForm has it
    username = UsernameField(max_length=max_length).to_python(raw)
    if not username or len(username) > max_length or "\x00" in username:
        return None
    try:
        username.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return username


def network_of(address: str | None) -> str:
    """The client network a pace is kept for: the /24 of an IPv4 address (an IPv4-mapped
    IPv6 one included), the /64 of an IPv6 one (one customer's LAN, or one host's range)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    prefix = IPV4_NETWORK_PREFIX if ip.version == 4 else IPV6_NETWORK_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _digest(salt: str, *parts: str) -> str:
    value = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return salted_hmac(salt, value, algorithm="sha256").hexdigest()[:32]


def _failures_key(username: str) -> str:
    return f"login-failures:{_digest(KEY_SALT, username)}"


def _pace_key(username: str, network: str) -> str:
    return f"login-pace:{_digest(KEY_SALT, username, network)}"


def login_failures(username: str) -> int:
    """Wrong passwords counted for this (normalised: login_username) username."""
    return cache_or(0, lambda: cache.get(_failures_key(username))) or 0


def login_failure_record(username: str) -> None:
    # A window fixed from the first failure: later failures do not extend it.
    key = _failures_key(username)
    window = settings.LOGIN_SLOWDOWN_WINDOW_SECONDS

    def record() -> None:
        if not cache.add(key, 1, window):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, window)

    cache_or(None, record)


def login_slowdown_clear(username: str) -> int:
    """Forget the username's counted failures, so no network is paced for it; how many
    there were."""
    key = _failures_key(username)

    def clear() -> int:
        count = cache.get(key) or 0
        cache.delete(key)
        return count

    return cache_or(0, clear)


def login_pace_clear(username: str, address: str | None) -> None:
    """Free the pace's slot of the network this address is in, for this username."""
    key = _pace_key(username, network_of(address))
    cache_or(None, lambda: cache.delete(key))


def _device_digest(user: AbstractBaseUser) -> str:
    return _digest(DEVICE_COOKIE_SALT, str(user.pk), user.get_username(), user.password or "")


def _device_digests(request: HttpRequest) -> list[str]:
    raw = request.COOKIES.get(DEVICE_COOKIE)
    if not raw:
        return []
    try:
        value = signing.loads(
            raw, salt=DEVICE_COOKIE_SALT, max_age=settings.LOGIN_DEVICE_COOKIE_AGE
        )
    except signing.BadSignature:
        return []
    return [d for d in value if isinstance(d, str)] if isinstance(value, list) else []


def _user_named(username: str) -> Any:
    """The user ModelBackend would check the password of, or None."""
    user_model = get_user_model()
    try:
        return user_model._default_manager.get_by_natural_key(username)
    except user_model.DoesNotExist:
        return None


def _trusted_device(request: HttpRequest, username: str) -> bool:
    digests = _device_digests(request)
    if not digests:
        return False
    user = _user_named(username)
    return user is not None and _device_digest(user) in digests


def login_slowdown_wait(request: HttpRequest, username: str) -> int:
    """0 when this login attempt may go ahead, else the seconds to wait. Taking the pace's
    slot (this username, this client's network) is part of asking, so two browsers on one
    network cannot both go."""
    if login_failures(username) < settings.LOGIN_SLOWDOWN_AFTER:
        return 0
    if _trusted_device(request, username):
        return 0
    key = _pace_key(username, network_of(client_ip(request)))
    if cache_or(True, lambda: cache.add(key, 1, settings.LOGIN_SLOWDOWN_SECONDS)):
        return 0
    return settings.LOGIN_SLOWDOWN_SECONDS


def _remember_device(request: HttpRequest, response: HttpResponse, user: Any) -> None:
    digest = _device_digest(user)
    digests = [d for d in _device_digests(request) if d != digest]
    digests = [digest, *digests][:DEVICE_COOKIE_MAX_USERS]
    response.set_cookie(
        DEVICE_COOKIE,
        signing.dumps(digests, salt=DEVICE_COOKIE_SALT),
        max_age=settings.LOGIN_DEVICE_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def _refused_by_axes(request: HttpRequest, username: str) -> bool:
    """Whether axes will refuse this try without checking the password (a lockout of this
    username from this address): the same check its backend makes in authenticate()."""
    if not getattr(settings, "AXES_ENABLED", True):  # axes' default
        return False
    return not AxesProxyHandler.is_allowed(request, get_credentials(username))


# Django's authenticate() says how a try ended by these signals, with the request. A wrong
# password and a try axes refused send the same user_login_failed: REFUSED_ATTRIBUTE tells
# them apart.
@receiver(user_login_failed, dispatch_uid="dockside.login_slowdown.failed")
def _login_failed(sender: Any, credentials: dict, request: HttpRequest | None = None, **kwargs):
    if request is not None:
        setattr(request, FAILED_ATTRIBUTE, True)


@receiver(user_logged_in, dispatch_uid="dockside.login_slowdown.logged_in")
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs):
    if request is not None:
        setattr(request, LOGGED_IN_ATTRIBUTE, user)


class LoginSlowdownMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        username = getattr(request, LOGIN_ATTEMPT_ATTRIBUTE, None)
        if username is None:
            return response
        user = getattr(request, LOGGED_IN_ATTRIBUTE, None)
        if user is not None:
            _remember_device(request, response, user)
        elif getattr(request, FAILED_ATTRIBUTE, False) and not getattr(
            request, REFUSED_ATTRIBUTE, False
        ):
            # A password Django checked and found wrong. Not a try axes refused, nor a form
            # that never got as far as authenticate() (no password, say).
            login_failure_record(username)
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if request.method != "POST" or match is None or match.view_name not in LOGIN_VIEWS:
            return None
        username = login_username(request.POST.get(USERNAME_FIELD, ""))
        if username is None:  # the form refuses it: no password is checked
            return None
        wait = login_slowdown_wait(request, username)
        if wait:
            response = render(
                request, "portal/login_slowed.html", {"retry_after": wait}, status=429
            )
            response["Retry-After"] = str(wait)
            return response
        setattr(request, LOGIN_ATTEMPT_ATTRIBUTE, username)
        setattr(request, REFUSED_ATTRIBUTE, _refused_by_axes(request, username))
        return None


# --- Password reset requests --------------------------------------------------------------
# Each request may send an email: per client address a few requests per quarter hour (past
# them a 429 with the wait), and per email address a few emails an hour, past which
# requests get the same "check your inbox" page and send nothing, so no inbox is flooded
# and the answer never tells whether an account has that address. Token buckets in Redis
# (connections.token_buckets.token_bucket), keyed by an HMAC of the email, never the address itself.
PASSWORD_RESET_PER_ADDRESS = 5
PASSWORD_RESET_ADDRESS_SECONDS = 15 * 60
PASSWORD_RESET_PER_EMAIL = 3
PASSWORD_RESET_EMAIL_SECONDS = 60 * 60
PASSWORD_RESET_SALT = "dockside.password-reset.email"


def password_reset_address_wait(request: HttpRequest) -> int:
    """Take one request from this client address's budget: 0, else the seconds to wait."""
    bucket = token_bucket(
        rate=PASSWORD_RESET_PER_ADDRESS / PASSWORD_RESET_ADDRESS_SECONDS,
        burst=PASSWORD_RESET_PER_ADDRESS,
        prefix="dockside:limit:password-reset:address:",
    )
    wait = bucket.take(client_ip(request) or "unknown")
    return max(1, math.ceil(wait)) if wait > 0 else 0


def password_reset_email_allowed(email: str) -> bool:
    """Take one email from this email address's budget; False when it has none left."""
    bucket = token_bucket(
        rate=PASSWORD_RESET_PER_EMAIL / PASSWORD_RESET_EMAIL_SECONDS,
        burst=PASSWORD_RESET_PER_EMAIL,
        prefix="dockside:limit:password-reset:email:",
    )
    return bucket.take(_digest(PASSWORD_RESET_SALT, email.strip().casefold())) <= 0
