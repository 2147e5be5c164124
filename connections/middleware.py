"""Response headers for pages that embed Trackstar Link."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# OAuth integrations open their login in a popup from the Link modal. Django's default
# (SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin") severs that popup from the page, so
# the login never reports back. Only pages that embed Link relax it; others keep the default.
LINK_PAGE_OPENER_POLICY = "same-origin-allow-popups"
LINK_PAGE_ATTRIBUTE = "embeds_trackstar_link"


def mark_link_page(request: HttpRequest) -> None:
    """Called by views.link_config(): every page that embeds Link builds its config there."""
    setattr(request, LINK_PAGE_ATTRIBUTE, True)


def link_page_opener_policy(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if getattr(request, LINK_PAGE_ATTRIBUTE, False):
            response.headers["Cross-Origin-Opener-Policy"] = LINK_PAGE_OPENER_POLICY
        return response

    return middleware
