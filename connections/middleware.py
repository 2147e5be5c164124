"""Response headers for pages that embed Trackstar Link, and the Content-Security-Policy
that lets Link (and nothing else from outside) run on our pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import import_module
from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    QueryDict,
    UnreadablePostError,
)
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404, resolve

# OAuth integrations open their login in a popup from the Link modal. Django's default
# (SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin") severs that popup from the page, so
# the login never reports back. Only pages that embed Link relax it; others keep the default.
LINK_PAGE_OPENER_POLICY = "same-origin-allow-popups"
LINK_PAGE_ATTRIBUTE = "embeds_trackstar_link"


def mark_link_page(request: HttpRequest) -> None:
    """Called by connections.link.endpoints.link_config(): every page that embeds Link builds its config there."""
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


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def link_origins() -> list[str]:
    """Where Trackstar Link comes from: the script's host, plus any an operator names.
    Read per response, so a test (or settings override) that moves the script moves these."""
    origins = [_origin(settings.TRACKSTAR_LINK_SCRIPT_URL)]
    origins += [_origin(url) for url in settings.TRACKSTAR_LINK_EXTRA_ORIGINS]
    return list(dict.fromkeys(origin for origin in origins if origin))


# What Link may do on our pages: load its script, open its modal (an iframe, or a modal
# styled in the page), call its API, show its images and fonts. Nothing else but our origin.
LINK_DIRECTIVES = ("script-src", "style-src", "img-src", "font-src", "connect-src", "frame-src")


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp with the Link origins added to settings.CONTENT_SECURITY_POLICY, and the
    Trackstar API's origin for images (integration logos), connections and frames."""

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        origins = link_origins()
        update = {directive: list(origins) for directive in LINK_DIRECTIVES}
        api = _origin(settings.TRACKSTAR_BASE_URL)
        if api:
            # Logos come from the API's host; Link's script may call the API and frame a
            # page of it, wherever the script itself is served from (a CDN).
            for directive in ("img-src", "connect-src", "frame-src"):
                update[directive].append(api)
        for directive, sources in (parts.update or {}).items():
            extra = sources if isinstance(sources, (list, tuple)) else [sources]
            update[directive] = [*update.get(directive, []), *extra]
        parts.update = update
        return parts


class RefuseUnreadableRequestsMiddleware:
    """A request Django cannot read, or whose query string holds a NUL, is a 400 here; a
    session cookie that cannot be a session key is no session.

    PostgreSQL has no NUL in text, so a filter with one (?status=%00) failed in the
    database, and so did the session lookup of a cookie with one (sessionid="ab\\000cd",
    which Django unquotes): a 500 on every page. A query string of more than
    DATA_UPLOAD_MAX_NUMBER_FIELDS parameters raises on every read of request.GET, the
    error report's included: a 500 on every URL. A form Django cannot parse (a charset
    other than UTF-8, a multipart body without its boundary) raised where the CSRF check
    reads it, and again where Django's own error pages (CSRF-protected too, the 404 page
    included) read it: a 500. Placed after SessionMiddleware (which makes the session
    object, unread until here) and just before CsrfViewMiddleware, which reads the form
    next anyway; a view exempt from CSRF (the Svix-signed webhook) reads its own body."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        _forget_unusable_session_key(request)
        try:
            query = request.GET.lists()
        except SuspiciousOperation as e:  # TooManyFieldsSent
            # Whatever reads request.GET after this (an error report, a 4xx log line) must
            # not raise again: it reads an empty query.
            request.GET = QueryDict()
            return HttpResponseBadRequest(
                f"The query string cannot be read: {e}", content_type="text/plain"
            )
        if any("\x00" in key or "\x00" in "".join(values) for key, values in query):
            return HttpResponseBadRequest(
                "The query string contains a NUL character.", content_type="text/plain"
            )
        if request.method == "POST" and not _csrf_exempt(request):
            try:
                request.POST  # noqa: B018  # parsed here, once, as the CSRF check would
            except RequestDataTooBig:
                return HttpResponse(
                    "The request body is too large.", status=413, content_type="text/plain"
                )
            except (
                BadRequest,
                SuspiciousOperation,
                MultiPartParserError,
                UnreadablePostError,
            ) as e:
                return HttpResponseBadRequest(
                    f"The request body cannot be read: {e}", content_type="text/plain"
                )
        return self.get_response(request)


# What Django's own session stores hand out (SessionBase._get_new_session_key): 32 of
# VALID_KEY_CHARS. The signed-cookie store keeps the session in the cookie and looks
# nothing up.
SESSION_KEY_SHAPE = re.compile(r"[a-z0-9]{32}", re.ASCII)
SIGNED_COOKIE_SESSIONS = "django.contrib.sessions.backends.signed_cookies"


def _forget_unusable_session_key(request: HttpRequest) -> None:
    """A session cookie that no session store made (a NUL, any other character, any other
    length) names no session: the request goes on without one, as with no cookie, and
    SessionMiddleware deletes the cookie in its answer."""
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if key is None or settings.SESSION_ENGINE == SIGNED_COOKIE_SESSIONS:
        return
    if not SESSION_KEY_SHAPE.fullmatch(key) and hasattr(request, "session"):
        request.session = import_module(settings.SESSION_ENGINE).SessionStore()


def _csrf_exempt(request: HttpRequest) -> bool:
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return False  # the 404 page reads the form too
    return getattr(match.func, "csrf_exempt", False)
