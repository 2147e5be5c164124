"""The JSON endpoints behind the embedded Trackstar Link, shared by the portal, the
magic-link page and admin: whom a request acts for (its session's login or magic-link
grant), and the get-link-token, store-token and exchange-status views. They parse the
request, call the Link service (services.py, which holds the rules) and answer its
refusals as JSON 4xx."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from connections import selectors
from connections.integrations import (
    connection_label,
    fallback_display_name,
    integration_catalog,
    integration_display_name,
)
from connections.json_requests import BadRequest, error, json_body, required_string
from connections.link import services as link_service
from connections.link.guess_limits import link_endpoint_wait
from connections.link.services import (
    LinkActor,
    LinkRefused,
    magic_link_reconnect_ref,
    magic_link_reconnectable,
)
from connections.middleware import mark_link_page
from connections.models import AuthCodeExchange, Connection, MagicLink
from connections.trackstar import (
    TrackstarAuthError,
    TrackstarError,
    TrackstarRateLimited,
    TrackstarUnavailable,
)
from customers.models import Customer
from customers.tenancy import request_customer

logger = logging.getLogger(__name__)


# --- Who is connecting ----------------------------------------------------------------------


# The ids of the magic links this session opened, newest last. Several: a customer may open
# two emailed links (one reconnect each) in two tabs, and each tab acts for its own.
MAGIC_LINK_SESSION_KEY = "dockside_magic_links"
MAGIC_LINK_SESSION_MAX = 10
# The magic-link page says so on each call; the portal never uses a link grant by accident.
MAGIC_LINK_HEADER = "HTTP_X_DOCKSIDE_ACTOR"
# And names which of the session's links it is (magic_link_page_ref; without it, the newest).
MAGIC_LINK_REF_HEADER = "HTTP_X_DOCKSIDE_LINK"


def magic_link_page_ref(link_id: int) -> str:
    """Names a link in the token-free page's URL and calls. Not the token: it means nothing
    outside a session that opened the link."""
    return salted_hmac("dockside.magic-link.page", str(link_id), algorithm="sha256").hexdigest()[
        :32
    ]


def _session_grants(request: HttpRequest) -> list[int]:
    ids = request.session.get(MAGIC_LINK_SESSION_KEY)
    if not isinstance(ids, list):
        return []
    return [i for i in ids if type(i) is int]


def session_grant_add(request: HttpRequest, link: MagicLink) -> None:
    ids = [i for i in _session_grants(request) if i != link.pk] + [link.pk]
    request.session[MAGIC_LINK_SESSION_KEY] = ids[-MAGIC_LINK_SESSION_MAX:]


def session_magic_link(request: HttpRequest, ref: str | None) -> MagicLink | None:
    """A magic link this session opened (connect_page granted it): the one `ref` names, or
    the newest without one."""
    ids = _session_grants(request)
    if not ids:
        return None
    named = (i for i in ids if constant_time_compare(ref or "", magic_link_page_ref(i)))
    link_id = ids[-1] if ref is None else next(named, None)
    if link_id is None:
        return None
    return (
        MagicLink.objects.select_related("customer", "reinstall_connection")
        .filter(pk=link_id)
        .first()
    )


def session_magic_link_actor(
    request: HttpRequest, *, allow_spent: bool = False
) -> LinkActor | None:
    """The grant of the magic link opened in this session. A spent link still lets the
    visitor read how their own exchange ended (allow_spent), and nothing more."""
    link = session_magic_link(request, request.META.get(MAGIC_LINK_REF_HEADER) or None)
    if link is None:
        return None
    return link_service.magic_link_actor(
        link=link,
        user=request.user if request.user.is_authenticated else None,
        allow_spent=allow_spent,
    )


def link_actor(request: HttpRequest, *, allow_spent: bool = False) -> LinkActor | None:
    if request.META.get(MAGIC_LINK_HEADER) == "magic-link":
        return session_magic_link_actor(request, allow_spent=allow_spent)
    customer = request_customer(request)
    if customer is None:
        return None
    return LinkActor(customer=customer, source=Connection.Source.PORTAL, user=request.user)


def _link_limit_wait(request: HttpRequest, actor: LinkActor, endpoint: str) -> int:
    # The caller: a user (portal or staff), else the magic link, which a visitor cannot
    # shed as they could a session.
    if actor.user is not None and actor.user.is_authenticated:
        caller = f"user:{actor.user.pk}"
    elif actor.magic_link is not None:
        caller = f"magic-link:{actor.magic_link.pk}"
    else:
        caller = f"session:{request.session.session_key}"
    wait = link_endpoint_wait(endpoint=endpoint, caller=caller, customer_pk=actor.customer.pk)
    if wait:
        logger.warning(
            "Link endpoint %s limited for %s",
            endpoint,
            caller,
            extra={"customer_id": actor.customer.public_id},
        )
    return wait


class LinkEndpoints:
    """get-link-token, store-token and exchange status, for one way of deciding who acts:
    the portal session or a magic-link grant (portal URLs), or staff for a customer
    (admin URLs). Bad input is a JSON 4xx, never a 500."""

    def __init__(self, *, resolve_actor, status_url):
        # (request, *, allow_spent, **url_kwargs) -> LinkActor | None
        self.resolve_actor = resolve_actor
        self.status_url = status_url  # (exchange, **url_kwargs) -> str

    def _run(
        self,
        request: HttpRequest,
        handler,
        url_kwargs: dict,
        *,
        allow_spent: bool = False,
        limit: str | None = None,
    ) -> HttpResponse:
        """The handler parses the request and checks what the caller may do, then answers
        at once (an HttpResponse: refused, or nothing to do) or hands back the step that
        calls Trackstar or writes an exchange. Only that step is charged to the limits: a
        member who may not connect, or a request that is refused anyway, spends nothing of
        the customer's budget, so it cannot lock the owner out."""
        try:
            actor = self.resolve_actor(request, allow_spent=allow_spent, **url_kwargs)
        except ValidationError as e:
            return _refused(e)
        if actor is None:
            return error("Log in, or open your connect link again.", status=403)
        try:
            outcome: HttpResponse | Callable[[], HttpResponse] = handler(request, actor, url_kwargs)
            if isinstance(outcome, HttpResponse):
                return outcome
            if limit is not None and (wait := _link_limit_wait(request, actor, limit)):
                response = error(
                    f"Too many attempts to connect. Please try again in {wait} seconds.",
                    status=429,
                )
                response["Retry-After"] = str(wait)
                return response
            return outcome()
        except BadRequest as e:
            return error(e.message, status=e.status)
        except ValidationError as e:
            return _refused(e)

    def get_link_token(self, request: HttpRequest, **url_kwargs) -> HttpResponse:
        if request.method != "POST":
            return error("Use POST.", status=405)
        return self._run(request, self._get_link_token, url_kwargs, limit="get_link_token")

    def store_token(self, request: HttpRequest, **url_kwargs) -> HttpResponse:
        if request.method != "POST":
            return error("Use POST.", status=405)
        return self._run(request, self._store_token, url_kwargs, limit="store_token")

    def exchange_status(self, request: HttpRequest, public_id, **url_kwargs) -> HttpResponse:
        if request.method != "GET":
            return error("Use GET.", status=405)
        return self._run(
            request,
            lambda r, a, k: self._exchange_status(a, public_id, k),
            url_kwargs,
            allow_spent=True,
        )

    def _get_link_token(
        self, request: HttpRequest, actor: LinkActor, url_kwargs
    ) -> Callable[[], HttpResponse]:
        data = json_body(request, required=False)
        asked = {
            "customer_id": data.get("customer_id"),
            "connection_ref": data.get("connection_id"),
        }
        reinstall = link_service.link_token_issue_check(actor=actor, **asked)
        return lambda: self._link_token_issue(actor, reinstall, asked)

    def _link_token_issue(
        self, actor: LinkActor, reinstall: Connection | None, asked: dict
    ) -> HttpResponse:
        try:
            link_token = link_service.link_token_issue(actor=actor, **asked)
        except (TrackstarUnavailable, TrackstarRateLimited) as e:
            logger.warning(
                "Link token failed: %s", e, extra={"customer_id": actor.customer.public_id}
            )
            return error(
                "Trackstar is not reachable right now. Please try again in a minute.", status=502
            )
        except TrackstarError as e:
            # Trackstar answered and refused (e.g. a reconnect of a connection it deleted).
            logger.warning(
                "Link token refused: %s", e, extra={"customer_id": actor.customer.public_id}
            )
            if isinstance(e, TrackstarAuthError):
                # Our API key (staff are alerted already): nothing the customer can fix.
                message = (
                    "Connecting is not possible right now; we are on it. Please try again "
                    f"later, or write to {settings.DOCKSIDE_SUPPORT_EMAIL}."
                )
                return error(message, status=503)
            message = (
                "This connection can no longer be reconnected; connect your WMS anew."
                if reinstall
                else "Connecting could not start. Please try again, or write to "
                f"{settings.DOCKSIDE_SUPPORT_EMAIL}."
            )
            return error(message, status=409)
        return JsonResponse({"linkToken": link_token, "link_token": link_token})

    def _store_token(
        self, request: HttpRequest, actor: LinkActor, url_kwargs
    ) -> HttpResponse | Callable[[], HttpResponse]:
        data = json_body(request)
        # Before the fields: a page acting for another customer hears that first.
        link_service.link_customer_check(actor=actor, customer_id=data.get("customer_id"))
        submission: dict[str, Any] = {
            "auth_code": required_string(data, "auth_code", max_length=2048),
            "integration_name": required_string(data, "integration_name", max_length=64),
            # The link token Link was opened with (from our get-link-token): it must be one
            # we minted for this customer and handed to this caller, or the code is not taken.
            "link_token": required_string(data, "link_token", max_length=2048),
            "connection_ref": data.get("connection_id"),
            "customer_id": data.get("customer_id"),
        }
        checked = link_service.link_code_submit_check(actor=actor, **submission)
        if checked.existing is not None:
            # A retry of a code we hold (connect.js retries a lost answer or a 429): nothing
            # is written, nothing is charged.
            return JsonResponse(
                self._exchange_json(checked.existing, actor, url_kwargs), status=202
            )

        def submit() -> HttpResponse:
            submitted = link_service.link_code_submit(actor=actor, **submission)
            return JsonResponse(
                self._exchange_json(submitted.exchange, actor, url_kwargs), status=202
            )

        return submit

    def _exchange_status(self, actor: LinkActor, public_id, url_kwargs) -> HttpResponse:
        try:
            exchange = link_service.link_exchange_get(actor=actor, public_id=public_id)
        except Http404:
            return error("Not found.", status=404)
        return JsonResponse(self._exchange_json(exchange, actor, url_kwargs))

    def _exchange_json(self, exchange: AuthCodeExchange, actor: LinkActor, url_kwargs) -> dict:
        connection = exchange.connection
        # Succeeded, but recovered without its access token (the worker died after Trackstar
        # answered, and no connection.created brought it): a reconnect finishes it. The
        # page says so and keeps polling: a late connection.created still finishes it.
        to_finish = (
            exchange.status == exchange.Status.SUCCEEDED
            and connection is not None
            and connection.status == Connection.Status.NEEDS_RECONNECT
            and connection.reconnect_cause == Connection.ReconnectCause.TOKEN_MISSING
        )
        message, reconnect_id = (
            _finish_by_reconnect(actor, connection)
            if to_finish and connection is not None
            else ("", None)
        )
        return {
            "exchange_id": str(exchange.public_id),
            "status": exchange.status,
            "error": exchange.last_error if exchange.status == exchange.Status.FAILED else "",
            "status_url": self.status_url(exchange, **url_kwargs),
            "reconnect_to_finish": to_finish,
            "message": message,
            # What the page sends as connection_id to reconnect it; null when this caller
            # cannot (a member who may not reconnect, a magic link that is used up).
            "reconnect_connection_id": reconnect_id,
            "connection": None
            if connection is None
            else {
                "id": connection.pk,
                "connection_id": connection.trackstar_connection_id,
                "integration_name": connection.integration_name,
                "label": connection_label(connection),
                "status": connection.status,
            },
        }


