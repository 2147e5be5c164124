"""Reads. Every selector takes the customer and filters by it (DESIGN.md §9): another
customer's row is simply not found, so views answer 404, never 403."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Max, Min, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from customers.models import Customer

from .models import AuthCodeExchange, Connection, InventoryItem, Order, ResourceSync, Warehouse
from .models.sync import resource_label


def connection_list(*, customer: Customer) -> QuerySet[Connection]:
    return (
        Connection.objects.filter(customer=customer)
        .annotate(last_synced_at=Max("resource_syncs__last_success_at"))
        # Each connection's per-resource health, in one more query whatever their number.
        .prefetch_related(
            Prefetch(
                "resource_syncs",
                queryset=ResourceSync.objects.filter(enabled=True).order_by("resource"),
            )
        )
        .order_by("-created_at")
    )


def connection_get(*, customer: Customer, pk: int) -> Connection:
    return get_object_or_404(Connection, customer=customer, pk=pk)


def exchange_get(*, customer: Customer, public_id: str) -> AuthCodeExchange:
    return get_object_or_404(
        AuthCodeExchange.objects.select_related("connection"),
        customer=customer,
        public_id=public_id,
    )


def exchanges_stale_dangerously(*, older_than_seconds: int) -> QuerySet[AuthCodeExchange]:
    """Pending exchanges of every customer, for the sweep that re-enqueues them."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return AuthCodeExchange.objects.filter(
        status=AuthCodeExchange.Status.PENDING, updated_at__lt=cutoff
    )


# --- Synced data ------------------------------------------------------------------------------


def inventory_list(*, customer: Customer, sku: str = "") -> QuerySet[InventoryItem]:
    items = InventoryItem.objects.filter(customer=customer)
    if sku:
        # SKUs are searched from the start, whatever the case. (On PostgreSQL this is
        # UPPER(sku) LIKE 'X%': an expression index would serve it if tables grow large.)
        items = items.filter(sku__istartswith=sku)
    return items.select_related("connection").order_by("sku", "pk")


def order_list(
    *,
    customer: Customer,
    status: str = "",
    created_from: date | None = None,
    created_to: date | None = None,
) -> QuerySet[Order]:
    orders = Order.objects.filter(customer=customer)
    if status:
        orders = orders.filter(status=status)
    # Ranges on the column itself (not on a function of it), so the index serves them.
    if created_from:
        orders = orders.filter(created_date__gte=_day_start(created_from))
    if created_to:
        orders = orders.filter(created_date__lt=_day_start(created_to + timedelta(days=1)))
    return orders.select_related("connection").order_by("-created_date", "-pk")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def order_statuses(*, customer: Customer) -> list[str]:
    return list(
        Order.objects.filter(customer=customer)
        .order_by("status")
        .values_list("status", flat=True)
        .distinct()
    )


def warehouse_names(*, customer: Customer) -> dict[str, str]:
    return {
        trackstar_id: name or trackstar_id
        for trackstar_id, name in Warehouse.objects.filter(customer=customer).values_list(
            "trackstar_id", "name"
        )
    }


@dataclass(frozen=True)
class Freshness:
    resource: str
    last_success_at: datetime | None
    interval_seconds: int

    @property
    def label(self) -> str:
        return resource_label(self.resource)

    @property
    def stale(self) -> bool:
        if self.last_success_at is None:
            return True
        return timezone.now() - self.last_success_at > timedelta(seconds=2 * self.interval_seconds)


def freshness_list(*, customer: Customer, resources: list[str] | None = None) -> list[Freshness]:
    """Per resource, how fresh the customer's data is: the oldest last success among their
    live connections (one stale WMS makes the resource stale)."""
    syncs = ResourceSync.objects.filter(
        Q(connection__customer=customer),
        ~Q(connection__status=Connection.Status.DISCONNECTED),
        unsupported=False,
        enabled=True,
    )
    if resources is not None:
        syncs = syncs.filter(resource__in=resources)
    rows = (
        syncs.values("resource")
        .annotate(
            oldest=Min("last_success_at"),
            interval=Max("interval_seconds"),
            never=Min("connection_id", filter=Q(last_success_at__isnull=True)),
        )
        .order_by("resource")
    )
    return [
        Freshness(row["resource"], None if row["never"] else row["oldest"], row["interval"])
        for row in rows
    ]
