"""The WMS catalogue the sandbox offers, with the credential fields its Link form asks for.

Trackstar exposes no per-WMS credential fields (API.md §4), so these are plausible stand-ins.
"""

from dataclasses import dataclass

# (resource path, read action, webhook event prefix) for every WMS resource the sandbox serves.
RESOURCES = {
    "warehouses": ("get_warehouses", "warehouse"),
    "locations": ("get_warehouse_locations", "warehouse-location"),
    "warehouse-customers": ("get_warehouse_customers", "warehouse-customer"),
    "inventory": ("get_inventory", "inventory"),
    "products": ("get_products", "product"),
    "orders": ("get_orders", "order"),
    "inbound-shipments": ("get_inbound_shipments", "inbound-shipment"),
    "returns": ("get_returns", "return"),
    "shipping-methods": ("get_shipping_methods", "shipping-method"),
    "billing": ("get_bills", "bill"),
}

# How a resource is named in a missing-permission message ("... do not have access to <words>").
RESOURCE_WORDS = {
    "warehouses": "warehouses",
    "locations": "warehouse locations",
    "warehouse-customers": "warehouse customers",
    "inventory": "inventory",
    "products": "products",
    "orders": "orders",
    "inbound-shipments": "inbound shipments",
    "returns": "returns",
    "shipping-methods": "shipping methods",
    "billing": "bills",
}

LIST_URLS = {
    "warehouses": "GET /wms/warehouses",
    "locations": "GET /wms/warehouses/{warehouse_id}/locations",
    "warehouse-customers": "GET /wms/warehouse-customers",
    "inventory": "GET /wms/inventory",
    "products": "GET /wms/products",
    "orders": "GET /wms/orders",
    "inbound-shipments": "GET /wms/inbound-shipments",
    "returns": "GET /wms/returns",
    "shipping-methods": "GET /wms/shipping-methods",
    "billing": "GET /wms/billing",
}


@dataclass(frozen=True)
class CredentialField:
    name: str
    label: str
    secret: bool = False
    required: bool = True


@dataclass(frozen=True)
class Integration:
    name: str
    display_name: str
    description: str
    color: str
    fields: tuple[CredentialField, ...]
    missing: frozenset[str] = frozenset()  # resources this WMS cannot serve (→ 501)
    rejection: str = "rejected these credentials"
    # Functions POST /connections/on-demand-syncs accepts for this WMS (never get_inventory;
    # DOC:on-demand-syncs.mdx). Anything else is 400 "On-demand sync is not enabled for ...".
    on_demand: frozenset[str] = frozenset()

    @property
    def resources(self) -> list[str]:
        return [r for r in RESOURCES if r not in self.missing]

    @property
    def available_actions(self) -> list[str]:
        return [RESOURCES[r][0] for r in self.resources]

    @property
    def available_endpoints(self) -> list[str]:
        return [LIST_URLS[r] for r in self.resources]


_API_KEY = CredentialField("api_key", "API key", secret=True)
_USERNAME = CredentialField("username", "Username")
_PASSWORD = CredentialField("password", "Password", secret=True)

INTEGRATIONS: dict[str, Integration] = {
    i.name: i
    for i in [
        Integration(
            "sandbox",
            "Sandbox",
            "Trackstar's test WMS with generated data.",
            "#6b7280",
            (),
            on_demand=frozenset(
                {"get_orders", "get_inbound_shipments", "get_returns", "get_bills"}
            ),
        ),
        Integration(
            "shipbob",
            "ShipBob",
            "ShipBob fulfillment network.",
            "#1e6fd9",
            (_API_KEY,),
            rejection="rejected these credentials: invalid API key",
            on_demand=frozenset({"get_orders"}),
        ),
        Integration(
            "shiphero",
            "ShipHero",
            "ShipHero WMS.",
            "#0b8f5a",
            (_USERNAME, _PASSWORD),
            rejection="rejected these credentials: wrong username or password",
            on_demand=frozenset({"get_orders", "get_inbound_shipments", "get_products"}),
        ),
        Integration(
            "extensiv-3pl-central",
            "Extensiv 3PL Central",
            "Extensiv 3PL Warehouse Manager (formerly 3PL Central).",
            "#f28c28",
            (
                CredentialField("client_id", "Client ID"),
                CredentialField("client_secret", "Client secret", secret=True),
                CredentialField("tpl_guid", "3PL GUID"),
                CredentialField("user_login_id", "User login ID", required=False),
            ),
            rejection="rejected these credentials: invalid client secret",
            on_demand=frozenset(
                {"get_orders", "get_inbound_shipments", "get_returns", "get_products"}
            ),
        ),
        Integration(
            "deposco",
            "Deposco",
            "Deposco Bright Warehouse.",
            "#7a3cc2",
            (CredentialField("company_code", "Company code"), _USERNAME, _PASSWORD),
            missing=frozenset({"billing"}),
            rejection="rejected these credentials: authentication failed",
            on_demand=frozenset({"get_bills"}),
        ),
        Integration(
            "infoplus",
            "Infoplus",
            "Infoplus WMS.",
            "#d6336c",
            (CredentialField("domain", "Infoplus domain"), _API_KEY),
            missing=frozenset({"returns"}),
            rejection="rejected these credentials: invalid API key",
            on_demand=frozenset(
                {
                    "get_orders",
                    "get_inbound_shipments",
                    "get_returns",
                    "get_products",
                    "get_bills",
                }
            ),
        ),
    ]
}


def check_credentials(integration: Integration, credentials: dict) -> str | None:
    """Return a user-visible error, or None when the WMS would accept these credentials."""
    missing = [
        f.label
        for f in integration.fields
        if f.required and not str(credentials.get(f.name) or "").strip()
    ]
    if missing:
        return f"Please fill in: {', '.join(missing)}."
    for f in integration.fields:
        # Like a real WMS, a secret containing "wrong" fails (DESIGN.md §7).
        if f.secret and "wrong" in str(credentials.get(f.name) or "").lower():
            return f"{integration.display_name} {integration.rejection}."
    return None


def logo_svg(integration: Integration) -> str:
    initials = "".join(w[0] for w in integration.display_name.split()[:2]).upper()
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" rx="12" fill="{integration.color}"/>'
        '<text x="32" y="41" font-family="Arial,sans-serif" font-size="24" font-weight="bold" '
        f'fill="#fff" text-anchor="middle">{initials}</text></svg>'
    )
