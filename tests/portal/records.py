"""Trackstar-shaped inventory items and orders for the portal's data-page tests."""

from typing import Any


def item(n: int, *, sku: str | None = None, name: str | None = None, **fields) -> dict:
    return {
        "id": f"inv_{sku or n}",
        "sku": sku if sku is not None else f"SKU-{n:05d}",
        "name": name if name is not None else f"Item {n}",
        "onhand": 10,
        "fulfillable": 8,
        "committed": 2,
        "created_date": "2026-10-01T00:00:00Z",
        "updated_date": "2026-11-01T00:00:00Z",
        **fields,
    }


def order(n: int, **fields: Any) -> dict:
    return {
        "id": f"ord_{n}",
        "order_number": f"#{n:05d}",
        "reference_id": f"REF-{n:05d}",
        "status": "open",
        "created_date": "2026-11-01T12:00:00Z",
        "updated_date": "2026-11-01T12:00:00Z",
        "invoice_currency_code": "USD",
        "ship_to_address": {"full_name": "Ada Lovelace", "city": "London"},
        "line_items": [
            {"product_id": "prod_1", "sku": "TENT-2P", "quantity": 2, "unit_price": 9.5}
        ],
        **fields,
    }
