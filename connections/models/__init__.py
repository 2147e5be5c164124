from connections.models.connection import Connection
from connections.models.exchange import AuthCodeExchange, LinkTokenGrant
from connections.models.magic_link import MagicLink
from connections.models.records import (
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
from connections.models.sync import Backfill, ResourceSync, SyncRun, TrackstarAccount
from connections.models.unassigned import UnassignedConnection
from connections.models.webhook import WebhookEvent

__all__ = [
    "RECORD_MODELS",
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
