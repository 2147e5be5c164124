"""Reads of the synced WMS records for the portal's data pages, always by customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from connections.models import (
    Connection,
    InventoryItem,
    Order,
    Product,
    Warehouse,
)
from connections.models.records import parse_datetime
from customers.models import Customer

# --- Synced data ------------------------------------------------------------------------------


# Trackstar's order statuses (API.md, Orders): `other` means "see raw_status".
ORDER_STATUSES = (
    "open",
    "confirmed",
    "processing",
    "picked",
    "packed",
    "partially_fulfilled",
    "fulfilled",
    "backordered",
    "exception",
    "cancelled",
    "other",
)


def record_connection_list(*, customer: Customer) -> list[Connection]:
    """The connections whose records the data pages filter by (disconnected ones too:
    their synced data is still shown)."""
    return list(Connection.objects.filter(customer=customer).order_by("created_at", "pk"))


def inventory_list(
    *, customer: Customer, search: str = "", connection: Connection | None = None
) -> QuerySet[InventoryItem]:
    items = InventoryItem.objects.filter(customer=customer)
    if connection is not None:
        items = items.filter(connection=connection)
    if search:
        # UPPER(col) LIKE UPPER('%x%') on PostgreSQL: the pg_trgm indexes on UPPER(sku) and
        # UPPER(name) serve it (migration 0015).
        items = items.filter(Q(sku__icontains=search) | Q(name__icontains=search))
    return items.select_related("connection").order_by("sku", "pk")


def order_list(
    *,
    customer: Customer,
    search: str = "",
    connection: Connection | None = None,
    status: str = "",
    created_from: date | None = None,
    created_to: date | None = None,
) -> QuerySet[Order]:
    """Days are the customer's (Customer.timezone), as the portal shows them."""
    orders = Order.objects.filter(customer=customer)
    if connection is not None:
        orders = orders.filter(connection=connection)
    if search:
        orders = orders.filter(
            Q(order_number__icontains=search) | Q(reference_id__icontains=search)
        )
    if status:
        orders = orders.filter(status=status)
    # Ranges on the column itself (not on a function of it), so the index serves them.
    if created_from and (start := _day_start(created_from, customer.tzinfo)):
        orders = orders.filter(created_date__gte=start)
    if created_to and created_to < date.max:  # 9999-12-31 has no next day: no upper bound
        if end := _day_start(created_to + timedelta(days=1), customer.tzinfo):
            orders = orders.filter(created_date__lt=end)
    return orders.select_related("connection").order_by("-created_date", "-pk")


def _day_start(day: date, tz: tzinfo) -> datetime | None:
    """Midnight of the day in the zone, in UTC; None past what a datetime holds."""
    try:
        return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
    except OverflowError:
        return None


@dataclass(frozen=True)
class OrderLine:
    sku: str
    name: str  # the product's name, "" when no synced product or inventory item has it
    quantity: int | None
    unit_price: Decimal | None
    discount: Decimal | None

    @property
    def total(self) -> Decimal | None:
        if self.quantity is None or self.unit_price is None:
            return None
        return self.quantity * self.unit_price - (self.discount or 0)


@dataclass(frozen=True)
class OrderPackage:
    tracking_number: str
    tracking_url: str  # http(s) only, else ""
    carrier: str


@dataclass(frozen=True)
class OrderShipment:
    status: str
    shipped_date: datetime | None
    packages: list[OrderPackage]


@dataclass(frozen=True)
class OrderDetail:
    order: Order
    lines: list[OrderLine]
    shipments: list[OrderShipment]
    currency: str  # ISO 4217 code, "" when Trackstar gave none

    @property
    def has_discounts(self) -> bool:
        return any(line.discount for line in self.lines)

    @property
    def totals(self) -> list[tuple[str, Decimal]]:
        """The order's money fields as the WMS reports them (which it includes in its total
        varies by WMS, so they are shown side by side, not summed)."""
        data = self.order.data if isinstance(self.order.data, dict) else {}
        labels = {
            "total_price": "Total price",
            "total_shipping": "Shipping",
            "total_tax": "Tax",
            "total_discount": "Discount",
        }
        amounts = [(key, label, _decimal(data.get(key))) for key, label in labels.items()]
        # A zero discount or shipping says nothing; a zero total does.
        return [
            (label, amount)
            for key, label, amount in amounts
            if amount is not None and (amount or key == "total_price")
        ]


