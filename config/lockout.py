"""The page django-axes shows a browser locked out of logging in (AXES_LOCKOUT_CALLABLE):
for how long, where to log in again, and whom to ask."""

from __future__ import annotations

import math

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse


def lockout_response(
    request: HttpRequest, credentials: dict | None, *args, **kwargs
) -> HttpResponse:
    minutes = max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    admin = request.path.startswith(reverse("admin:index"))
    response = render(
        request,
        "portal/locked_out.html",
        {
            "minutes": minutes,
            "login_url": reverse("admin:login") if admin else reverse("portal:login"),
            "contact": settings.DOCKSIDE_SUPPORT_EMAIL,
        },
        status=429,
    )
    response["Retry-After"] = str(minutes * 60)
    return response
