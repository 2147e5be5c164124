"""The portal dashboard: the customer's connections, their live status, rename and disconnect, and picking a customer."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods

from connections import selectors, services
from connections.forms import ConnectionRenameForm
from connections.integrations import (
    connection_label,
    integration_catalog,
)
from connections.json_requests import error, is_id
from connections.link.endpoints import LinkEndpoints, link_actor, link_config
from connections.models import Connection
from connections.selectors import status as status_selectors
from connections.trackstar import TrackstarError
from customers.permissions import PortalAction, membership_permissions
from customers.selectors import customer_list_for_user
from customers.tenancy import (
    CustomerRequest,
    customer_choose,
    customer_required,
    request_customer,
)

logger = logging.getLogger(__name__)


portal_link = LinkEndpoints(
    resolve_actor=link_actor,
    status_url=lambda exchange: reverse("portal:exchange_status", args=[exchange.public_id]),
)


# --- Portal pages -------------------------------------------------------------------------


def _portal_context(request: CustomerRequest) -> dict:
    customer = request.customer
    # can_connect, can_reconnect, can_disconnect, can_rename: the page shows only what the
    # user's role may do (the views refuse the rest).
    permissions = membership_permissions(user=request.user, customer=customer)
    integrations = integration_catalog()
    dashboard = status_selectors.connection_status_list(
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
    dashboard = status_selectors.connection_status_list(
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


def _status_json(status: status_selectors.ConnectionStatus) -> dict:
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
    services.connection_portal_check(
        connection=connection, user=request.user, action=PortalAction.DISCONNECT
    )
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
    services.connection_portal_check(
        connection=connection, user=request.user, action=PortalAction.RENAME
    )
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
        chosen = customers.filter(pk=raw).first() if is_id(raw) else None
        if chosen is None:
            raise Http404("No such customer.")
        customer_choose(request, customer=chosen)
        return redirect("portal:index")
    return render(request, "portal/choose_customer.html", {"customers": customers})