def order_get(*, customer: Customer, pk: int) -> OrderDetail:
    """One order with its line items named after the products: three queries (the order,
    its products, and inventory items only for SKUs no product named) whatever its size."""
    order = get_object_or_404(Order.objects.select_related("connection"), customer=customer, pk=pk)
    data = order.data if isinstance(order.data, dict) else {}
    raw_lines = [line for line in _list(data.get("line_items")) if isinstance(line, dict)]
    names = _product_names(customer=customer, connection_id=order.connection_id, lines=raw_lines)
    lines = []
    for line in raw_lines:
        sku, product_id = _str(line.get("sku")), _str(line.get("product_id"))
        quantity = line.get("quantity")
        lines.append(
            OrderLine(
                sku=sku,
                name=names.get(("id", product_id)) or names.get(("sku", sku)) or "",
                quantity=quantity if type(quantity) is int else None,
                unit_price=_decimal(line.get("unit_price")),
                discount=_decimal(line.get("discount_amount")),
            )
        )
    currency = _str(data.get("invoice_currency_code")).upper()
    return OrderDetail(
        order=order,
        lines=lines,
        shipments=[_shipment(s) for s in _list(data.get("shipments")) if isinstance(s, dict)],
        currency=currency if len(currency) == 3 and currency.isalpha() else "",
    )


def _product_names(
    *, customer: Customer, connection_id: int, lines: list[dict]
) -> dict[tuple[str, str], str]:
    """("id", product id) and ("sku", sku) -> name, from the connection's products, then
    its inventory items for SKUs still unnamed."""
    product_ids = {_str(line.get("product_id")) for line in lines} - {""}
    skus = {_str(line.get("sku")) for line in lines} - {""}
    if not (product_ids or skus):
        return {}
    names: dict[tuple[str, str], str] = {}
    products = Product.objects.filter(customer=customer, connection_id=connection_id).filter(
        Q(trackstar_id__in=product_ids) | Q(sku__in=skus)
    )
    for trackstar_id, sku, name in products.values_list("trackstar_id", "sku", "name"):
        if name:
            names[("id", trackstar_id)] = name
            names.setdefault(("sku", sku), name)
    unnamed = {
        _str(line.get("sku"))
        for line in lines
        if ("id", _str(line.get("product_id"))) not in names
        and ("sku", _str(line.get("sku"))) not in names
    } - {""}
    if unnamed:
        items = InventoryItem.objects.filter(
            customer=customer, connection_id=connection_id, sku__in=unnamed
        ).exclude(name="")
        for sku, name in items.values_list("sku", "name"):
            names.setdefault(("sku", sku), name)
    return names


def _shipment(shipment: dict) -> OrderShipment:
    packages = []
    for package in _list(shipment.get("packages")):
        if not isinstance(package, dict):
            continue
        url = _str(package.get("tracking_url"))
        packages.append(
            OrderPackage(
                tracking_number=_str(package.get("tracking_number")),
                # A link from the WMS goes on our page: never a javascript: or data: URL.
                tracking_url=url if url.lower().startswith(("https://", "http://")) else "",
                carrier=_str(package.get("carrier_name") or package.get("carrier")),
            )
        )
    return OrderShipment(
        status=_str(shipment.get("status")),
        shipped_date=parse_datetime(shipment.get("shipped_date")),
        packages=packages,
    )


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def warehouse_names(*, customer: Customer) -> dict[str, str]:
    return {
        trackstar_id: name or trackstar_id
        for trackstar_id, name in Warehouse.objects.filter(customer=customer).values_list(
            "trackstar_id", "name"
        )
    }
