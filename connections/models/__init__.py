from .audit import AuditEntry
from .connection import Connection
from .exchange import AuthCodeExchange, LinkTokenGrant
from .magic_link import MagicLink
from .records import (
    RECORD_MODELS,
    InboundShipment,
    InventoryItem,
    Order,
    Product,
    Return,
    ShippingMethod,
    SyncedRecord,
    Warehouse,
)
from .sync import Backfill, ResourceSync, SyncRun, TrackstarAccount
from .unassigned import UnassignedConnection
from .webhook import WebhookEvent

__all__ = [
    "RECORD_MODELS",
    "AuditEntry",
    "AuthCodeExchange",
    "Backfill",
    "Connection",
    "InboundShipment",
    "InventoryItem",
    "LinkTokenGrant",
    "MagicLink",
    "Order",
    "Product",
    "ResourceSync",
    "Return",
    "ShippingMethod",
    "SyncRun",
    "SyncedRecord",
    "TrackstarAccount",
    "UnassignedConnection",
    "Warehouse",
    "WebhookEvent",
]
