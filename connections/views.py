"""The customer portal and the JSON endpoints behind the embedded Trackstar Link."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from customers.models import Customer
from customers.selectors import customer_list_for_user
from customers.tenancy import customer_choose, customer_required, request_customer

from . import selectors, services
from .api import BadRequest, error, json_body, string_field
from .integrations import integration_catalog, integration_is_known
from .models import AuthCodeExchange, Connection
from .trackstar import TrackstarError

logger = logging.getLogger(__name__)


# --- Who is connecting ----------------------------------------------------------------------


@dataclass
class LinkActor:
    """Whom a Link request acts for, taken from the session only."""

    customer: Customer
    source: str
    user: AbstractBaseUser | None = None
    allowed_integrations: list[str] = field(default_factory=list)  # empty: all of them


def link_actor(request: HttpRequest) -> LinkActor | None:
    customer = request_customer(request)
    if customer is None:
        return None
    return LinkActor(customer=customer, source=Connection.Source.PORTAL, user=request.user)


def _check_customer_id(actor: LinkActor, data: dict) -> None:
    # The seed's frontend sends customer_id. The session decides; a different one is refused.
    sent = data.get("customer_id")
    if sent not in (None, "") and str(sent) != actor.customer.public_id:
        raise BadRequest("You cannot connect a WMS for another customer.", status=403)


def _reinstall_target(actor: LinkActor, data: dict) -> Connection | None:
    raw = data.get("connection_id")
    if raw in (None, ""):
        return None
    if not isinstance(raw, (int, str)) or not str(raw).isdigit():
        raise BadRequest("'connection_id' must be a connection id.")
    try:
        return selectors.connection_get(customer=actor.customer, pk=int(raw))
    except Http404 as e:
        raise BadRequest("Connection not found.", status=404) from e


def _json_endpoint(view):
    """Resolve the actor and turn BadRequest into a JSON error; never a 500 for bad input."""

    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        actor = link_actor(request)
        if actor is None:
            return error("Log in, or open your connect link again.", status=403)
        try:
            return view(request, actor, *args, **kwargs)
        except BadRequest as e:
            return error(e.message, status=e.status)

    wrapper.__name__ = view.__name__
    return wrapper


@require_POST
@_json_endpoint
def get_link_token(request: HttpRequest, actor: LinkActor) -> HttpResponse:
    data = json_body(request, required=False)
    _check_customer_id(actor, data)
    reinstall = _reinstall_target(actor, data)
    try:
        link_token = services.link_token_create(customer=actor.customer, reinstall=reinstall)
    except TrackstarError as e:
        logger.warning("Link token failed: %s", e, extra={"customer_id": actor.customer.public_id})
        return error("Trackstar is not reachable right now. Please try again in a minute.",
                     status=502)
    return JsonResponse({"linkToken": link_token, "link_token": link_token})


def _exchange_json(exchange: AuthCodeExchange) -> dict:
    connection = exchange.connection
    return {
        "exchange_id": str(exchange.public_id),
        "status": exchange.status,
        "error": exchange.last_error if exchange.status == exchange.Status.FAILED else "",
        "status_url": reverse("portal:exchange_status", args=[exchange.public_id]),
        "connection": None if connection is None else {
            "id": connection.pk,
            "connection_id": connection.trackstar_connection_id,
            "integration_name": connection.integration_name,
            "status": connection.status,
        },
    }


@require_POST
@_json_endpoint
def store_token(request: HttpRequest, actor: LinkActor) -> HttpResponse:
    data = json_body(request)
    _check_customer_id(actor, data)
    auth_code = string_field(data, "auth_code", max_length=2048)
    integration_name = string_field(data, "integration_name", max_length=64)
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
        )
    except ValidationError as e:
        return error(e.messages[0], status=409)
    return JsonResponse(_exchange_json(submitted.exchange), status=202)


@require_GET
@_json_endpoint
def exchange_status(request: HttpRequest, actor: LinkActor, public_id) -> HttpResponse:
    try:
        exchange = selectors.exchange_get(customer=actor.customer, public_id=public_id)
    except Http404:
        return error("Not found.", status=404)
    return JsonResponse(_exchange_json(exchange))


def link_config(request: HttpRequest, *, allow_list: list[str] | None = None,
                reinstall: Connection | None = None, urls_namespace: str = "portal") -> dict:
    """What static/portal/connect.js needs to drive Trackstar Link on a page."""
    return {
        "scriptUrl": settings.TRACKSTAR_LINK_SCRIPT_URL,
        "getLinkTokenUrl": reverse(f"{urls_namespace}:get_link_token"),
        "storeTokenUrl": reverse(f"{urls_namespace}:store_token"),
        "csrfToken": get_token(request),
        "integrationAllowList": allow_list or [],
        "reinstallConnectionId": reinstall.pk if reinstall else None,
        # Offer Trackstar's "Sandbox" integration outside production (DEBUG or a sandbox URL).
        "sandbox": settings.DEBUG or "trackstarhq.com" not in settings.TRACKSTAR_BASE_URL,
    }


# --- Portal pages -------------------------------------------------------------------------


def _portal_context(request: HttpRequest) -> dict:
    customer = request.customer
    return {
        "customer": customer,
        "connections": selectors.connection_list(customer=customer),
        "integrations": integration_catalog(),
        "other_customers": customer_list_for_user(user=request.user).exclude(pk=customer.pk),
    }


@require_GET
@customer_required
def portal_index(request: HttpRequest) -> HttpResponse:
    context = _portal_context(request)
    context["link_config"] = link_config(request)
    return render(request, "portal/index.html", context)


@require_GET
@customer_required
def portal_connections_table(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/_connections.html", _portal_context(request))


@require_http_methods(["GET", "POST"])
@customer_required
def connection_disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    connection = selectors.connection_get(customer=request.customer, pk=pk)
    if request.method == "POST":
        try:
            services.connection_disconnect(connection=connection)
        except TrackstarError:
            messages.error(request, "Trackstar is not reachable right now; nothing was "
                                    "changed. Please try again in a minute.")
        else:
            messages.success(request, f"{connection.integration_name} is disconnected.")
        return redirect("portal:index")
    return render(request, "portal/disconnect_confirm.html",
                  {"connection": connection, "customer": request.customer})


@require_http_methods(["GET", "POST"])
def choose_customer(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect(settings.LOGIN_URL)
    customers = customer_list_for_user(user=request.user)
    if request.method == "POST":
        chosen = customers.filter(pk=request.POST.get("customer", "")).first() \
            if str(request.POST.get("customer", "")).isdigit() else None
        if chosen is None:
            raise Http404("No such customer.")
        customer_choose(request, customer=chosen)
        return redirect("portal:index")
    return render(request, "portal/choose_customer.html", {"customers": customers})