def _refused(e: ValidationError) -> JsonResponse:
    """A rule's refusal as the endpoints answer it: a LinkRefused says its status; any
    other ValidationError of a service is a conflict with the state of things."""
    status = e.status if isinstance(e, LinkRefused) else 409
    return error(e.messages[0], status=status)


FINISH_WORDS = "Almost there: reconnect to finish."


def _finish_by_reconnect(actor: LinkActor, connection: Connection) -> tuple[str, str | None]:
    """What the page says of a connection a reconnect would finish, and the connection_id
    this caller reconnects it with (None: someone else must)."""
    name = integration_display_name(connection.integration_name)
    how = f" Click Reconnect and enter the {name} credentials once more."
    reconnect_ref = link_service.link_reconnect_ref(actor=actor, connection=connection)
    if reconnect_ref is not None:
        return FINISH_WORDS + how, reconnect_ref
    if actor.magic_link is None:
        return f"{FINISH_WORDS} An owner of your account can do it with Reconnect.", None
    if connection.reconnect_notified_at is not None:
        return f"{FINISH_WORDS} We have emailed your account's contact a link to do it.", None
    return (
        f"{FINISH_WORDS} Please write to {settings.DOCKSIDE_SUPPORT_EMAIL} for a link to do it.",
        None,
    )


