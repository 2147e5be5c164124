"""Failed logins for one username from many addresses: slow them down, never lock out.

django-axes locks a username from one address (AXES_LOCKOUT_PARAMETERS), so an attacker
cannot lock the real user out from elsewhere; but from many addresses the attacker gets
AXES_FAILURE_LIMIT tries from each. Failures are therefore also counted per username from
anywhere. Past LOGIN_SLOWDOWN_AFTER of them in LOGIN_SLOWDOWN_WINDOW_SECONDS, a browser
may try that username once every LOGIN_SLOWDOWN_SECONDS (the others get a 429 with
Retry-After): a pace, never a lockout.

A browser the user has logged in from carries a signed device cookie and is not slowed at
all, so an attacker who keeps the pace busy still cannot keep the real user out (OWASP,
"Slow Down Online Guessing Attacks with Device Cookies"). The counts live in Django's cache
(Redis in production), shared by every web process; keys hold a hash, not the username.
While that Redis is down nothing is counted or slowed (degrade.cache_or): logins go on,
and django-axes, which counts in the database, still locks a username per address.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .degrade import cache_or

# The login forms whose POSTs are counted: the portal's and the admin's.
LOGIN_VIEWS = frozenset({"portal:login", "admin:login"})
USERNAME_FIELD = "username"
DEVICE_COOKIE = "dockside_device"
DEVICE_COOKIE_SALT = "dockside.login.device"
DEVICE_COOKIE_MAX_USERS = 5  # a shared computer: the last few people who logged in on it
LOGIN_ATTEMPT_ATTRIBUTE = "_dockside_login_username"


def _digest(username: str) -> str:
    return hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _failures_key(username: str) -> str:
    return f"login-failures:{_digest(username)}"


def _pace_key(username: str) -> str:
    return f"login-pace:{_digest(username)}"


def login_failures(username: str) -> int:
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


def login_slowdown_reset(username: str) -> None:
    cache_or(None, lambda: cache.delete_many([_failures_key(username), _pace_key(username)]))


def _trusted_digests(request: HttpRequest) -> list[str]:
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


def login_slowdown_wait(request: HttpRequest, username: str) -> int:
    """0 when this login attempt may go ahead, else the seconds to wait. Taking the pace's
    slot is part of asking, so two browsers cannot both go."""
    if login_failures(username) < settings.LOGIN_SLOWDOWN_AFTER:
        return 0
    if _digest(username) in _trusted_digests(request):
        return 0
    if cache_or(True, lambda: cache.add(_pace_key(username), 1, settings.LOGIN_SLOWDOWN_SECONDS)):
        return 0
    return settings.LOGIN_SLOWDOWN_SECONDS


def _remember_device(request: HttpRequest, response: HttpResponse, username: str) -> None:
    digest = _digest(username)
    digests = [d for d in _trusted_digests(request) if d != digest]
    digests = [digest, *digests][:DEVICE_COOKIE_MAX_USERS]
    response.set_cookie(
        DEVICE_COOKIE,
        signing.dumps(digests, salt=DEVICE_COOKIE_SALT),
        max_age=settings.LOGIN_DEVICE_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


class LoginSlowdownMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        username = getattr(request, LOGIN_ATTEMPT_ATTRIBUTE, None)
        if username is None:
            return response
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.get_username() == username:
            _remember_device(request, response, username)
        else:
            # Wrong password, or refused by axes: both are tries at this username.
            login_failure_record(username)
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if request.method != "POST" or match is None or match.view_name not in LOGIN_VIEWS:
            return None
        username = request.POST.get(USERNAME_FIELD, "")
        if not username or len(username) > 150:  # longer than any username: a failure anyway
            return None
        wait = login_slowdown_wait(request, username)
        if wait:
            response = render(
                request, "portal/login_slowed.html", {"retry_after": wait}, status=429
            )
            response["Retry-After"] = str(wait)
            return response
        setattr(request, LOGIN_ATTEMPT_ATTRIBUTE, username)
        return None
