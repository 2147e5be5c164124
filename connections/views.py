"""The customer portal and the JSON endpoints behind the embedded Trackstar Link."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from customers.models import Customer
from customers.selectors import customer_list_for_user
from customers.tenancy import (
    CustomerRequest,
    customer_choose,
    customer_required,
    request_customer,
)

from . import selectors, services
from .api import BadRequest, error, json_body, required_string
from .integrations import integration_catalog, integration_display_name, integration_is_known
from .middleware import mark_link_page
from .models import AuthCodeExchange, Connection, MagicLink
from .services.audit import Actor
from .throttle import connect_is_throttled, connect_record_miss
from .trackstar import TrackstarError, TrackstarRateLimited, TrackstarUnavailable

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


MAGIC_LINK_SESSION_KEY = "dockside_magic_link"
# The magic-link page says so on each call; the portal never uses a link grant by accident.
MAGIC_LINK_HEADER = "HTTP_X_DOCKSIDE_ACTOR"


def magic_link_actor(request: HttpRequest, *, allow_spent: bool = False) -> LinkActor | None:
    """The grant of the magic link opened in this session. A spent link still lets the
    visitor read how their own exchange ended (allow_spent), and nothing more."""
    link_id = request.session.get(MAGIC_LINK_SESSION_KEY)
    if link_id is None:
        return None
    link = (
        MagicLink.objects.select_related("customer", "reinstall_connection")
        .filter(pk=link_id)
        .first()
    )
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


def _reinstall_target(actor: LinkActor, data: dict) -> Connection | None:
    if actor.magic_link is not None:
        # A magic link reconnects its own connection, or none: whatever the page sends, a
        # link visitor never reaches the customer's other connections.
        return actor.reinstall_connection
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


class LinkEndpoints:
    """get-link-token, store-token and exchange status, for one way of deciding who acts:
    the portal session or a magic-link grant (portal URLs), or staff for a customer
    (admin URLs). Bad input is a JSON 4xx, never a 500."""

    def __init__(self, *, resolve_actor, status_url):
        # (request, *, allow_spent, **url_kwargs) -> LinkActor | None
        self.resolve_actor = resolve_actor
        self.status_url = status_url  # (exchange, **url_kwargs) -> str

    def _run(
        self, request: HttpRequest, handler, url_kwargs: dict, *, allow_spent: bool = False
    ) -> HttpResponse:
        try:
            actor = self.resolve_actor(request, allow_spent=allow_spent, **url_kwargs)
        except services.LinkUnavailable as e:
            return error(str(e), status=410)
        if actor is None:
            return error("Log in, or open your connect link again.", status=403)
        try:
            return handler(request, actor, url_kwargs)
        except BadRequest as e:
            return error(e.message, status=e.status)

    def get_link_token(self, request: HttpRequest, **url_kwargs) -> HttpResponse:
        if request.method != "POST":
            return error("Use POST.", status=405)
        return self._run(request, self._get_link_token, url_kwargs)

    def store_token(self, request: HttpRequest, **url_kwargs) -> HttpResponse:
        if request.method != "POST":
            return error("Use POST.", status=405)
        return self._run(request, self._store_token, url_kwargs)

    def exchange_status(self, request: HttpRequest, public_id, **url_kwargs) -> HttpResponse:
        if request.method != "GET":
            return error("Use GET.", status=405)
        return self._run(
            request,
            lambda r, a, k: self._exchange_status(a, public_id, k),
            url_kwargs,
            allow_spent=True,
        )

    def _get_link_token(self, request: HttpRequest, actor: LinkActor, url_kwargs) -> HttpResponse:
        data = json_body(request, required=False)
        _check_customer_id(actor, data)
        reinstall = _reinstall_target(actor, data)
        try:
            link_token = services.link_token_create(customer=actor.customer, reinstall=reinstall)
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
            message = (
                "This connection can no longer be reconnected; connect your WMS anew."
                if reinstall
                else "Trackstar refused to start a connection."
            )
            return error(message, status=409)
        return JsonResponse({"linkToken": link_token, "link_token": link_token})

    def _store_token(self, request: HttpRequest, actor: LinkActor, url_kwargs) -> HttpResponse:
        data = json_body(request)
        _check_customer_id(actor, data)
        auth_code = required_string(data, "auth_code", max_length=2048)
        integration_name = required_string(data, "integration_name", max_length=64)
        if not integration_is_known(integration_name):
            raise BadRequest(f"Unknown integration '{integration_name}'.")
        if actor.allowed_integrations and integration_name not in actor.allowed_integrations:
            raise BadRequest("This link does not allow that integration.", status=403)
        reinstall = _reinstall_target(actor, data)
        try:
            submitted = services.exchange_submit(
                customer=actor.customer,
                auth_code=auth_code,
                integration_name=integration_name,
                source=actor.source,
                user=actor.user,
                reinstall_connection=reinstall,
                magic_link=actor.magic_link,
            )
        except ValidationError as e:
            return error(e.messages[0], status=409)
        except services.LinkUnavailable as e:
            return error(str(e), status=410)
        return JsonResponse(self._exchange_json(submitted.exchange, url_kwargs), status=202)

    def _exchange_status(self, actor: LinkActor, public_id, url_kwargs) -> HttpResponse:
        try:
            exchange = selectors.exchange_get(customer=actor.customer, public_id=public_id)
        except Http404:
            return error("Not found.", status=404)
        if actor.magic_link is not None and exchange.magic_link_id != actor.magic_link.pk:
            return error("Not found.", status=404)  # a link visitor sees only their own
        return JsonResponse(self._exchange_json(exchange, url_kwargs))

    def _exchange_json(self, exchange: AuthCodeExchange, url_kwargs) -> dict:
        connection = exchange.connection
        return {
            "exchange_id": str(exchange.public_id),
            "status": exchange.status,
            "error": exchange.last_error if exchange.status == exchange.Status.FAILED else "",
            "status_url": self.status_url(exchange, **url_kwargs),
            "connection": None
            if connection is None
            else {
                "id": connection.pk,
                "connection_id": connection.trackstar_connection_id,
                "integration_name": connection.integration_name,
                "status": connection.status,
            },
        }


portal_link = LinkEndpoints(
    resolve_actor=link_actor,
    status_url=lambda exchange: reverse("portal:exchange_status", args=[exchange.public_id]),
)


def link_config(
    request: HttpRequest,
    *,
    customer: Customer,
    allow_list: list[str] | None = None,
    reinstall: Connection | None = None,
    get_link_token_url: str = "",
    store_token_url: str = "",
    headers: dict | None = None,
) -> dict:
    """What static/portal/connect.js needs to drive Trackstar Link on a page. The page's
    response then allows Link's OAuth popups (connections.middleware)."""
    mark_link_page(request)
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
        "sandbox": settings.DEBUG or "trackstarhq.com" not in settings.TRACKSTAR_BASE_URL,
    }


