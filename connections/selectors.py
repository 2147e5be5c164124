"""Reads. Every selector takes the customer and filters by it (DESIGN.md §9): another
customer's row is simply not found, so views answer 404, never 403."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Max, Prefetch, QuerySet
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


def connection_list_live(*, customer: Customer) -> QuerySet[Connection]:
    """The customer's connections that still exist at Trackstar (can be reconnected)."""
    return (
        Connection.objects.filter(customer=customer)
        .exclude(status=Connection.Status.DISCONNECTED)
        .order_by("created_at", "pk")
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


def exchanges_owing_deletes_dangerously(*, older_than_seconds: int) -> QuerySet[AuthCodeExchange]:
    """Refused exchanges of every customer whose connection at Trackstar is still to be
    deleted, untouched for a while (the task retrying it died, or the broker was down)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return AuthCodeExchange.objects.filter(
        refused_delete=AuthCodeExchange.RefusedDelete.OWED, updated_at__lt=cutoff
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
    if created_to and created_to < date.max:  # 9999-12-31 has no next day: no upper bound
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
    # Why this data is not being kept up to date whatever its age ("" when it is): a broken,
    # disconnected or paused connection's data is stale the moment it stops syncing.
    halted: str = ""

    @property
    def label(self) -> str:
        return resource_label(self.resource)

    @property
    def stale(self) -> bool:
        if self.halted or self.last_success_at is None:
            return True
        return timezone.now() - self.last_success_at > timedelta(seconds=2 * self.interval_seconds)


# Words for the portal: why a connection's data stopped being updated.
HALTED_WORDS: dict[str, str] = {
    Connection.Status.NEEDS_RECONNECT: "needs reconnect, not updating",
    Connection.Status.ERROR: "not syncing",
    Connection.Status.DISCONNECTED: "disconnected, no longer updated",
}
PAUSED_WORDS = "syncing paused"


@dataclass(frozen=True)
class ConnectionFreshness:
    """One connection's line in the portal: how fresh each of its resources is."""

    connection: Connection
    items: list[Freshness]
    halted: str = ""

    @property
    def stale(self) -> bool:
        return any(item.stale for item in self.items)


def _halted(connection: Connection) -> str:
    if connection.status in HALTED_WORDS:
        return HALTED_WORDS[connection.status]
    return PAUSED_WORDS if connection.sync_paused else ""


def freshness_list(
    *, customer: Customer, resources: list[str] | None = None
) -> list[ConnectionFreshness]:
    """Per connection and resource, how fresh the customer's data is, in one query. A
    disconnected connection is listed while data it synced is still shown."""
    syncs = ResourceSync.objects.filter(
        connection__customer=customer, unsupported=False, enabled=True
    )
    if resources is not None:
        syncs = syncs.filter(resource__in=resources)
    syncs = syncs.select_related("connection").order_by("connection__created_at", "resource")
    lines: dict[int, ConnectionFreshness] = {}
    for sync in syncs:
        connection = sync.connection
        if connection.status == Connection.Status.DISCONNECTED and sync.last_success_at is None:
            continue
        line = lines.get(connection.pk)
        if line is None:
            line = lines[connection.pk] = ConnectionFreshness(
                connection=connection, items=[], halted=_halted(connection)
            )
        halted = line.halted or (PAUSED_WORDS if sync.paused else "")
        line.items.append(
            Freshness(sync.resource, sync.last_success_at, sync.interval_seconds, halted)
        )
    return list(lines.values())