def _picker_integrations(*, allow_list: list[str], sandbox: bool) -> list[dict]:
    """The WMSes our own picker offers before Link opens (the same ones Link would)."""
    offered = []
    for slug, info in integration_catalog().items():
        if allow_list and slug not in allow_list:
            continue
        if not allow_list and slug == "sandbox" and not sandbox:
            continue
        name = info.get("display_name") or fallback_display_name(slug)
        offered.append({"slug": slug, "name": name, "logo": info.get("logo_url") or ""})
    # Alphabetical, Trackstar's test WMS last.
    return sorted(offered, key=lambda item: (item["slug"] == "sandbox", item["name"].lower()))


def _existing_connections(
    *, customer: Customer, reinstall: Connection | None, magic_link: MagicLink | None
) -> list[dict]:
    """The customer's live connections, so the page can offer "Reconnect it" before a
    second connection of the same WMS is made. A magic-link page learns only their names."""
    if reinstall is not None:
        return []  # the page reconnects that one and offers nothing else
    if magic_link is not None:
        return [
            {
                "ref": magic_link_reconnect_ref(magic_link, connection),
                "buttonId": f"reconnect-link-{n}",
                "integration": connection.integration_name,
                "label": connection_label(connection),
                "status": "",
            }
            for n, connection in enumerate(magic_link_reconnectable(magic_link), start=1)
        ]
    return [
        {
            "ref": str(connection.pk),
            # The same Link instance as the connection's own Reconnect button.
            "buttonId": f"reconnect-{connection.pk}",
            "integration": connection.integration_name,
            "label": connection_label(connection),
            "status": connection.status,
        }
        for connection in selectors.connection_list_live(customer=customer)
    ]