# --- Portal pages -------------------------------------------------------------------------


def _portal_context(request: CustomerRequest) -> dict:
    customer = request.customer
    return {
        "customer": customer,
        "section": "connections",
        "freshness": selectors.freshness_list(customer=customer),
        "connections": selectors.connection_list(customer=customer),
        "integrations": integration_catalog(),
        "other_customers": customer_list_for_user(user=request.user).exclude(pk=customer.pk),
    }


@require_GET
@customer_required
def portal_index(request: CustomerRequest) -> HttpResponse:
    context = _portal_context(request)
    context["link_config"] = link_config(request, customer=request.customer)
    return render(request, "portal/index.html", context)


@require_GET
@customer_required
def portal_connections_table(request: CustomerRequest) -> HttpResponse:
    return render(request, "portal/_connections.html", _portal_context(request))


@require_http_methods(["GET", "POST"])
@customer_required
def connection_disconnect(request: CustomerRequest, pk: int) -> HttpResponse:
    connection = selectors.connection_get(customer=request.customer, pk=pk)
    if connection.status == Connection.Status.DISCONNECTED:
        messages.info(
            request,
            f"{integration_display_name(connection.integration_name)} is already disconnected.",
        )
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
            messages.success(
                request, f"{integration_display_name(connection.integration_name)} is disconnected."
            )
        return redirect("portal:index")
    return render(
        request,
        "portal/disconnect_confirm.html",
        {
            "connection": connection,
            "customer": request.customer,
            "name": integration_display_name(connection.integration_name),
        },
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


@require_GET
def connect_page(request: HttpRequest, token: str) -> HttpResponse:
    """A magic link. The GET records the visit and grants this browser session the right to
    connect for the link's customer; it consumes nothing (mail scanners prefetch links)."""
    if connect_is_throttled(request):
        return render(request, "connect/unavailable.html", {"reason": "throttled"}, status=429)
    link = services.magic_link_find(token=token)
    if link is None:
        connect_record_miss(request)
        return render(request, "connect/unavailable.html", {"reason": "unknown"}, status=404)
    if not link.is_usable or not link.customer.is_active:
        return render(
            request,
            "connect/unavailable.html",
            {
                "reason": link.state,
                "link": link,
                "contact": (link.created_by.email if link.created_by else "")
                or settings.DOCKSIDE_SUPPORT_EMAIL,
            },
            status=410,
        )
    services.magic_link_open(link=link)
    request.session[MAGIC_LINK_SESSION_KEY] = link.pk
    config = link_config(
        request,
        customer=link.customer,
        allow_list=link.allowed_integrations,
        reinstall=link.reinstall_connection,
        headers={"X-Dockside-Actor": "magic-link"},
    )
    return render(
        request,
        "connect/page.html",
        {
            "link": link,
            "customer": link.customer,
            "link_config": config,
            "integrations": integration_catalog(),
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


def _date_param(request: HttpRequest, name: str):
    try:
        return date.fromisoformat(request.GET.get(name, ""))
    except ValueError:
        return None


@require_GET
@customer_required
def portal_inventory(request: CustomerRequest) -> HttpResponse:
    customer = request.customer
    sku = request.GET.get("sku", "").strip()[:100]
    return render(
        request,
        "portal/inventory.html",
        {
            "customer": customer,
            "sku": sku,
            "page": _page(request, selectors.inventory_list(customer=customer, sku=sku)),
            "warehouses": selectors.warehouse_names(customer=customer),
            "integrations": integration_catalog(),
            "query": _pager_query(request),
            "freshness": selectors.freshness_list(customer=customer, resources=["inventory"]),
            "section": "inventory",
        },
    )


@require_GET
@customer_required
def portal_orders(request: CustomerRequest) -> HttpResponse:
    customer = request.customer
    status = request.GET.get("status", "").strip()[:32]
    created_from, created_to = _date_param(request, "from"), _date_param(request, "to")
    orders = selectors.order_list(
        customer=customer, status=status, created_from=created_from, created_to=created_to
    )
    return render(
        request,
        "portal/orders.html",
        {
            "customer": customer,
            "status": status,
            "created_from": created_from,
            "created_to": created_to,
            "statuses": selectors.order_statuses(customer=customer),
            "integrations": integration_catalog(),
            "query": _pager_query(request),
            "page": _page(request, orders),
            "freshness": selectors.freshness_list(customer=customer, resources=["orders"]),
            "section": "orders",
        },
    )
