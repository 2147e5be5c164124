"""The magic-link page a customer opens from an email."""

from __future__ import annotations

import logging
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from connections.integrations import integration_catalog
from connections.link import magic_links as magic_link_service
from connections.link import services as link_service
from connections.link.endpoints import (
    link_config,
    magic_link_page_ref,
    session_grant_add,
    session_magic_link,
)
from connections.link.guess_limits import connect_record_miss
from connections.models import MagicLink

logger = logging.getLogger(__name__)


# --- Magic links -------------------------------------------------------------------------


def _link_sender_name(link: MagicLink) -> str:
    """Who sent the link, as the customer knows them: the issuing staff member's name. Never
    their username (often an email address) nor their email: the address to write to is
    our support address."""
    return link.created_by.get_full_name() if link.created_by else ""


def _link_unavailable(request: HttpRequest, link: MagicLink) -> HttpResponse:
    return render(
        request,
        "connect/unavailable.html",
        {
            "reason": link.state,
            "link": link,
            "sender_name": _link_sender_name(link),
            # Our support address, never the issuing staff member's own email.
            "contact": settings.DOCKSIDE_SUPPORT_EMAIL,
        },
        status=410,
    )


def _token_in_url(view):
    """For the one URL that holds a magic-link token: no Referer takes it to another
    site, and no cache keeps the answer."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.headers["Referrer-Policy"] = "no-referrer"
        add_never_cache_headers(response)
        return response

    return wrapped


@_token_in_url
@require_GET
def connect_page(request: HttpRequest, token: str) -> HttpResponse:
    """A magic link. The GET records the visit and grants this browser session the right to
    connect for the link's customer; it consumes nothing (mail scanners prefetch links)."""
    link = magic_link_service.magic_link_find(token=token)
    if link is None:
        # Only misses are throttled: guesses from this address never block a real link.
        if connect_record_miss(request):
            return render(
                request,
                "connect/unavailable.html",
                {"reason": "throttled", "contact": settings.DOCKSIDE_SUPPORT_EMAIL},
                status=429,
            )
        return render(
            request,
            "connect/unavailable.html",
            {"reason": "unknown", "contact": settings.DOCKSIDE_SUPPORT_EMAIL},
            status=404,
        )
    try:
        link_service.magic_link_usable_check(link=link)
    except link_service.LinkRefused:
        return _link_unavailable(request, link)
    magic_link_service.magic_link_open(link=link)
    session_grant_add(request, link)
    # The grant is in the session now: the token leaves the address bar, and with it the
    # history, a reload's access-log line and a shared screen. The page's URL names the
    # link by a reference, so a reload of this tab stays on this link.
    return redirect(f"{reverse('connect_granted')}?link={magic_link_page_ref(link.pk)}")


@never_cache
@require_GET
def connect_granted_page(request: HttpRequest) -> HttpResponse:
    """The magic-link page, at a URL without the token: the link this session opened.
    Without a grant (another browser, a session that ended) it asks to open the link from
    the email again; a link spent or expired since says so."""
    ref = request.GET.get("link") or None
    link = session_magic_link(request, ref)
    if link is None:
        return render(
            request,
            "connect/unavailable.html",
            {"reason": "no_grant", "contact": settings.DOCKSIDE_SUPPORT_EMAIL},
            status=403,
        )
    try:
        link_service.magic_link_usable_check(link=link)
    except link_service.LinkRefused:
        return _link_unavailable(request, link)
    config = link_config(
        request,
        customer=link.customer,
        allow_list=link.allowed_integrations,
        reinstall=link.reinstall_connection,
        headers={"X-Dockside-Actor": "magic-link", "X-Dockside-Link": magic_link_page_ref(link.pk)},
        magic_link=link,
    )
    return render(
        request,
        "connect/page.html",
        {
            "link": link,
            "customer": link.customer,
            "link_config": config,
            "integrations": integration_catalog(),
            "sender_name": _link_sender_name(link),
            "contact": settings.DOCKSIDE_SUPPORT_EMAIL,
        },
    )
