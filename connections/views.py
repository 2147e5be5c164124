"""The customer portal and the JSON endpoints behind the embedded Trackstar Link."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.crypto import constant_time_compare, salted_hmac
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from connections import selectors, services
from connections.api import BadRequest, error, json_body, required_string
from connections.filters import InventoryFilterForm, OrderFilterForm
from connections.forms import ConnectionRenameForm
from connections.integrations import (
    connection_label,
    fallback_display_name,
    integration_catalog,
    integration_display_name,
    integration_is_known,
)
from connections.middleware import mark_link_page
from connections.models import AuthCodeExchange, Connection, MagicLink
from connections.services.audit import Actor
from connections.throttle import connect_record_miss, link_endpoint_wait
from connections.trackstar import (
    TrackstarAuthError,
    TrackstarError,
    TrackstarRateLimited,
    TrackstarUnavailable,
)
from customers.models import Customer
from customers.permissions import PortalAction, membership_can, membership_permissions
from customers.selectors import customer_list_for_user
from customers.tenancy import (
    CustomerRequest,
    customer_choose,
    customer_required,
    request_customer,
)

logger = logging.getLogger(__name__)


# --- Who is connecting ----------------------------------------------------------------------


@dataclass
class LinkActor:
    """Whom a Link request acts for, taken from the session only."""

    customer: Customer
    source: str
    user: Actor = None
    allowed_integrations: list[str] = field(default_factory=list)  # empty: all of them
    reinstall_connection: Connection | None = None  # forced by a reinstall magic link
    magic_link: MagicLink | None = None


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


def _session_grant_add(request: HttpRequest, link: MagicLink) -> None:
    ids = [i for i in _session_grants(request) if i != link.pk] + [link.pk]
    request.session[MAGIC_LINK_SESSION_KEY] = ids[-MAGIC_LINK_SESSION_MAX:]


def _session_magic_link(request: HttpRequest, ref: str | None) -> MagicLink | None:
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


def magic_link_actor(request: HttpRequest, *, allow_spent: bool = False) -> LinkActor | None:
    """The grant of the magic link opened in this session. A spent link still lets the
    visitor read how their own exchange ended (allow_spent), and nothing more."""
    link = _session_magic_link(request, request.META.get(MAGIC_LINK_REF_HEADER) or None)
    if link is None:
        return None
    if not allow_spent and (not link.is_usable or not link.customer.is_active):
        raise services.LinkUnavailable("This link has expired, was revoked, or was already used.")
    return LinkActor(
        customer=link.customer,
        source=Connection.Source.MAGIC_LINK,
        user=request.user if request.user.is_authenticated else None,
        allowed_integrations=list(link.allowed_integrations),
        reinstall_connection=link.reinstall_connection,
        magic_link=link,
    )


def link_actor(request: HttpRequest, *, allow_spent: bool = False) -> LinkActor | None:
    if request.META.get(MAGIC_LINK_HEADER) == "magic-link":
        return magic_link_actor(request, allow_spent=allow_spent)
    customer = request_customer(request)
    if customer is None:
        return None
    return LinkActor(customer=customer, source=Connection.Source.PORTAL, user=request.user)


def _is_id(value: object) -> bool:
    text = str(value) if isinstance(value, (int, str)) else ""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _check_customer_id(actor: LinkActor, data: dict) -> None:
    # The seed's frontend sends customer_id. The session decides; a different one is refused.
    sent = data.get("customer_id")
    if sent not in (None, "") and str(sent) != actor.customer.public_id:
        raise BadRequest("You cannot connect a WMS for another customer.", status=403)


# A magic-link page names the customer's connections it offers to reconnect by a reference
# bound to the link, not by our ids: the visitor learns their names and nothing else.
RECONNECT_REF_PREFIX = "r_"


def magic_link_reconnect_ref(link: MagicLink, connection: Connection) -> str:
    digest = salted_hmac(
        "dockside.magic-link.reconnect", f"{link.pk}:{connection.pk}", algorithm="sha256"
    ).hexdigest()
    return RECONNECT_REF_PREFIX + digest[:32]


def magic_link_reconnectable(link: MagicLink) -> list[Connection]:
    """What a plain magic link may reconnect: the customer's live connections of the
    integrations it offers. A reinstall link reconnects its own connection only."""
    if link.reinstall_connection_id is not None:
        return []
    connections = selectors.connection_list_live(customer=link.customer)
    if link.allowed_integrations:
        connections = connections.filter(integration_name__in=link.allowed_integrations)
    return list(connections)


def _magic_link_reinstall_target(
    actor: LinkActor, link: MagicLink, data: dict
) -> Connection | None:
    if actor.reinstall_connection is not None:
        # A reinstall link reconnects its own connection, whatever the page sends.
        return actor.reinstall_connection
    raw = data.get("connection_id")
    if not isinstance(raw, str) or not raw.startswith(RECONNECT_REF_PREFIX):
        return None  # our ids mean nothing here: the visitor never reaches them
    for connection in magic_link_reconnectable(link):
        if constant_time_compare(raw, magic_link_reconnect_ref(link, connection)):
            return connection
    raise BadRequest("This connection cannot be reconnected from this link.", status=404)


def _reinstall_target(actor: LinkActor, data: dict) -> Connection | None:
    if actor.magic_link is not None:
        return _magic_link_reinstall_target(actor, actor.magic_link, data)
    raw = data.get("connection_id")
    if raw in (None, ""):
        return None
    if not _is_id(raw):
        raise BadRequest("'connection_id' must be a connection id.")
    try:
        connection = selectors.connection_get(customer=actor.customer, pk=int(raw))
    except Http404 as e:
        raise BadRequest("Connection not found.", status=404) from e
    if connection.status == Connection.Status.DISCONNECTED:
        raise BadRequest("This connection was disconnected; connect your WMS anew.", status=409)
    return connection


def _check_portal_role(actor: LinkActor, reinstall: Connection | None) -> None:
    """A portal user connects or reconnects as their role allows. Staff (admin URLs) and
    magic-link visitors act by their own grant, not by a membership."""
    if actor.source != Connection.Source.PORTAL:
        return
    action = PortalAction.RECONNECT if reinstall is not None else PortalAction.CONNECT
    user = actor.user
    if user is None or not membership_can(user=user, customer=actor.customer, action=action):
        message = (
            "Only an owner of this account can reconnect a WMS."
            if reinstall is not None
            else "Only an owner of this account can connect a WMS."
        )
        raise BadRequest(message, status=403)


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
        except services.LinkUnavailable as e:
            return error(str(e), status=410)
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
        _check_customer_id(actor, data)
        reinstall = _reinstall_target(actor, data)
        _check_portal_role(actor, reinstall)
        return lambda: self._link_token_create(actor, reinstall)

    def _link_token_create(self, actor: LinkActor, reinstall: Connection | None) -> HttpResponse:
        try:
            link_token = services.link_token_create(
                customer=actor.customer,
                reinstall=reinstall,
                source=actor.source,
                user=actor.user,
                magic_link=actor.magic_link,
            )
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
        _check_customer_id(actor, data)
        auth_code = required_string(data, "auth_code", max_length=2048)
        integration_name = required_string(data, "integration_name", max_length=64)
        # The link token Link was opened with (from our get-link-token): it must be one we
        # minted for this customer and handed to this caller, or the code is not taken.
        link_token = required_string(data, "link_token", max_length=2048)
        if not integration_is_known(integration_name):
            raise BadRequest(f"Unknown integration '{integration_name}'.")
        if actor.allowed_integrations and integration_name not in actor.allowed_integrations:
            raise BadRequest("This link does not allow that integration.", status=403)
        reinstall = _reinstall_target(actor, data)
        _check_portal_role(actor, reinstall)
        try:
            existing = services.exchange_existing(customer=actor.customer, auth_code=auth_code)
            if existing is not None:
                # A retry of a code we hold (connect.js retries a lost answer or a 429):
                # nothing is written, nothing is charged.
                return JsonResponse(self._exchange_json(existing, actor, url_kwargs), status=202)
            services.link_token_check(
                customer=actor.customer,
                link_token=link_token,
                reinstall=reinstall,
                source=actor.source,
                user=actor.user,
                magic_link=actor.magic_link,
            )
        except ValidationError as e:
            return error(e.messages[0], status=409)
        except services.LinkTokenRefused as e:
            return error(e.message, status=e.status)

        def submit() -> HttpResponse:
            try:
                submitted = services.exchange_submit(
                    customer=actor.customer,
                    auth_code=auth_code,
                    link_token=link_token,
                    integration_name=integration_name,
                    source=actor.source,
                    user=actor.user,
                    reinstall_connection=reinstall,
                    magic_link=actor.magic_link,
                )
            except ValidationError as e:
                return error(e.messages[0], status=409)
            except services.LinkTokenRefused as e:
                return error(e.message, status=e.status)
            except services.LinkUnavailable as e:
                return error(str(e), status=410)
            return JsonResponse(
                self._exchange_json(submitted.exchange, actor, url_kwargs), status=202
            )

        return submit

    def _exchange_status(self, actor: LinkActor, public_id, url_kwargs) -> HttpResponse:
        try:
            exchange = selectors.exchange_get(customer=actor.customer, public_id=public_id)
        except Http404:
            return error("Not found.", status=404)
        if actor.magic_link is not None and exchange.magic_link_id != actor.magic_link.pk:
            return error("Not found.", status=404)  # a link visitor sees only their own
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


FINISH_WORDS = "Almost there: reconnect to finish."


def _finish_by_reconnect(actor: LinkActor, connection: Connection) -> tuple[str, str | None]:
    """What the page says of a connection a reconnect would finish, and the connection_id
    this caller reconnects it with (None: someone else must)."""
    name = integration_display_name(connection.integration_name)
    how = f" Click Reconnect and enter the {name} credentials once more."
    link = actor.magic_link
    if link is None:
        if actor.source == Connection.Source.PORTAL and (
            actor.user is None
            or not membership_can(
                user=actor.user, customer=actor.customer, action=PortalAction.RECONNECT
            )
        ):
            return f"{FINISH_WORDS} An owner of your account can do it with Reconnect.", None
        return FINISH_WORDS + how, str(connection.pk)
    if link.is_usable:
        if link.reinstall_connection_id == connection.pk:
            return FINISH_WORDS + how, str(connection.pk)  # the link reconnects it anyway
        if connection in magic_link_reconnectable(link):
            return FINISH_WORDS + how, magic_link_reconnect_ref(link, connection)
    if connection.reconnect_notified_at is not None:
        return f"{FINISH_WORDS} We have emailed your account's contact a link to do it.", None
    return (
        f"{FINISH_WORDS} Please write to {settings.DOCKSIDE_SUPPORT_EMAIL} for a link to do it.",
        None,
    )


portal_link = LinkEndpoints(
    resolve_actor=link_actor,
    status_url=lambda exchange: reverse("portal:exchange_status", args=[exchange.public_id]),
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


# --- Portal pages -------------------------------------------------------------------------


def _may(request: CustomerRequest, action: PortalAction) -> bool:
    return membership_can(user=request.user, customer=request.customer, action=action)


def _portal_context(request: CustomerRequest) -> dict:
    customer = request.customer
    # can_connect, can_reconnect, can_disconnect, can_rename: the page shows only what the
    # user's role may do (the views refuse the rest).
    permissions = membership_permissions(user=request.user, customer=customer)
    integrations = integration_catalog()
    dashboard = selectors.connection_status_list(
        customer=customer,
        integrations=integrations,
        can_reconnect=permissions["can_reconnect"],
    )
    return {
        "customer": customer,
        "section": "connections",
        "dashboard": dashboard,
        "freshness": dashboard.freshness,
        "integrations": integrations,
        "other_customers": customer_list_for_user(user=request.user).exclude(pk=customer.pk),
        **permissions,
    }


@require_GET
@customer_required
def portal_index(request: CustomerRequest) -> HttpResponse:
    context = _portal_context(request)
    if context["can_connect"] or context["can_reconnect"]:
        # A member who may do neither gets no Link at all: nothing to open, no script.
        context["link_config"] = link_config(
            request, customer=request.customer, can_reconnect=context["can_reconnect"]
        )
    with timezone.override(request.customer.tzinfo):  # times on the page are the customer's
        return render(request, "portal/index.html", context)


@require_GET
@customer_required
def portal_connections_table(request: CustomerRequest) -> HttpResponse:
    with timezone.override(request.customer.tzinfo):
        return render(request, "portal/_connections.html", _portal_context(request))


@require_GET
def portal_connections_status(request: HttpRequest) -> HttpResponse:
    """What the dashboard polls while something connects or syncs: per connection its
    state, the words for it and each resource's freshness and progress. Only the current
    customer's connections; every role may read it. JSON errors, not login redirects: the
    caller is a script."""
    if not request.user.is_authenticated:
        return error("Log in again to see your connections.", status=403)
    customer = request_customer(request)
    if customer is None:
        return error("Choose which account to show first.", status=403)
    permissions = membership_permissions(user=request.user, customer=customer)
    integrations = integration_catalog()
    dashboard = selectors.connection_status_list(
        customer=customer, integrations=integrations, can_reconnect=permissions["can_reconnect"]
    )
    response = JsonResponse(
        {
            "busy": dashboard.busy,
            "connections": [_status_json(status) for status in dashboard.connections],
            "connecting": [
                {
                    "exchange_id": str(connecting.exchange.public_id),
                    "integration_name": connecting.exchange.integration_name,
                    "name": connecting.wms,
                    "state": connecting.state,
                    "tone": connecting.tone,
                    "badge": connecting.badge,
                }
                for connecting in dashboard.connecting
            ],
        }
    )
    add_never_cache_headers(response)
    return response


def _status_json(status: selectors.ConnectionStatus) -> dict:
    connection = status.connection
    last = status.last_success_at
    return {
        "id": connection.pk,
        "name": connection.label or status.wms,
        "status": connection.status,
        "state": status.state,
        "tone": status.tone,
        "badge": status.badge,
        "words": status.words,
        "notes": status.notes,
        "busy": status.busy,
        "last_success_at": last.isoformat() if last else None,
        "last_sync": status.last_sync_words,
        "progress": status.progress,
        "long_sync": status.long_sync,
        "resources": [
            {
                "resource": item.resource,
                "label": item.label,
                "state": item.state,
                "tone": item.tone,
                "words": item.words,
                "reason": item.reason,
                "last_success_at": item.last_success_at.isoformat()
                if item.last_success_at
                else None,
                "records": item.records,
                "total": item.total,
            }
            for item in status.resources
        ],
    }


@require_http_methods(["GET", "POST"])
@customer_required
def connection_disconnect(request: CustomerRequest, pk: int) -> HttpResponse:
    """An owner disconnects. Another customer's connection is a 404; a member of this
    customer gets a 403."""
    connection = selectors.connection_get(customer=request.customer, pk=pk)
    if not _may(request, PortalAction.DISCONNECT):
        raise PermissionDenied("Only an owner of this account can disconnect a WMS.")
    if connection.status == Connection.Status.DISCONNECTED:
        messages.info(request, f"{connection_label(connection)} is already disconnected.")
        return redirect("portal:index")
    if request.method == "POST":
        try:
            services.connection_disconnect(connection=connection, actor=request.user)
        except TrackstarError:
            messages.error(
                request,
                "Trackstar is not reachable right now; nothing was "
                "changed. Please try again in a minute.",
            )
        else:
            messages.success(request, f"{connection_label(connection)} is disconnected.")
        return redirect("portal:index")
    return render(
        request,
        "portal/disconnect_confirm.html",
        {
            "connection": connection,
            "customer": request.customer,
            "name": connection_label(connection),
        },
    )


@require_http_methods(["GET", "POST"])
@customer_required
def connection_rename(request: CustomerRequest, pk: int) -> HttpResponse:
    """An owner names a connection ("ShipBob EU"). Another customer's connection is a 404;
    a member of this customer gets a 403."""
    connection = selectors.connection_get(customer=request.customer, pk=pk)
    if not _may(request, PortalAction.RENAME):
        raise PermissionDenied("Only an owner of this account can rename its connections.")
    form = ConnectionRenameForm(
        request.POST if request.method == "POST" else None,
        initial={"label": connection_label(connection)},
    )
    if request.method == "POST" and form.is_valid():
        old = connection_label(connection)
        try:
            services.connection_rename(
                connection=connection, label=form.cleaned_data["label"], actor=request.user
            )
        except ValidationError as e:
            form.add_error("label", e)
        else:
            messages.success(request, f"{old} is now called {connection_label(connection)}.")
            return redirect("portal:index")
    return render(
        request,
        "portal/rename.html",
        {
            "connection": connection,
            "customer": request.customer,
            "name": connection_label(connection),
            "form": form,
        },
        status=400 if form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def choose_customer(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect(settings.LOGIN_URL)
    customers = customer_list_for_user(user=request.user)
    if request.method == "POST":
        raw = request.POST.get("customer", "")
        chosen = customers.filter(pk=raw).first() if _is_id(raw) else None
        if chosen is None:
            raise Http404("No such customer.")
        customer_choose(request, customer=chosen)
        return redirect("portal:index")
    return render(request, "portal/choose_customer.html", {"customers": customers})


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
    link = services.magic_link_find(token=token)
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
    if not link.is_usable or not link.customer.is_active:
        return _link_unavailable(request, link)
    services.magic_link_open(link=link)
    _session_grant_add(request, link)
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
    link = _session_magic_link(request, ref)
    if link is None:
        return render(
            request,
            "connect/unavailable.html",
            {"reason": "no_grant", "contact": settings.DOCKSIDE_SUPPORT_EMAIL},
            status=403,
        )
    if not link.is_usable or not link.customer.is_active:
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


# --- Synced data in the portal ----------------------------------------------------------------

PAGE_SIZE = 50


def _page(request: HttpRequest, queryset):
    # Two queries whatever the data size: a COUNT and one page.
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _pager_query(request: HttpRequest) -> str:
    """The current filters as a query string prefix for the pager's links."""
    params = request.GET.copy()
    params.pop("page", None)
    encoded = params.urlencode()
    return f"{encoded}&" if encoded else ""


