"""Deterministic WMS data, generated on read.

Record i of resource R is a pure function of (connection_id, R, i, version). Nothing is stored
per record except the few that were mutated or added (see Dataset.mut), so a connection with a
million orders costs nothing until a page is read. Base records have created_date and
updated_date monotonic in i (so date filters become index ranges) and all before the dataset's
anchor time; mutations always land after it.

Every record also carries trackstar_created_date / trackstar_updated_date: when Trackstar's copy
got the record / last changed (SKILL:trackstar-sync). For base records Trackstar saw each WMS
change TRACKSTAR_LAG_MS later, capped at the anchor (so they stay monotonic in i too), and
raised to a per-resource floor when Trackstar newly saw the whole resource (a repaired missing
permission). Records added late or by an on-demand backfill have old WMS dates but new
trackstar dates.
"""

import hashlib
import time

import orjson

DAY_MS = 86_400_000
SPAN_MS = 30 * DAY_MS  # base records spread over the 30 days before the anchor (initial sync)
TRACKSTAR_LAG_MS = 90_000  # how long after a base record's WMS change Trackstar saw it

DEFAULT_COUNTS = {
    "warehouses": 2,
    "locations": 10,
    "warehouse-customers": 3,
    "inventory": 10,
    "products": 10,
    "orders": 50,
    "inbound-shipments": 8,
    "returns": 6,
    "shipping-methods": 5,
    "billing": 20,
}
PREFIX = {
    "warehouses": "wh",
    "locations": "loc",
    "warehouse-customers": "wc",
    "inventory": "inv",
    "products": "prod",
    "orders": "ord",
    "inbound-shipments": "asn",
    "returns": "ret",
    "shipping-methods": "sm",
    "billing": "bill",
}
SALT = {name: n * 0x1000193 for n, name in enumerate(PREFIX, start=1)}

ORDER_STATUSES = [
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
]
PICKED = {"picked", "packed", "partially_fulfilled", "fulfilled"}
SHIPPED = {"partially_fulfilled", "fulfilled"}
ASN_STATUSES = ["open", "in-transit", "receiving", "received", "cancelled", "other"]
ORDER_TYPES = ["d2c", "d2c", "d2c", "b2b", "dropship", "transfer"]
CHANNELS = ["shopify", "amazon", "wholesale", "tiktok"]
CARRIERS = [
    ("ups", "UPS", "UPSN", "UPS Ground"),
    ("usps", "USPS", "USPS", "USPS Priority Mail"),
    ("fedex", "FedEx", "FDEG", "FedEx 2Day"),
    ("dhl", "DHL", "DHLC", "DHL Express Worldwide"),
    ("ups", "UPS", "UPSN", "UPS Next Day Air"),
    ("usps", "USPS", "USPS", "USPS Ground Advantage"),
]
CHARGE_TYPES = ["pick_fee", "packaging", "shipping", "storage", "receiving"]
LOCATION_TYPES = ["bin", "shelf", "pallet", "floor"]
RETURN_REASONS = ["Too small", "Damaged", "Changed mind", "Wrong item", None]
ADJECTIVES = ["Classic", "Organic", "Deluxe", "Compact", "Rugged", "Everyday", "Premium", "Mini"]
NOUNS = ["Tote", "Mug", "Hoodie", "Candle", "Notebook", "Bottle", "Sneaker", "Lamp", "Blanket"]
BRANDS = ["Acme Goods", "Northwind Apparel", "Bluebird Coffee", "Peak Outdoor", "Lumen Home"]
SUPPLIERS = ["Globex Supply", "Initech Imports", "Umbrella Manufacturing"]
FIRST = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances"]
LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie"]
CITIES = [
    ("Columbus", "OH", "43215"),
    ("Reno", "NV", "89501"),
    ("Austin", "TX", "78701"),
    ("Portland", "OR", "97201"),
    ("Atlanta", "GA", "30303"),
    ("Denver", "CO", "80202"),
    ("Chicago", "IL", "60601"),
]
MEASUREMENTS = {
    "length": 10.0,
    "width": 8.0,
    "height": 4.0,
    "unit": "in",
    "weight": 1.5,
    "weight_unit": "lb",
}
# Shared, never mutated: orjson serialises the same object many times at no extra cost.
SHIP_TO = [
    {
        "full_name": f"{FIRST[k % len(FIRST)]} {LAST[k % len(LAST)]}",
        "company": None,
        "address1": f"{100 + k * 7} Main St",
        "address2": None,
        "address3": None,
        "city": CITIES[k % len(CITIES)][0],
        "state": CITIES[k % len(CITIES)][1],
        "postal_code": CITIES[k % len(CITIES)][2],
        "country": "US",
        "phone_number": f"555-01{k:02d}",
        "email_address": f"customer{k}@example.com",
    }
    for k in range(72)
]
SHIP_FROM = [
    {
        "address1": f"{k + 1} Warehouse Way",
        "address2": None,
        "address3": None,
        "city": c[0],
        "state": c[1],
        "postal_code": c[2],
        "country": "US",
    }
    for k, c in enumerate(CITIES)
]
EMPTY: dict = {}