def link_config(
    request: HttpRequest,
    *,
    customer: Customer,
    allow_list: list[str] | None = None,
    reinstall: Connection | None = None,
    get_link_token_url: str = "",
    store_token_url: str = "",
    headers: dict | None = None,
    magic_link: MagicLink | None = None,
    can_reconnect: bool = True,
) -> dict:
    """What static/portal/connect.js needs to drive Trackstar Link on a page. The page's
    response then allows Link's OAuth popups (connections.middleware)."""
    mark_link_page(request)
    sandbox = settings.DEBUG or "trackstarhq.com" not in settings.TRACKSTAR_BASE_URL
    return {
        "scriptUrl": settings.TRACKSTAR_LINK_SCRIPT_URL,
        "getLinkTokenUrl": get_link_token_url or reverse("portal:get_link_token"),
        "storeTokenUrl": store_token_url or reverse("portal:store_token"),
        "headers": headers or {},
        "csrfToken": get_token(request),
        "integrationNames": {
            slug: info.get("display_name") or slug for slug, info in integration_catalog().items()
        },
        "integrationAllowList": allow_list or [],
        # Sent back with every call: the session must still act for this customer, or the
        # call is refused (another tab switched customer, another link was opened).
        "customerId": customer.public_id,
        "reinstallConnectionId": reinstall.pk if reinstall else None,
        # Offer Trackstar's "Sandbox" integration outside production (DEBUG or a sandbox URL).
        "sandbox": sandbox,
        # Our own picker, shown before Link opens (empty: let Link show its own).
        "integrations": _picker_integrations(allow_list=allow_list or [], sandbox=sandbox),
        "existing": _existing_connections(
            customer=customer, reinstall=reinstall, magic_link=magic_link
        ),
        # A portal member who may connect but not reconnect: the picker names the WMSes
        # already connected, and offers no "Reconnect it" (the server would refuse it).
        "canReconnect": can_reconnect,
    }