def _data_page(request: CustomerRequest, template: str, context: dict) -> HttpResponse:
    customer = request.customer
    # Times on the page, and the days of its date filters, are the customer's.
    with timezone.override(customer.tzinfo):
        return render(
            request,
            template,
            {"customer": customer, "integrations": integration_catalog(), **context},
        )


@require_GET
@customer_required
def portal_inventory(request: CustomerRequest) -> HttpResponse:
    customer = request.customer
    connections = selectors.record_connection_list(customer=customer)
    filters = InventoryFilterForm(request.GET, connections=connections)
    items = selectors.inventory_list(
        customer=customer,
        search=filters.value_of("q") or "",
        connection=filters.value_of("connection"),
    )
    return _data_page(
        request,
        "portal/inventory.html",
        {
            "filters": filters,
            "connections": connections,
            "page": _page(request, items),
            "warehouses": selectors.warehouse_names(customer=customer),
            "query": _pager_query(request),
            "freshness": selectors.freshness_list(customer=customer, resources=["inventory"]),
            "section": "inventory",
        },
    )


@require_GET
@customer_required
def portal_orders(request: CustomerRequest) -> HttpResponse:
    customer = request.customer
    connections = selectors.record_connection_list(customer=customer)
    filters = OrderFilterForm(request.GET, connections=connections)
    orders = selectors.order_list(
        customer=customer,
        search=filters.value_of("q") or "",
        connection=filters.value_of("connection"),
        status=filters.value_of("status") or "",
        created_from=filters.value_of("created_from"),
        created_to=filters.value_of("created_to"),
    )
    return _data_page(
        request,
        "portal/orders.html",
        {
            "filters": filters,
            "connections": connections,
            "statuses": selectors.ORDER_STATUSES,
            "query": _pager_query(request),
            "page": _page(request, orders),
            "freshness": selectors.freshness_list(customer=customer, resources=["orders"]),
            "section": "orders",
        },
    )


@require_GET
@customer_required
def portal_order_detail(request: CustomerRequest, pk: int) -> HttpResponse:
    # Another customer's order is not found (404), as one that does not exist.
    detail = selectors.order_get(customer=request.customer, pk=pk)
    return _data_page(
        request,
        "portal/order_detail.html",
        {"detail": detail, "order": detail.order, "section": "orders"},
    )