def mix(x: int) -> int:
    x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    return (x >> 16) ^ x


_DAY_PREFIX: dict[int, str] = {}
# An order carries six dates, so formatting is table lookups: "HH:MM:" per minute of the day
# and "SS.mmmZ" per millisecond of the minute (a few MB, built once).
_MINUTES = ["%02d:%02d:" % divmod(m, 60) for m in range(1440)]
_MILLIS = ["%02d.%03dZ" % divmod(x, 1000) for x in range(60_000)]


def iso(ms: int) -> str:
    # strftime costs ~2 µs; pages format thousands of dates, so cache the day part.
    day, rem = divmod(ms, DAY_MS)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))
        if len(_DAY_PREFIX) < 100_000:
            _DAY_PREFIX[day] = prefix
    minute, milli = divmod(rem, 60_000)
    return prefix + _MINUTES[minute] + _MILLIS[milli]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sku(i: int) -> str:
    return f"SKU-{i:05d}"


class Dataset:
    """One connection's generated data: sizes, anchor time and the sparse mutation log."""

    def __init__(
        self,
        connection_id: str,
        counts: dict[str, int] | None = None,
        anchor_ms: int | None = None,
        mutations: dict | None = None,
        extra: dict | None = None,
        floors: dict | None = None,
        pending: dict | None = None,
    ) -> None:
        digest = hashlib.sha256(connection_id.encode()).hexdigest()
        self.tag = digest[:6]
        self.seed = int(digest[6:14], 16)
        self.counts = {**DEFAULT_COUNTS, **(counts or {})}
        self.anchor_ms = anchor_ms or now_ms()
        # resource -> {index: [version, updated_ms, created_ms or None,
        #                      trackstar_updated_ms, trackstar_created_ms or None]}
        # (None: the base value). State files written before the trackstar dates hold
        # 3-element entries; their trackstar dates are the WMS ones.
        self.mut: dict[str, dict[int, list]] = {r: {} for r in PREFIX}
        for res, entries in (mutations or {}).items():
            self.mut[res] = {int(k): _entry(v) for k, v in entries.items()}
        self.extra = {r: 0 for r in PREFIX} | (extra or {})
        # resource -> ms: no trackstar date of that resource is older (see set_floor)
        self.floors: dict[str, int] = dict(floors or {})
        # Changes held in the WMS only, until a force sync applies them:
        # resource -> {"updates": [index, ...], "creates": n}
        self.pending: dict[str, dict] = {r: dict(p) for r, p in (pending or {}).items()}
        self._sorted_mut: dict[str, list[int]] = {}
        self._ids: dict[str, str] = {r: f"{p}_{self.tag}_" for r, p in PREFIX.items()}
        self._steps: dict[str, float] = {}
        self._order_bodies: dict[int, tuple] = {}
        self._recompute()

    def _recompute(self) -> None:
        self._steps = {r: SPAN_MS / max(n, 1) for r, n in self.counts.items()}
        self._sorted_mut = {}
        self._order_bodies = {}
        self._latest = max(
            (max(m[1], m[3]) for entries in self.mut.values() for m in entries.values()),
            default=0,
        )

    def dump(self) -> dict:
        return {
            "counts": self.counts,
            "anchor_ms": self.anchor_ms,
            "mutations": {r: {str(k): v for k, v in m.items()} for r, m in self.mut.items() if m},
            "extra": self.extra,
            "floors": self.floors,
            "pending": {r: p for r, p in self.pending.items() if p["updates"] or p["creates"]},
        }

    def resize(self, counts: dict[str, int]) -> None:
        # A resize re-spreads base dates, so it is a fresh dataset for that connection.
        self.counts = {**self.counts, **counts}
        self.anchor_ms = now_ms()
        self.mut = {r: {} for r in PREFIX}
        self.extra = {r: 0 for r in PREFIX}
        self.floors = {}
        self.pending = {}
        self._recompute()

    # -- indexing ----------------------------------------------------------------------------
    def total(self, res: str) -> int:
        return self.counts[res] + self.extra[res]

    def make_id(self, res: str, i: int) -> str:
        return self._ids[res] + str(i)

    def parse_id(self, res: str, record_id: str) -> int | None:
        prefix = self._ids[res]
        if not record_id.startswith(prefix):
            return None
        tail = record_id[len(prefix) :]
        if not tail.isdigit():
            return None
        i = int(tail)
        return i if i < self.total(res) else None

    def sorted_mutations(self, res: str) -> list[int]:
        cached = self._sorted_mut.get(res)
        if cached is None:
            cached = self._sorted_mut[res] = sorted(self.mut[res])
        return cached

    def base_created_ms(self, res: str, i: int) -> int:
        return int(self.anchor_ms - SPAN_MS + i * self._steps[res])

    def base_updated_ms(self, res: str, i: int) -> int:
        # Half a step after creation keeps updated_date monotonic in i and below the anchor.
        return int(self.anchor_ms - SPAN_MS + (i + 0.5) * self._steps[res])

    def created_ms(self, res: str, i: int) -> int:
        m = self.mut[res].get(i)
        if m is not None and m[2] is not None:
            return m[2]
        return self.base_created_ms(res, i)

    def updated_ms(self, res: str, i: int) -> int:
        m = self.mut[res].get(i)
        return m[1] if m is not None else self.base_updated_ms(res, i)

    # Trackstar's own clock. Base values are monotonic in i (index ranges for filters).
    def base_ts_created_ms(self, res: str, i: int) -> int:
        t = min(self.base_created_ms(res, i) + TRACKSTAR_LAG_MS, self.anchor_ms)
        return max(t, self.floors.get(res, 0))

    def base_ts_updated_ms(self, res: str, i: int) -> int:
        t = min(self.base_updated_ms(res, i) + TRACKSTAR_LAG_MS, self.anchor_ms)
        return max(t, self.floors.get(res, 0))

    def ts_created_ms(self, res: str, i: int) -> int:
        m = self.mut[res].get(i)
        if m is not None and m[4] is not None:
            return max(m[4], self.floors.get(res, 0))
        return self.base_ts_created_ms(res, i)

    def ts_updated_ms(self, res: str, i: int) -> int:
        m = self.mut[res].get(i)
        if m is not None:
            return max(m[3], self.floors.get(res, 0))
        return self.base_ts_updated_ms(res, i)

    def date_ms(self, field: str, res: str, i: int) -> int:
        return DATE_GETTERS[field][1](self, res, i)

    def rand(self, res: str, i: int, salt: int = 0) -> int:
        return mix((self.seed ^ (i * 0x9E3779B1 + SALT[res] + salt)) & 0xFFFFFFFF)

    # -- mutation ----------------------------------------------------------------------------
    def _stamp(self) -> int:
        stamp = max(now_ms(), self._latest + 1, self.anchor_ms + 1)
        self._latest = stamp
        return stamp

    def touch(self, res: str, i: int) -> None:
        # A change in the WMS that Trackstar picked up at once: both clocks move.
        stamp = self._stamp()
        entry = self.mut[res].get(i)
        if entry is None:
            self.mut[res][i] = [1, stamp, None, stamp, None]
        else:
            entry[0] += 1
            entry[1] = entry[3] = stamp
        self._sorted_mut.pop(res, None)

    def set_floor(self, res: str, ms: int) -> None:
        """Trackstar (re)reads every record of res at ms: no trackstar date of it is older.
        (ms may be a moment ahead, when that sync completes; WMS stamps do not move.)"""
        self.floors[res] = max(self.floors.get(res, 0), ms)

    def set_order_status(self, i: int, status_index: int) -> None:
        # Status is (shape * 7 + version) % 11 (see render_order), so pick the version.
        shape = self.rand("orders", i) % ORDER_SHAPES
        version = self.version("orders", i)
        delta = (status_index - shape * 7 - version) % len(ORDER_STATUSES)
        self.touch("orders", i)
        self.mut["orders"][i][0] = version + (delta or len(ORDER_STATUSES))

    def append(self, res: str) -> int:
        stamp = self._stamp()
        return self.append_at(res, stamp, stamp, stamp)

    def append_at(self, res: str, created_ms: int, updated_ms: int, trackstar_ms: int) -> int:
        """A new record; WMS dates may be old (late ingestion, backfill), Trackstar's new."""
        i = self.total(res)
        self.extra[res] += 1
        self.mut[res][i] = [0, updated_ms, created_ms, trackstar_ms, trackstar_ms]
        self._latest = max(self._latest, updated_ms, trackstar_ms)
        self._sorted_mut.pop(res, None)
        if res != "orders":
            self._order_bodies = {}  # bodies reference other resources' counts
        return i

    # -- records -----------------------------------------------------------------------------
    def version(self, res: str, i: int) -> int:
        m = self.mut[res].get(i)
        return m[0] if m is not None else 0

    def record(self, res: str, i: int) -> dict:
        return GENERATORS[res](self, i, self.version(res, i))

    def render(self, res: str, i: int) -> bytes:
        if res == "orders":
            return render_order(self, i, self.version(res, i)).encode()
        return orjson.dumps(GENERATORS[res](self, i, self.version(res, i)))

    def order_body(self, shape: int, status: int) -> tuple:
        key = shape * 16 + status
        cached = self._order_bodies.get(key)
        if cached is None:
            cached = self._order_bodies[key] = _order_body(self, shape, status)
        return cached

    def _dates(self, res: str, i: int) -> tuple[int, str, str, str, str]:
        """created_ms and the ISO created, updated, trackstar_created, trackstar_updated."""
        m = self.mut[res].get(i)
        if m is None:
            created = self.base_created_ms(res, i)
            updated = self.base_updated_ms(res, i)
            ts_created = min(created + TRACKSTAR_LAG_MS, self.anchor_ms)
            ts_updated = min(updated + TRACKSTAR_LAG_MS, self.anchor_ms)
        else:
            created = m[2] if m[2] is not None else self.base_created_ms(res, i)
            updated = m[1]
            ts_created = (
                m[4]
                if m[4] is not None
                else min(self.base_created_ms(res, i) + TRACKSTAR_LAG_MS, self.anchor_ms)
            )
            ts_updated = m[3]
        floor = self.floors.get(res)
        if floor is not None:
            ts_created = max(ts_created, floor)
            ts_updated = max(ts_updated, floor)
        return created, iso(created), iso(updated), iso(ts_created), iso(ts_updated)

    def ref(self, res: str, i: int) -> str:
        return self._ids[res] + str(i % max(self.total(res), 1))


