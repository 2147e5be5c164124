"""The page django-axes shows a browser locked out of logging in (AXES_LOCKOUT_CALLABLE):
for how long, where to log in again, and whom to ask."""

from __future__ import annotations

import math
from datetime import timedelta

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone


def lockout_seconds_left(request: HttpRequest, credentials: dict | None) -> int:
    """How long this username stays locked from this address: the cool-off counts from the
    last failure axes counted (tries during the lockout are not counted, so it does not
    move). The whole cool-off when that failure cannot be read."""
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    handler = AxesProxyHandler.get_implementation()
    get_user_attempts = getattr(handler, "get_user_attempts", None)  # the database handler's
    latest = None
    if get_user_attempts is not None and credentials is not None:
        for attempts in get_user_attempts(request, credentials):
            times = attempts.order_by("-attempt_time").values_list("attempt_time", flat=True)
            newest = times.first()
            if newest is not None and (latest is None or newest > latest):
                latest = newest
    if latest is None:
        return int(cool_off.total_seconds())
    return max(1, math.ceil((latest + cool_off - timezone.now()).total_seconds()))


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict | None = None,
    *args,
    **kwargs,
) -> HttpResponse:
    # axes calls this with (request, original_response, credentials); the credentials are
    # also on the request (axes_credentials) whichever path locked it.
    credentials = credentials or getattr(request, "axes_credentials", None)
    seconds = lockout_seconds_left(request, credentials)
    minutes = max(1, math.ceil(seconds / 60))
    admin = request.path.startswith(reverse("admin:index"))
    response = render(
        request,
        "portal/locked_out.html",
        {
            "minutes": minutes,
            "cool_off_minutes": max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)),
            "login_url": reverse("admin:login") if admin else reverse("portal:login"),
            "password_reset_url": None if admin else reverse("portal:password_reset"),
            "contact": settings.DOCKSIDE_SUPPORT_EMAIL,
        },
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response
