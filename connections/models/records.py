"""Local copies of a connection's WMS records, one table per resource the portal queries.

Each row keeps the columns people filter and sort on, plus the whole Trackstar object in
`data`, so a field we did not promote to a column is still there (API.md §6). `customer`
is denormalised from the connection so tenant selectors filter without a join.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Upper

from connections.models.connection import Connection
from customers.models import Customer


def parse_datetime(value: Any) -> datetime | None:
    """Trackstar dates are ISO 8601 in UTC with a `Z` (API.md §5); anything else is None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # A date without a zone would be ambiguous; Trackstar documents UTC, so read it so.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _trigram_index(field: str, name: str) -> GinIndex:
    """A pg_trgm index for the portal's case-insensitive contains-search on `field`:
    Django's icontains is UPPER(field) LIKE UPPER('%x%') on PostgreSQL, so the index is on
    UPPER(field). Created on PostgreSQL only (migration 0015)."""
    return GinIndex(OpClass(Upper(field), name="gin_trgm_ops"), name=name)


def _text(value: Any, max_length: int) -> str:
    if value is None:
        return ""
    return str(value)[:max_length]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return None


class StoredJSONField(models.JSONField):
    """The full Trackstar object, stored as PostgreSQL `json` (text, validated) rather than
    `jsonb`: nothing queries inside it (the columns above serve every filter), and parsing
    into jsonb was most of PostgreSQL's CPU per synced record (BENCHMARKS.md)."""

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def from_db_value(self, value, expression, connection):
        # psycopg parses `json` itself (Django only registers a text loader for jsonb).
        if isinstance(value, (dict, list)):
            return value
        return super().from_db_value(value, expression, connection)


class SyncedRecord(models.Model):
    """What every synced record has. Subclasses add columns and `columns_from()`."""

    # No single-column indexes on the two keys: the unique (connection, trackstar_id) and
    # the (customer, ...) indexes below cover them, and every index costs on each upsert.
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    trackstar_id = models.CharField(max_length=255)
    # Trackstar's (the WMS's) dates, not ours.
    created_date = models.DateTimeField(null=True, blank=True)
    updated_date = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField()
    data = StoredJSONField(default=dict)

    # The Trackstar resource this table holds (a key of trackstar.RESOURCES).
    resource: ClassVar[str]

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "trackstar_id"], name="%(class)s_connection_trackstar_id"
            )
        ]

    def __str__(self) -> str:
        return self.trackstar_id

    @staticmethod
    def columns_from(record: Mapping[str, Any]) -> dict[str, Any]:
        """The promoted columns of one Trackstar object (besides the common ones)."""
        return {}


class Warehouse(SyncedRecord):
    resource = "warehouses"
    name = models.CharField(max_length=255, blank=True)
    code = models.CharField(max_length=64, blank=True)

    class Meta(SyncedRecord.Meta):
        indexes = [models.Index(fields=["customer", "name"], name="warehouse_customer_name")]

    @staticmethod
    def columns_from(record: Mapping[str, Any]) -> dict[str, Any]:
        return {"name": _text(record.get("name"), 255), "code": _text(record.get("code"), 64)}


class Product(SyncedRecord):
    resource = "products"
    sku = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(null=True)
    warehouse_customer_id = models.CharField(max_length=255, blank=True)

    class Meta(SyncedRecord.Meta):
        indexes = [
            models.Index(fields=["customer", "sku"], name="product_customer_sku"),
            models.Index(fields=["customer", "-updated_date"], name="product_customer_updated"),
        ]

    @staticmethod
    def columns_from(record: Mapping[str, Any]) -> dict[str, Any]:
        active = record.get("active")
        return {
            "sku": _text(record.get("sku"), 255),
            "name": _text(record.get("name"), 255),
            "active": active if isinstance(active, bool) else None,
            "warehouse_customer_id": _text(record.get("warehouse_customer_id"), 255),
        }


class InventoryItem(SyncedRecord):
    resource = "inventory"
    sku = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(null=True)
    onhand = models.IntegerField(null=True)
    fulfillable = models.IntegerField(null=True)
    committed = models.IntegerField(null=True)
    awaiting = models.IntegerField(null=True)
    unfulfillable = models.IntegerField(null=True)
    warehouse_customer_id = models.CharField(max_length=255, blank=True)

    class Meta(SyncedRecord.Meta):
        indexes = [
            models.Index(fields=["customer", "sku"], name="inventory_customer_sku"),
            models.Index(fields=["customer", "-updated_date"], name="inventory_customer_updated"),
            _trigram_index("sku", "inventory_sku_trgm"),
            _trigram_index("name", "inventory_name_trgm"),
        ]

    @staticmethod
    def columns_from(record: Mapping[str, Any]) -> dict[str, Any]:
        active = record.get("active")
        return {
            "sku": _text(record.get("sku"), 255),
            "name": _text(record.get("name"), 255),
            "active": active if isinstance(active, bool) else None,
            "onhand": _int(record.get("onhand")),
            "fulfillable": _int(record.get("fulfillable")),
            "committed": _int(record.get("committed")),
            "awaiting": _int(record.get("awaiting")),
            "unfulfillable": _int(record.get("unfulfillable")),
            "warehouse_customer_id": _text(record.get("warehouse_customer_id"), 255),
        }


