"""Synced data in the portal: inventory, orders, an order."""

from __future__ import annotations

import logging

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from connections.integrations import integration_catalog
from connections.selectors import records as record_selectors
from connections.selectors import status as status_selectors
from customers.tenancy import (
    CustomerRequest,
    customer_required,
)
from portal.filters import InventoryFilterForm, OrderFilterForm

logger = logging.getLogger(__name__)


# --- Synced data in the portal ----------------------------------------------------------------

ROWS_PER_PAGE = 50


def _page(request: HttpRequest, queryset):
    # Two queries whatever the data size: a COUNT and one page.
    return Paginator(queryset, ROWS_PER_PAGE).get_page(request.GET.get("page"))


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
    connections = record_selectors.record_connection_list(customer=customer)
    filters = InventoryFilterForm(request.GET, connections=connections)
    items = record_selectors.inventory_list(
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
            "warehouses": record_selectors.warehouse_names(customer=customer),
            "query": _pager_query(request),
            "freshness": status_selectors.freshness_list(
                customer=customer, resources=["inventory"]
            ),
            "section": "inventory",
        },
    )


@require_GET
@customer_required
def portal_orders(request: CustomerRequest) -> HttpResponse:
    customer = request.customer
    connections = record_selectors.record_connection_list(customer=customer)
    filters = OrderFilterForm(request.GET, connections=connections)
    orders = record_selectors.order_list(
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
            "statuses": record_selectors.ORDER_STATUSES,
            "query": _pager_query(request),
            "page": _page(request, orders),
            "freshness": status_selectors.freshness_list(customer=customer, resources=["orders"]),
            "section": "orders",
        },
    )


@require_GET
@customer_required
def portal_order_detail(request: CustomerRequest, pk: int) -> HttpResponse:
    # Another customer's order is not found (404), as one that does not exist.
    detail = record_selectors.order_get(customer=request.customer, pk=pk)
    return _data_page(
        request,
        "portal/order_detail.html",
        {"detail": detail, "order": detail.order, "section": "orders"},
    )