def _entry(raw: list) -> list:
    if len(raw) >= 5:
        return list(raw[:5])
    # [version, updated_ms, created_ms|None] from an older state file.
    return [raw[0], raw[1], raw[2], raw[1], raw[2]]


# field -> (base value, monotonic in i; actual value) for the date filters of every list.
DATE_GETTERS = {
    "created_date": (Dataset.base_created_ms, Dataset.created_ms),
    "updated_date": (Dataset.base_updated_ms, Dataset.updated_ms),
    "trackstar_created_date": (Dataset.base_ts_created_ms, Dataset.ts_created_ms),
    "trackstar_updated_date": (Dataset.base_ts_updated_ms, Dataset.ts_updated_ms),
}


def _warehouse(ds: Dataset, i: int, v: int) -> dict:
    _, created, updated, ts_created, ts_updated = ds._dates("warehouses", i)
    city = CITIES[i % len(CITIES)]
    return {
        "id": ds.make_id("warehouses", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "name": f"{city[0]} DC" + (f" v{v}" if v else ""),
        "code": f"{city[1]}{i + 1:02d}",
        "address": SHIP_FROM[i % len(SHIP_FROM)],
        "trackstar_tags": [],
        "additional_fields": EMPTY,
    }


def _location(ds: Dataset, i: int, v: int) -> dict:
    _, created, updated, ts_created, ts_updated = ds._dates("locations", i)
    return {
        "id": ds.make_id("locations", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "name": f"{chr(65 + i % 6)}-{i // 6 + 1:02d}-{(i + v) % 4 + 1}",
        "warehouse_id": ds.ref("warehouses", i),
        "type": LOCATION_TYPES[(i + v) % len(LOCATION_TYPES)],
        "measurements": MEASUREMENTS,
        "additional_fields": EMPTY,
    }


def _warehouse_customer(ds: Dataset, i: int, v: int) -> dict:
    _, created, updated, ts_created, ts_updated = ds._dates("warehouse-customers", i)
    brand = BRANDS[i % len(BRANDS)] + (f" {i // len(BRANDS) + 1}" if i >= len(BRANDS) else "")
    return {
        "id": ds.make_id("warehouse-customers", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "name": brand + (f" (rev {v})" if v else ""),
        "email": f"ops{i}@{brand.split()[0].lower()}.example.com",
        "additional_fields": EMPTY,
    }


def _inventory(ds: Dataset, i: int, v: int) -> dict:
    _, created, updated, ts_created, ts_updated = ds._dates("inventory", i)
    r = ds.rand("inventory", i, v * 7919)
    n_wh = min(ds.total("warehouses"), 4)
    by_wh = {}
    totals = [0, 0, 0, 0, 0]
    for w in range(n_wh):
        onhand = (r >> (w * 6)) % 240 + 10
        committed = onhand // 5
        unfulfillable = onhand % 7
        fulfillable = onhand - committed - unfulfillable
        awaiting = (r >> (w + 3)) % 40
        by_wh[ds.make_id("warehouses", w)] = {
            "awaiting": awaiting,
            "onhand": onhand,
            "committed": committed,
            "unfulfillable": unfulfillable,
            "fulfillable": fulfillable,
            "unsellable": unfulfillable,
            "sellable": fulfillable,
        }
        totals[0] += awaiting
        totals[1] += onhand
        totals[2] += committed
        totals[3] += unfulfillable
        totals[4] += fulfillable
    return {
        "id": ds.make_id("inventory", i),
        "warehouse_customer_id": ds.ref("warehouse-customers", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "name": f"{ADJECTIVES[i % len(ADJECTIVES)]} {NOUNS[i % len(NOUNS)]}",
        "sku": sku(i),
        "unit_cost": round(2.5 + (i % 40) * 0.75, 2),
        "active": i % 17 != 16,
        "awaiting": totals[0],
        "onhand": totals[1],
        "committed": totals[2],
        "unfulfillable": totals[3],
        "fulfillable": totals[4],
        "unsellable": totals[3],
        "sellable": totals[4],
        "substitute_skus": [],
        "inventory_by_warehouse_id": by_wh,
        "lots": [],
        "measurements": MEASUREMENTS,
        "locations": [
            {
                "location_id": ds.ref("locations", i),
                "quantity": totals[1],
                "warehouse_id": ds.ref("warehouses", i % max(n_wh, 1)),
            }
        ],
        "external_system_url": None,
        "trackstar_tags": [],
        "additional_fields": EMPTY,
    }


def _product(ds: Dataset, i: int, v: int) -> dict:
    _, created, updated, ts_created, ts_updated = ds._dates("products", i)
    inv = i % max(ds.total("inventory"), 1)
    return {
        "id": ds.make_id("products", i),
        "warehouse_customer_id": ds.ref("warehouse-customers", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "name": f"{ADJECTIVES[i % len(ADJECTIVES)]} {NOUNS[i % len(NOUNS)]}",
        "sku": sku(i),
        "gtin": f"00{10_000_000_000 + i:012d}",
        "unit_price": round(9.99 + (i % 40) * 1.5 + v, 2),
        "inventory_items": [
            {"inventory_item_id": ds.make_id("inventory", inv), "sku": sku(inv), "unit_quantity": 1}
        ],
        "is_kit": False,
        "active": i % 17 != 16,
        "supplier": SUPPLIERS[i % len(SUPPLIERS)],
        "country_of_origin": "US",
        "harmonized_code": "6109.10",
        "external_system_url": None,
        "trackstar_tags": [],
        "additional_fields": EMPTY,
    }


ORDER_SHAPES = 1024
_ORDER_HEAD = (
    '{"id":"%s","created_date":"%s","updated_date":"%s","trackstar_created_date":"%s",'
    '"trackstar_updated_date":"%s","reference_id":"#%d","order_number":"SO-%d",'
    '"required_ship_date":"%s",'
)
_SHIPMENT_IDS = '"shipment_id":"shp_%s_%d","shipped_date":"%s",'
_PACKAGE_IDS = '"package_id":"pkg_%s_%d","tracking_number":"%s","tracking_url":"%s",'


def render_order(ds: "Dataset", i: int, v: int) -> str:
    # Orders dominate sync volume, so they are rendered straight to JSON text: everything but
    # ids and dates comes from one of ORDER_SHAPES pre-rendered bodies per dataset, picked by a
    # hash of i. record() parses this text back when a dict is needed, so there is one source.
    created_ms, created, updated, ts_created, ts_updated = ds._dates("orders", i)
    r = ds.rand("orders", i)
    shape = r % ORDER_SHAPES
    # Status follows the shape (so base data needs only ORDER_SHAPES bodies); a mutation
    # moves it on by its version.
    status = (shape * 7 + v) % len(ORDER_STATUSES)
    body = ds.order_body(shape, status)
    head = _ORDER_HEAD % (
        ds._ids["orders"] + str(i),
        created,
        updated,
        ts_created,
        ts_updated,
        1000 + i,
        100000 + i,
        iso(created_ms + 2 * DAY_MS),
    )
    if body[1] is None:
        return head + body[0]
    tracking = f"1Z{ds.tag.upper()}{i:010d}"
    return (
        head
        + body[0]
        + _SHIPMENT_IDS % (ds.tag, i, iso(created_ms + DAY_MS))
        + body[1]
        + _PACKAGE_IDS % (ds.tag, i, tracking, "https://track.example.com/" + tracking)
        + body[2]
    )


def _order_body(ds: "Dataset", shape: int, status_index: int) -> tuple:
    """The shape's JSON after the head, split where a shipment needs per-order ids."""
    r = mix(ds.seed ^ (shape * 0x27D4EB2F))
    status = ORDER_STATUSES[status_index]
    n_prod = max(ds.total("products"), 1)
    picked = status in PICKED
    line_items = []
    total = 0.0
    for k in range(1 + r % 3):
        p = (shape * 7 + k * 13 + (r >> 9)) % n_prod
        qty = 1 + (r >> (k * 3 + 2)) % 4
        price = PRICES[p % 40]
        total += qty * price
        line_items.append(
            {
                "product_id": ds._ids["products"] + str(p),
                "sku": sku(p),
                "quantity": qty,
                "unit_price": price,
                "is_picked": picked,
                "discount_amount": 0.0,
            }
        )
    n_sm = ds.total("shipping-methods")
    sm = (r >> 12) % max(n_sm, 1)
    carrier = CARRIERS[sm % len(CARRIERS)]
    wh = ds.ref("warehouses", r >> 14)
    channel = CHANNELS[(r >> 6) % len(CHANNELS)]
    ship_to = SHIP_TO[(r >> 17) % len(SHIP_TO)]
    body = {
        "warehouse_customer_id": ds.ref("warehouse-customers", r >> 3),
        "warehouse_id": wh,
        "status": status,
        "raw_status": status.upper(),
        "channel": channel,
        "channel_object": {"channel_id": f"ch_{channel}", "channel_name": channel.title()},
        "type": ORDER_TYPES[(r >> 20) % len(ORDER_TYPES)],
        "trading_partner": None,
        "shipping_method": carrier[3],
        "service_level": carrier[3],
        "shipping_method_id": ds._ids["shipping-methods"] + str(sm) if n_sm else None,
        "shipping_method_name": carrier[3],
        "carrier_id": carrier[0],
        "carrier_name": carrier[1],
        "scac": carrier[2],
        "invoice_currency_code": "USD",
        "total_price": round(total, 2),
        "total_tax": round(total * 0.07, 2),
        "total_discount": 0.0,
        "total_shipping": 5.99,
        "ship_to_address": ship_to,
        "line_items": line_items,
        "tags": [],
        "saturday_delivery": False,
        "signature_required": False,
        "external_system_url": None,
        "trackstar_tags": [],
        "additional_fields": EMPTY,
    }
    text = orjson.dumps(body).decode()[1:]  # drop "{": the head opens the object
    if status not in SHIPPED:
        return (text[:-1] + ',"shipments":[]}', None, None)
    items = [
        {
            "inventory_item_id": ds.ref("inventory", int(li["product_id"].rsplit("_", 1)[1])),
            "sku": li["sku"],
            "quantity": li["quantity"],
            "parent_product_id": None,
        }
        for li in line_items
    ]
    shipment = {
        "warehouse_id": wh,
        "raw_status": "SHIPPED",
        "status": "shipped",
        "shipping_method": carrier[3],
        "line_items": items,
        "ship_to_address": ship_to,
        "ship_from_address": SHIP_FROM[0],
    }
    package = {
        "package_name": None,
        "shipping_method": carrier[3],
        "carrier": carrier[1],
        "shipping_method_id": None,
        "shipping_method_name": carrier[3],
        "carrier_id": carrier[0],
        "carrier_name": carrier[1],
        "scac": carrier[2],
        "shipping_cost": 5.99,
        "measurements": MEASUREMENTS,
        "line_items": [
            {
                "inventory_item_id": it["inventory_item_id"],
                "sku": it["sku"],
                "quantity": it["quantity"],
                "lot_id": None,
                "expiration_date": None,
                "parent_product_id": None,
            }
            for it in items
        ],
    }
    return (
        text[:-1] + ',"shipments":[{',
        orjson.dumps(shipment).decode()[1:-1] + ',"packages":[{',
        orjson.dumps(package).decode()[1:] + "]}]}",
    )


PRICES = [round(9.99 + p * 1.5, 2) for p in range(40)]


def _order(ds: "Dataset", i: int, v: int) -> dict:
    return orjson.loads(render_order(ds, i, v))


def _inbound_shipment(ds: Dataset, i: int, v: int) -> dict:
    created_ms, created, updated, ts_created, ts_updated = ds._dates("inbound-shipments", i)
    r = ds.rand("inbound-shipments", i)
    status = ASN_STATUSES[(r + v) % len(ASN_STATUSES)]
    n_inv = max(ds.total("inventory"), 1)
    line_items = []
    for k in range(1 + r % 3):
        inv = (i * 3 + k) % n_inv
        expected = 12 * (1 + (r >> (k + 4)) % 10)
        line_items.append(
            {
                "inventory_item_id": ds._ids["inventory"] + str(inv),
                "sku": sku(inv),
                "expected_quantity": expected,
                "received_quantity": expected if status == "received" else 0,
                "unit_cost": 4.25,
                "external_id": None,
            }
        )
    return {
        "id": ds.make_id("inbound-shipments", i),
        "warehouse_customer_id": ds.ref("warehouse-customers", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "purchase_order_number": f"PO-{5000 + i}",
        "status": status,
        "raw_status": status.upper(),
        "supplier": SUPPLIERS[i % len(SUPPLIERS)],
        "expected_arrival_date": iso(created_ms + 7 * DAY_MS),
        "warehouse_id": ds.ref("warehouses", i),
        "line_items": line_items,
        "receipts": [],
        "ship_from_address": SHIP_FROM[(i + 1) % len(SHIP_FROM)],
        "tracking_numbers": [f"TRK{ds.tag.upper()}{i:08d}"],
        "notes": [],
        "external_system_url": None,
        "trackstar_tags": [],
        "additional_fields": EMPTY,
    }


def _return(ds: Dataset, i: int, v: int) -> dict:
    _, created, updated, ts_created, ts_updated = ds._dates("returns", i)
    r = ds.rand("returns", i)
    status = ASN_STATUSES[(r + v) % len(ASN_STATUSES)]
    inv = i % max(ds.total("inventory"), 1)
    received = 1 if status == "received" else 0
    return {
        "id": ds.make_id("returns", i),
        "warehouse_customer_id": ds.ref("warehouse-customers", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "status": status,
        "raw_status": status.upper(),
        "order_id": ds.ref("orders", i * 3),
        "notes": [],
        "line_items": [
            {
                "inventory_item_id": ds._ids["inventory"] + str(inv),
                "sku": sku(inv),
                "expected_quantity": 1,
                "received_quantity": received,
                "restocked_quantity": received,
                "return_reason": RETURN_REASONS[i % len(RETURN_REASONS)],
                "quantity": 1,
                "warehouse_id": ds.ref("warehouses", i),
                "returned_date": None,
            }
        ],
        "shipments": [],
        "external_system_url": None,
        "trackstar_tags": [],
        "additional_fields": EMPTY,
    }


def _shipping_method(ds: Dataset, i: int, v: int) -> dict:
    _, created, updated, ts_created, ts_updated = ds._dates("shipping-methods", i)
    carrier = CARRIERS[i % len(CARRIERS)]
    return {
        "id": ds.make_id("shipping-methods", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "name": carrier[3] + (f" (rev {v})" if v else ""),
        "carrier": carrier[1],
        "carrier_id": carrier[0],
        "carrier_name": carrier[1],
        "scac": carrier[2],
        "additional_fields": EMPTY,
    }


def _bill(ds: Dataset, i: int, v: int) -> dict:
    _, created, updated, ts_created, ts_updated = ds._dates("billing", i)
    r = ds.rand("billing", i)
    return {
        "id": ds.make_id("billing", i),
        "warehouse_customer_id": ds.ref("warehouse-customers", i),
        "created_date": created,
        "updated_date": updated,
        "trackstar_created_date": ts_created,
        "trackstar_updated_date": ts_updated,
        "object_id": ds.ref("orders", i),
        "object_type": "order",
        "charge_type": CHARGE_TYPES[r % len(CHARGE_TYPES)],
        "amount": round(0.5 + (r >> 4) % 2000 / 100 + v, 2),
        "currency_code": "USD",
        "additional_fields": EMPTY,
    }


GENERATORS = {
    "warehouses": _warehouse,
    "locations": _location,
    "warehouse-customers": _warehouse_customer,
    "inventory": _inventory,
    "products": _product,
    "orders": _order,
    "inbound-shipments": _inbound_shipment,
    "returns": _return,
    "shipping-methods": _shipping_method,
    "billing": _bill,
}


_CLOCKS = {"updated_date", "trackstar_created_date", "trackstar_updated_date"}


def previous_attributes(old: dict, new: dict) -> dict:
    # Trackstar sends only the old values of fields that changed (API.md §8).
    return {k: old.get(k) for k, v in new.items() if k not in _CLOCKS and old.get(k) != v}