class Order(SyncedRecord):
    resource = "orders"
    order_number = models.CharField(max_length=255, blank=True)
    reference_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=32, blank=True)
    # The WMS's own status, kept next to Trackstar's (useful when status is "other").
    raw_status = models.CharField(max_length=64, blank=True)
    # Trackstar's warehouse id (a string), not a foreign key: the warehouse may sync later.
    warehouse_id = models.CharField(max_length=255, blank=True)
    channel = models.CharField(max_length=128, blank=True)
    type = models.CharField(max_length=32, blank=True)
    required_ship_date = models.DateTimeField(null=True, blank=True)

    class Meta(SyncedRecord.Meta):
        indexes = [
            models.Index(
                fields=["customer", "status", "-updated_date"], name="order_customer_status"
            ),
            models.Index(fields=["customer", "-updated_date"], name="order_customer_updated"),
            # The portal lists orders newest first, optionally within a created range.
            models.Index(fields=["customer", "-created_date"], name="order_customer_created"),
            models.Index(fields=["customer", "order_number"], name="order_customer_number"),
            _trigram_index("order_number", "order_number_trgm"),
            _trigram_index("reference_id", "order_reference_trgm"),
        ]

    @staticmethod
    def columns_from(record: Mapping[str, Any]) -> dict[str, Any]:
        channel = record.get("channel_object") or {}
        return {
            "order_number": _text(record.get("order_number"), 255),
            "reference_id": _text(record.get("reference_id"), 255),
            "status": _text(record.get("status"), 32),
            "raw_status": _text(record.get("raw_status"), 64),
            "warehouse_id": _text(record.get("warehouse_id"), 255),
            "channel": _text(
                channel.get("channel_name") or channel.get("channel_id")
                if isinstance(channel, dict)
                else None,
                128,
            ),
            "type": _text(record.get("type"), 32),
            "required_ship_date": parse_datetime(record.get("required_ship_date")),
        }


class InboundShipment(SyncedRecord):
    resource = "inbound_shipments"
    purchase_order_number = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=32, blank=True)
    # The WMS's own status, kept next to Trackstar's (useful when status is "other").
    raw_status = models.CharField(max_length=64, blank=True)
    warehouse_id = models.CharField(max_length=255, blank=True)
    supplier = models.CharField(max_length=255, blank=True)
    expected_arrival_date = models.DateTimeField(null=True, blank=True)

    class Meta(SyncedRecord.Meta):
        indexes = [
            models.Index(
                fields=["customer", "status", "-updated_date"], name="asn_customer_status"
            ),
            models.Index(fields=["customer", "expected_arrival_date"], name="asn_customer_arrival"),
        ]

    @staticmethod
    def columns_from(record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "purchase_order_number": _text(record.get("purchase_order_number"), 255),
            "status": _text(record.get("status"), 32),
            "raw_status": _text(record.get("raw_status"), 64),
            "warehouse_id": _text(record.get("warehouse_id"), 255),
            "supplier": _text(record.get("supplier"), 255),
            "expected_arrival_date": parse_datetime(record.get("expected_arrival_date")),
        }


class Return(SyncedRecord):
    resource = "returns"
    status = models.CharField(max_length=32, blank=True)
    # The WMS's own status, kept next to Trackstar's (useful when status is "other").
    raw_status = models.CharField(max_length=64, blank=True)
    order_id = models.CharField("Trackstar order id", max_length=255, blank=True)
    warehouse_id = models.CharField(max_length=255, blank=True)

    class Meta(SyncedRecord.Meta):
        indexes = [
            models.Index(
                fields=["customer", "status", "-updated_date"], name="return_customer_status"
            ),
        ]

    @staticmethod
    def columns_from(record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "status": _text(record.get("status"), 32),
            "raw_status": _text(record.get("raw_status"), 64),
            "order_id": _text(record.get("order_id"), 255),
            "warehouse_id": _text(record.get("warehouse_id"), 255),
        }


class ShippingMethod(SyncedRecord):
    resource = "shipping_methods"
    name = models.CharField(max_length=255, blank=True)
    carrier_name = models.CharField(max_length=255, blank=True)
    scac = models.CharField(max_length=16, blank=True)

    class Meta(SyncedRecord.Meta):
        indexes = [models.Index(fields=["customer", "name"], name="shipmethod_customer_name")]

    @staticmethod
    def columns_from(record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": _text(record.get("name"), 255),
            "carrier_name": _text(record.get("carrier_name"), 255),
            "scac": _text(record.get("scac"), 16),
        }


# Trackstar resource -> its table. Resources not here (bills, warehouse customers) are not
# synced: nobody queries them yet.
RECORD_MODELS: dict[str, type[SyncedRecord]] = {
    model.resource: model
    for model in (Warehouse, Product, InventoryItem, Order, InboundShipment, Return, ShippingMethod)
}
