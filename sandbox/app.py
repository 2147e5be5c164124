"""The Starlette app: Trackstar's API (shapes per spec/openapi.json) plus /_sandbox/ controls."""

import asyncio
import copy
import logging
import math
import pathlib
import random
import secrets
import time
from collections.abc import Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import data, listing
from .config import Settings
from .integrations import INTEGRATIONS, LIST_URLS, RESOURCES, check_credentials, logo_svg
from .state import Connection, State
from .webhooks import WebhookSender

log = logging.getLogger("sandbox")
HERE = pathlib.Path(__file__).parent
SPEC_PATH = HERE / "spec" / "openapi.json"

# resource -> (list path in the OAS, singular name used in 404s)
WMS_PATHS = {
    "warehouses": "/wms/warehouses",
    "locations": "/wms/warehouses/{warehouse_id}/locations",
    "warehouse-customers": "/wms/warehouse-customers",
    "inventory": "/wms/inventory",
    "products": "/wms/products",
    "orders": "/wms/orders",
    "inbound-shipments": "/wms/inbound-shipments",
    "returns": "/wms/returns",
    "shipping-methods": "/wms/shipping-methods",
    "billing": "/wms/billing",
}
SYNC_FREQUENCY = {
    "warehouses": 43200,
    "locations": 43200,
    "warehouse-customers": 43200,
    "shipping-methods": 43200,
}
SYNC_FUNCTIONS = {
    "get_inventory",
    "get_products",
    "get_inbound_shipments",
    "get_orders",
    "get_warehouses",
    "get_shipping_methods",
    "get_returns",
    "get_bills",
    "get_warehouse_customers",
    "get_warehouse_locations",
    "get_inventory_ledger",
    "get_shipments",
}
RESOURCE_ALIASES = {r.replace("-", "_"): r for r in RESOURCES} | {
    "warehouse-locations": "locations",
    "warehouse_locations": "locations",
    "bills": "billing",
}


def _json(body: object, status: int = 200, headers: dict | None = None) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status, headers, media_type="application/json")


def _error(status: int, message: str, headers: dict | None = None, **extra) -> Response:
    return _json({"error": message, "origin": "trackstar", **extra}, status, headers)


def _iso(ts: float) -> str:
    return data.iso(int(ts * 1000))


class HTTPFailure(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _validation(message: str, location: str, field: str, problem: str) -> HTTPFailure:
    return HTTPFailure(_error(422, message, detail={location: {field: [problem]}}))


async def _body(request: Request, control: bool = False) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        if control:
            raise HTTPFailure(_json({"error": "Body must be a JSON object."}, 400))
        raise _validation("Body must be a JSON object.", "json", "_schema", "Invalid JSON.")
    return body


class RateLimiter:
    """Fixed one-second windows per (bucket, kind), as Trackstar's per-token limits."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], list] = {}

    def hit(self, bucket: str, kind: str, limit: float) -> tuple[bool, dict]:
        now = time.time()
        second = int(now)
        window = self.windows.get((bucket, kind))
        if window is None or window[0] != second:
            window = self.windows[(bucket, kind)] = [second, 0]
        allowed = window[1] < limit
        if allowed:
            window[1] += 1
        headers = {
            "x-ratelimit-limit": str(int(limit)),
            "x-ratelimit-remaining": str(max(int(limit) - window[1], 0)),
            "x-ratelimit-reset": str(second + 1),
        }
        if not allowed:
            headers["retry-after"] = str(max(math.ceil(second + 1 - now), 1))
        return allowed, headers


class Sandbox:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.initial_settings = copy.deepcopy(settings)
        self.state = State(settings.state_file)
        self.sender = WebhookSender(
            lambda: self.settings.webhook_secret, lambda: self.settings.webhook_retry_delays
        )
        self.limiter = RateLimiter()
        self.faults: dict | None = None
        spec = orjson.loads(SPEC_PATH.read_bytes())
        self.filters = listing.load_filter_specs(spec, WMS_PATHS)
        self.link_script = (HERE / "static" / "link.js").read_bytes()

    # -- plumbing ----------------------------------------------------------------------------
    def api(
        self,
        handler: Callable[..., Awaitable[Response]],
        token: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a Trackstar API handler: faults, API key, access token, rate limit."""

        async def endpoint(request: Request) -> Response:
            fault = await self._fault(request)
            if fault is not None:
                return fault
            if request.headers.get("x-trackstar-api-key") != self.settings.api_key:
                return _error(401, "Invalid or missing x-trackstar-api-key.")
            conn = None
            if token:
                conn = self.state.connection_for_token(
                    request.headers.get("x-trackstar-access-token")
                )
                if conn is None:
                    return _error(401, "Invalid or missing x-trackstar-access-token.")
                if conn.broken:
                    return _error(
                        401,
                        f"The credentials for this {INTEGRATIONS[conn.integration_name].display_name}"
                        " connection no longer work. Reinstall the connection.",
                    )
            kind = "get" if request.method == "GET" else "write"
            bucket = conn.access_token if conn else "key:" + self.settings.api_key
            limit = self.settings.get_rate if kind == "get" else self.settings.write_rate
            allowed, headers = self.limiter.hit(bucket, kind, limit)
            if not allowed:
                return _error(429, "Rate limit exceeded.", headers)
            try:
                response = await (handler(request, conn) if token else handler(request))
            except HTTPFailure as failure:
                response = failure.response
            if conn is not None:
                conn.last_used = time.time()
                conn.times_used += 1
            response.headers.update(headers)
            return response

        return endpoint

    def control(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPFailure as failure:
                return failure.response

        return endpoint

    async def _fault(self, request: Request) -> Response | None:
        faults = self.faults
        if not faults:
            return None
        paths = faults.get("paths") or ["/"]
        if isinstance(paths, str):
            paths = [paths]
        if not any(request.url.path.startswith(p) for p in paths):
            return None
        if random.random() >= faults.get("rate", 1.0):  # noqa: S311 - not crypto
            return None
        if faults.get("count") is not None:
            faults["count"] -= 1
            if faults["count"] <= 0:
                self.faults = None
        if faults.get("delay_ms"):
            await asyncio.sleep(faults["delay_ms"] / 1000)
        statuses = faults.get("statuses") or []
        if not statuses:
            return None
        status = random.choice(statuses)  # noqa: S311
        headers = {"retry-after": "1"} if status == 429 else None
        return _error(status, f"Injected fault: HTTP {status} from the sandbox.", headers)

    def webhook(self, conn: Connection, event_type: str, payload: dict, **extra) -> None:
        general = event_type.startswith("connection")
        if conn.webhooks_disabled and not general:
            return
        body = {
            "connection_id": conn.connection_id,
            "integration_name": conn.integration_name,
            "integration_type": "general" if general else "wms",
            "event_type": event_type,
            "data": payload,
            **extra,
        }
        self.sender.send(self.settings.webhook_url, body)

    def _send_later(self, conn: Connection, event_type: str, payload: dict, delay: float):
        body = {
            "connection_id": conn.connection_id,
            "integration_name": conn.integration_name,
            "integration_type": "general",
            "event_type": event_type,
            "data": payload,
        }
        self.sender.send(self.settings.webhook_url, body, delay)

    def connection_json(self, conn: Connection) -> dict:
        integration = INTEGRATIONS[conn.integration_name]
        last_sync = _iso(max(conn.created_at, time.time() - 600))
        errors = []
        if conn.broken:
            since = _iso(conn.broken_since or conn.created_at)
            errors.append(
                {
                    "error_message": self._break_message(conn),
                    "affected_endpoints": [
                        {"endpoint": LIST_URLS[r], "preventing_sync": True}
                        for r in integration.resources
                    ],
                    "first_seen": since,
                    "last_seen": _iso(time.time()),
                }
            )
        return {
            "connection_id": conn.connection_id,
            "integration_name": conn.integration_name,
            "customer_id": conn.customer_id,
            "created_at": _iso(conn.created_at),
            "last_used": _iso(conn.last_used),
            "times_used": conn.times_used,
            "latest_sync": last_sync,
            "sync_schedules": [
                {
                    "function_name": RESOURCES[r][0],
                    "latest_sync": last_sync,
                    "last_crawl_start": last_sync,
                    "last_crawl_end": last_sync,
                    "sync_frequency": SYNC_FREQUENCY.get(r, 3600),
                    "in_progress": False,
                    "sync_status": "error" if conn.broken else "enabled",
                }
                for r in integration.resources
            ],
            "errors": errors,
            "available_actions": integration.available_actions,
            "available_endpoints": integration.available_endpoints,
            "integration_type": "wms",
            "webhooks_disabled": conn.webhooks_disabled,
        }

    def _break_message(self, conn: Connection) -> str:
        name = INTEGRATIONS[conn.integration_name].display_name
        return f"{name} rejected the stored credentials (401 Unauthorized)."

    def exchange_json(self, conn: Connection) -> dict:
        integration = INTEGRATIONS[conn.integration_name]
        return {
            "access_token": conn.access_token,
            "connection_id": conn.connection_id,
            "integration_name": conn.integration_name,
            "customer_id": conn.customer_id,
            "available_actions": integration.available_actions,
            "available_endpoints": integration.available_endpoints,
        }

    def _link_token(self, token: str | None) -> dict | None:
        entry = self.state.link_tokens.get(token or "")
        if entry is None or entry["expires_at"] < time.time():
            return None
        return entry

    def _connection_created(self, conn: Connection) -> None:
        self.webhook(
            conn,
            "connection.created",
            {"created_date": _iso(conn.created_at), "access_token": conn.access_token},
        )
        # Trackstar signals the end of the initial sync per resource (API.md §5).
        ds = self.state.dataset(conn)
        for res in INTEGRATIONS[conn.integration_name].resources:
            payload = {
                "resource": res,
                "oldest_data_date": data.iso(ds.base_created_ms(res, 0)),
                "newest_data_date": data.iso(ds.anchor_ms),
            }
            self._send_later(
                conn,
                "connection.historical-sync-completed",
                payload,
                self.settings.historical_sync_delay,
            )

    def _set_broken(self, conn: Connection, broken: bool) -> None:
        if conn.broken == broken:
            return
        now = time.time()
        integration = INTEGRATIONS[conn.integration_name]
        payload = {
            "failed_url": LIST_URLS["orders"],
            "affected_endpoints": [
                {"endpoint": LIST_URLS[r], "preventing_sync": True} for r in integration.resources
            ],
            "integration_name": conn.integration_name,
            "error_message": self._break_message(conn),
            "created_date": _iso(conn.broken_since or now),
            "updated_date": _iso(now),
            "last_seen": _iso(now),
        }
        conn.broken = broken
        conn.broken_since = now if broken else None
        self.webhook(
            conn, "connection-error.created" if broken else "connection-error.deleted", payload
        )
        self.state.save()

    def _resource_or_501(self, conn: Connection, res: str) -> None:
        integration = INTEGRATIONS[conn.integration_name]
        if res in integration.missing:
            action = RESOURCES[res][0]
            raise HTTPFailure(
                _error(501, f"Endpoint {action} is not implemented for {integration.display_name}")
            )

    # -- Link and connections ----------------------------------------------------------------
    async def link_token(self, request: Request) -> Response:
        body = await _body(request)
        connection_id = body.get("connection_id")
        if connection_id is not None and connection_id not in self.state.connections:
            raise _validation(
                "Unknown connection_id.", "json", "connection_id", "No such connection."
            )
        token = "lt_" + secrets.token_urlsafe(24)
        self.state.link_tokens[token] = {
            "customer_id": body.get("customer_id"),
            "connection_id": connection_id,
            "expires_at": time.time() + self.settings.link_token_ttl,
        }
        self.state.save()
        return _json({"link_token": token})

    async def exchange(self, request: Request) -> Response:
        body = await _body(request)
        auth_code = body.get("auth_code")
        if not isinstance(auth_code, str) or not auth_code:
            raise _validation("auth_code is required.", "json", "auth_code", "Required.")
        entry = self.state.auth_codes.get(auth_code)
        if entry is None:
            raise _validation("Invalid auth_code.", "json", "auth_code", "Unknown auth code.")
        if entry["used"]:
            raise _validation(
                "auth_code has already been used.", "json", "auth_code", "Already exchanged."
            )
        if entry["expires_at"] < time.time():
            raise _validation("auth_code has expired.", "json", "auth_code", "Expired.")
        entry["used"] = True
        customer_id = body.get("customer_id") or entry.get("customer_id")
        if entry.get("connection_id"):
            conn = self.state.connections.get(entry["connection_id"])
            if conn is None:
                raise _validation(
                    "The connection being reinstalled was deleted.",
                    "json",
                    "auth_code",
                    "Connection gone.",
                )
            if customer_id:
                conn.customer_id = customer_id
            # Reinstall keeps the id and access token and repairs the credentials (API.md §3).
            self._set_broken(conn, False)
        else:
            conn = self.state.create_connection(entry["integration_name"], customer_id, {})
            self._connection_created(conn)
        self.state.save()
        return _json(self.exchange_json(conn))

    async def connections_list(self, request: Request) -> Response:
        unknown = set(request.query_params) - {"page_token", "customer_id", "limit"}
        if unknown:
            key = sorted(unknown)[0]
            raise _validation("Unknown query parameter.", "query", key, "Unknown field.")
        conns = list(self.state.connections.values())
        if "customer_id" in request.query_params:
            conns = [c for c in conns if c.customer_id == request.query_params["customer_id"]]
        raw_limit = request.query_params.get("limit") or "100"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise _validation("Invalid limit.", "query", "limit", "Must be 1 to 1000.")
        limit = int(raw_limit)
        start = 0
        if request.query_params.get("page_token"):
            try:
                start = int(request.query_params["page_token"].removeprefix("c"))
            except ValueError:
                raise _validation("Invalid page_token.", "query", "page_token", "Bad.") from None
        page = conns[start : start + limit]
        more = start + limit < len(conns)
        return _json(
            {
                "data": [self.connection_json(c) for c in page],
                "next_token": f"c{start + limit}" if more else None,
                "total_count": len(page),
            }
        )

    async def connection_get(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        conn = self.state.connections.get(cid)
        if conn is None:
            return _error(404, "Connection not found.", id=cid)
        # The OAS gives this path the list envelope (API.md §4).
        return _json({"data": [self.connection_json(conn)], "next_token": None, "total_count": 1})

    async def connection_patch(self, request: Request, conn: Connection) -> Response:
        body = await _body(request)
        unknown = set(body) - {"customer_id", "webhooks_disabled"}
        if unknown:
            raise _validation("Unknown field.", "json", sorted(unknown)[0], "Unknown field.")
        if "customer_id" in body:
            conn.customer_id = body["customer_id"]
        if "webhooks_disabled" in body:
            if not isinstance(body["webhooks_disabled"], bool):
                raise _validation("Invalid value.", "json", "webhooks_disabled", "Not a boolean.")
            conn.webhooks_disabled = body["webhooks_disabled"]
        self.state.save()
        return _json({"id": conn.connection_id, "object": "connection", "updated": True})

    async def connection_delete(self, request: Request, conn: Connection) -> Response:
        self.webhook(conn, "connection.deleted", {"deleted_date": _iso(time.time())})
        self.state.delete_connection(conn)
        self.state.save()
        return _json({"id": conn.connection_id, "object": "connection", "deleted": True})

    async def connection_sync(self, request: Request, conn: Connection) -> Response:
        body = await _body(request)
        functions = body.get("functions_to_sync")
        available = INTEGRATIONS[conn.integration_name].available_actions
        if functions is None:
            functions = available
        elif not isinstance(functions, list) or set(functions) - SYNC_FUNCTIONS:
            raise _validation(
                "Invalid functions_to_sync.", "json", "functions_to_sync", "Unknown function."
            )
        return _json({"id": conn.connection_id, "syncing": True, "functions_to_sync": functions})

    def integration_info(self, request: Request, name: str) -> dict:
        integration = INTEGRATIONS[name]
        return {
            "integration_name": name,
            "display_name": integration.display_name,
            "install_method": "input",
            "description": integration.description,
            "logo_url": f"{self.origin(request)}/_sandbox/logos/{name}.svg",
            "write_operations": [],
            "list_operations": [
                {"action": RESOURCES[r][0], "url": LIST_URLS[r], "implemented_fields": {}}
                for r in integration.resources
            ],
            "available_actions": integration.available_actions,
        }

    @staticmethod
    def origin(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def integrations(self, request: Request) -> Response:
        kind = request.path_params["integration_type"]
        if kind not in ("wms", "cart", "freight"):
            return _error(404, "Unknown integration type.", id=kind)
        if kind != "wms":
            return _json({"data": []})
        name = request.path_params.get("integration_name")
        if name is None:
            return _json({"data": [self.integration_info(request, n) for n in INTEGRATIONS]})
        if name not in INTEGRATIONS:
            return _error(404, "Integration not found.", id=name)
        return _json({"data": [self.integration_info(request, name)]})

    # -- magic links -------------------------------------------------------------------------
    async def magic_links(self, request: Request) -> Response:
        return _json({"magic_links": list(self.state.magic_links.values())})

    async def magic_link_create(self, request: Request) -> Response:
        body = await _body(request)
        kind = body.get("integration_type", "wms")
        if kind not in ("wms", "freight", "cart"):
            raise _validation("Invalid integration_type.", "json", "integration_type", "Bad.")
        days = body.get("link_duration", 7)
        if not isinstance(days, int) or days < 1:
            raise _validation("Invalid link_duration.", "json", "link_duration", "Bad.")
        link = {
            "id": secrets.token_hex(16),
            "expires_at": _iso(time.time() + days * 86400),
            "integration_type": kind,
            "integration_allow_list": list(body.get("integration_allow_list") or []),
            "integration_block_list": list(body.get("integration_block_list") or []),
            "integrations_with_endpoints": list(body.get("integrations_with_endpoints") or []),
            "customer_id": body.get("customer_id"),
        }
        self.state.magic_links[link["id"]] = link
        self.state.save()
        return _json({"magic_link": link})

    async def magic_link_get(self, request: Request) -> Response:
        link_id = request.path_params["magic_link_id"]
        link = self.state.magic_links.get(link_id)
        if link is None:
            return _error(404, "Magic link not found.", id=link_id)
        if request.method == "DELETE":
            del self.state.magic_links[link_id]
            self.state.save()
            return _json({"id": link_id, "object": "magic_link", "deleted": True})
        return _json({"magic_link": link})

    # -- sandbox admin (part of Trackstar's API) ---------------------------------------------
    async def generate_sandbox(self, request: Request) -> Response:
        kind = request.path_params["integration_type"]
        if kind != "wms":
            return _error(404, "Only the wms sandbox is emulated.", id=kind)
        conn = self.state.connections.get(self.state.sandbox_connection_id or "")
        if conn is None:
            conn = self.state.create_connection("sandbox", None, {})
            self.state.sandbox_connection_id = conn.connection_id
            self._connection_created(conn)
        else:
            # Idempotent: same connection, fresh data (API.md §4).
            self.state.dataset(conn).resize(dict(data.DEFAULT_COUNTS))
        self.state.save()
        return _json(self.exchange_json(conn))

    def _find_order(self, order_id: str) -> tuple[Connection, int] | None:
        for conn in self.state.connections.values():
            ds = self.state.dataset(conn)
            i = ds.parse_id("orders", order_id)
            if i is not None:
                return conn, i
        return None

    async def simulate_fulfill(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        found = self._find_order(order_id)
        if found is None:
            return _error(404, "Order not found.", id=order_id)
        conn, i = found
        partial = request.query_params.get("partial", "false").lower() == "true"
        target = "partially_fulfilled" if partial else "fulfilled"
        ds = self.state.dataset(conn)
        old = ds.record("orders", i)
        if old["status"] != target:
            ds.set_order_status(i, data.ORDER_STATUSES.index(target))
            new = ds.record("orders", i)
            self.webhook(
                conn,
                "order.updated",
                new,
                previous_attributes=data.previous_attributes(old, new),
            )
            self.webhook(conn, "order.shipment.created", new, previous_attributes={"shipments": []})
            self.state.save()
        return _json({"data": ds.record("orders", i)})

    # -- WMS reads ---------------------------------------------------------------------------
    def wms_list(self, res: str):
        async def handler(request: Request, conn: Connection) -> Response:
            self._resource_or_501(conn, res)
            ds = self.state.dataset(conn)
            scope = None
            params = request.query_params.multi_items()
            if res == "locations":
                wid = request.path_params["warehouse_id"]
                if ds.parse_id("warehouses", wid) is None:
                    return _error(404, "Warehouse not found.", id=wid)
                scope = ("warehouse_id", wid)
            try:
                query = listing.parse_query(params, self.filters[res])
            except listing.ListError as e:
                return _error(422, e.message, detail=e.detail)
            return _json(listing.list_page(ds, res, query, scope))

        return handler

    def wms_get(self, res: str, param: str):
        async def handler(request: Request, conn: Connection) -> Response:
            self._resource_or_501(conn, res)
            ds = self.state.dataset(conn)
            record_id = request.path_params[param]
            i = ds.parse_id(res, record_id)
            if res == "locations" and i is not None:
                if ds.record(res, i)["warehouse_id"] != request.path_params["warehouse_id"]:
                    i = None
            if i is None:
                return _error(404, f"{res} item not found.", id=record_id)
            return _json(b'{"data":' + ds.render(res, i) + b"}")

        return handler

    # -- /_sandbox/ controls -----------------------------------------------------------------
    async def link_js(self, request: Request) -> Response:
        return Response(
            self.link_script,
            media_type="text/javascript; charset=utf-8",
            headers={"cache-control": "no-cache"},
        )

    async def logo(self, request: Request) -> Response:
        integration = INTEGRATIONS.get(request.path_params["name"])
        if integration is None:
            return _json({"error": "Unknown integration."}, 404)
        return Response(logo_svg(integration), media_type="image/svg+xml")

    async def link_integrations(self, request: Request) -> Response:
        entry = self._link_token(request.query_params.get("link_token"))
        if entry is None:
            return _json({"error": "This link has expired. Close this window and try again."}, 400)
        reinstall = None
        if entry.get("connection_id"):
            conn = self.state.connections.get(entry["connection_id"])
            reinstall = conn.integration_name if conn else None
        return _json(
            {
                "reinstall": reinstall,
                "integrations": [
                    {
                        "integration_name": name,
                        "display_name": i.display_name,
                        "logo_url": f"{self.origin(request)}/_sandbox/logos/{name}.svg",
                        "fields": [
                            {
                                "name": f.name,
                                "label": f.label,
                                "secret": f.secret,
                                "required": f.required,
                            }
                            for f in i.fields
                        ],
                    }
                    for name, i in INTEGRATIONS.items()
                ],
            }
        )

    async def link_authorize(self, request: Request) -> Response:
        body = await _body(request, control=True)
        entry = self._link_token(body.get("link_token"))
        if entry is None:
            return _json({"error": "This link has expired. Close this window and try again."}, 400)
        name = body.get("integration_name")
        integration = INTEGRATIONS.get(name or "")
        if integration is None:
            return _json({"error": f"Unknown integration {name!r}."}, 400)
        if entry.get("connection_id"):
            conn = self.state.connections.get(entry["connection_id"])
            if conn is None:
                return _json({"error": "The connection being reinstalled no longer exists."}, 400)
            if conn.integration_name != name:
                return _json(
                    {
                        "error": "This link reinstalls a "
                        f"{INTEGRATIONS[conn.integration_name].display_name} connection."
                    },
                    400,
                )
        credentials = body.get("credentials") or {}
        if not isinstance(credentials, dict):
            return _json({"error": "credentials must be an object."}, 400)
        problem = check_credentials(integration, credentials)
        if problem:
            return _json({"error": problem}, 400)
        auth_code = "ac_" + secrets.token_urlsafe(24)
        self.state.auth_codes[auth_code] = {
            "integration_name": name,
            "customer_id": entry.get("customer_id"),
            "connection_id": entry.get("connection_id"),
            "expires_at": time.time() + self.settings.auth_code_ttl,
            "used": False,
        }
        self.state.save()
        return _json({"auth_code": auth_code, "integration_name": name})

    async def set_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults = None
            return _json({"faults": None})
        body = await _body(request, control=True)
        rate = body.get("rate", 1.0)
        statuses = body.get("statuses", [500])
        if not isinstance(rate, int | float) or not 0 <= rate <= 1:
            return _json({"error": "rate must be between 0 and 1."}, 400)
        if not isinstance(statuses, list) or not all(isinstance(s, int) for s in statuses):
            return _json({"error": "statuses must be a list of integers."}, 400)
        self.faults = {
            "rate": rate,
            "statuses": statuses,
            "delay_ms": body.get("delay_ms", 0),
            "paths": body.get("paths"),
            "count": body.get("count"),
        }
        return _json({"faults": self.faults})

    def _control_connection(self, request: Request) -> Connection:
        cid = request.path_params["connection_id"]
        conn = self.state.connections.get(cid)
        if conn is None:
            raise HTTPFailure(_json({"error": f"No connection {cid}."}, 404))
        return conn

    def _sandbox_view(self, conn: Connection) -> dict:
        ds = self.state.dataset(conn)
        return {
            "connection_id": conn.connection_id,
            "integration_name": conn.integration_name,
            "customer_id": conn.customer_id,
            "access_token": conn.access_token,
            "broken": conn.broken,
            "webhooks_disabled": conn.webhooks_disabled,
            "counts": {r: ds.total(r) for r in RESOURCES},
            "mutated": {r: len(m) for r, m in ds.mut.items() if m},
            "anchor": data.iso(ds.anchor_ms),
            "created_at": _iso(conn.created_at),
        }

    async def sandbox_connection(self, request: Request) -> Response:
        return _json(self._sandbox_view(self._control_connection(request)))

    async def break_connection(self, request: Request) -> Response:
        conn = self._control_connection(request)
        self._set_broken(conn, request.url.path.endswith("/break"))
        return _json(self._sandbox_view(conn))

    async def mutate(self, request: Request) -> Response:
        conn = self._control_connection(request)
        body = await _body(request, control=True)
        res = RESOURCE_ALIASES.get(body.get("resource", ""), body.get("resource"))
        if res not in RESOURCES:
            return _json({"error": f"Unknown resource {body.get('resource')!r}."}, 400)
        ds = self.state.dataset(conn)
        event = RESOURCES[res][1]
        if body.get("ids"):
            indices = [ds.parse_id(res, x) for x in body["ids"]]
            if None in indices:
                return _json({"error": "Unknown id in ids."}, 400)
        else:
            total = ds.total(res)
            indices = random.sample(range(total), min(int(body.get("count", 1)), total))
        updated = []
        for i in sorted(indices):  # type: ignore[type-var]
            old = ds.record(res, i)
            ds.touch(res, i)
            new = ds.record(res, i)
            updated.append(new["id"])
            self.webhook(
                conn,
                f"{event}.updated",
                new,
                previous_attributes=data.previous_attributes(old, new),
            )
        created = []
        for _ in range(int(body.get("create", 0))):
            i = ds.append(res)
            new = ds.record(res, i)
            created.append(new["id"])
            self.webhook(conn, f"{event}.created", new)
        self.state.save()
        return _json({"resource": res, "updated_ids": updated, "created_ids": created})

    async def dataset(self, request: Request) -> Response:
        body = await _body(request, control=True)
        conn = self.state.connections.get(body.get("connection_id", ""))
        if conn is None:
            return _json({"error": "Unknown connection_id."}, 404)
        counts = {}
        for key, value in (body.get("counts") or {}).items():
            res = RESOURCE_ALIASES.get(key, key)
            if res not in RESOURCES or not isinstance(value, int) or value < 0:
                return _json({"error": f"Bad count {key}={value!r}."}, 400)
            counts[res] = value
        self.state.dataset(conn).resize(counts)
        self.state.save()
        return _json(self._sandbox_view(conn))

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _body(request, control=True)
            unknown = set(body) - set(Settings.TUNABLE)
            if unknown:
                return _json({"error": f"Unknown settings: {sorted(unknown)}."}, 400)
            for key, value in body.items():
                setattr(self.settings, key, value)
        return _json(self.settings.public())

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        # Back to the startup configuration too, so one test's knobs never leak into the next.
        for name in Settings.TUNABLE:
            setattr(self.settings, name, copy.deepcopy(getattr(self.initial_settings, name)))
        self.faults = None
        self.limiter.windows.clear()
        self.sender.clear()
        return _json({"reset": True})

    async def health(self, request: Request) -> Response:
        return _json({"ok": True})

    async def webhook_log(self, request: Request) -> Response:
        return _json({"deliveries": self.sender.log})

    # -- routing -----------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        api, control = self.api, self.control
        routes = [
            Route("/link/token", api(self.link_token), methods=["POST"]),
            Route("/link/exchange", api(self.exchange), methods=["POST"]),
            Route("/connections", api(self.connections_list), methods=["GET"]),
            Route("/connections", api(self.connection_patch, token=True), methods=["PATCH"]),
            Route("/connections", api(self.connection_delete, token=True), methods=["DELETE"]),
            Route("/connections/sync", api(self.connection_sync, token=True), methods=["POST"]),
            Route("/connections/{connection_id}", api(self.connection_get), methods=["GET"]),
            Route("/integrations/{integration_type}", api(self.integrations), methods=["GET"]),
            Route(
                "/integrations/{integration_type}/{integration_name}",
                api(self.integrations),
                methods=["GET"],
            ),
            Route("/magic-links", api(self.magic_links), methods=["GET"]),
            Route("/magic-links", api(self.magic_link_create), methods=["POST"]),
            Route(
                "/magic-links/{magic_link_id}", api(self.magic_link_get), methods=["GET", "DELETE"]
            ),
            Route(
                "/sandbox/generate-sandbox/{integration_type}",
                api(self.generate_sandbox),
                methods=["POST"],
            ),
            Route(
                "/sandbox/simulate/orders/{order_id}/fulfill",
                api(self.simulate_fulfill),
                methods=["PUT"],
            ),
            Route(
                "/wms/warehouses/{warehouse_id}/locations",
                api(self.wms_list("locations"), token=True),
                methods=["GET"],
            ),
            Route(
                "/wms/warehouses/{warehouse_id}/locations/{location_id}",
                api(self.wms_get("locations", "location_id"), token=True),
                methods=["GET"],
            ),
        ]
        for res, path in WMS_PATHS.items():
            if res == "locations":
                continue
            routes.append(Route(path, api(self.wms_list(res), token=True), methods=["GET"]))
            routes.append(
                Route(path + "/{record_id}", api(self.wms_get(res, "record_id"), token=True))
            )
        routes += [
            Route("/link/main.js", self.link_js, methods=["GET"]),
            Route("/_sandbox/health", self.health, methods=["GET"]),
            Route("/_sandbox/logos/{name}.svg", self.logo, methods=["GET"]),
            Route("/_sandbox/link/integrations", control(self.link_integrations), methods=["GET"]),
            Route("/_sandbox/link/authorize", control(self.link_authorize), methods=["POST"]),
            Route("/_sandbox/faults", control(self.set_faults), methods=["POST", "DELETE"]),
            Route(
                "/_sandbox/connections/{connection_id}",
                control(self.sandbox_connection),
                methods=["GET"],
            ),
            Route(
                "/_sandbox/connections/{connection_id}/break",
                control(self.break_connection),
                methods=["POST"],
            ),
            Route(
                "/_sandbox/connections/{connection_id}/repair",
                control(self.break_connection),
                methods=["POST"],
            ),
            Route(
                "/_sandbox/connections/{connection_id}/mutate",
                control(self.mutate),
                methods=["POST"],
            ),
            Route("/_sandbox/dataset", control(self.dataset), methods=["POST"]),
            Route("/_sandbox/config", control(self.config), methods=["GET", "POST"]),
            Route("/_sandbox/reset", control(self.reset), methods=["POST"]),
            Route("/_sandbox/webhooks", control(self.webhook_log), methods=["GET"]),
        ]
        return routes


class Envelope:
    """ASGI middleware: X-Request-Id on every response; CORS for what the Link page calls;
    JSON 404/405 instead of Starlette's plain text."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        cors = path.startswith(("/_sandbox/", "/link/main.js"))
        if cors and scope["method"] == "OPTIONS":
            await Response(
                status_code=204,
                headers={
                    "access-control-allow-origin": "*",
                    "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
                    "access-control-allow-headers": "content-type",
                    "access-control-max-age": "600",
                    "x-request-id": "req_" + secrets.token_hex(8),
                },
            )(scope, receive, send)
            return
        request_id = ("req_" + secrets.token_hex(8)).encode()

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id))
                if cors:
                    headers.append((b"access-control-allow-origin", b"*"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    message = "Not found." if status == 404 else "Method not allowed."
    return _error(status, message)


def create_app(settings: Settings | None = None) -> Envelope:
    sandbox = Sandbox(settings or Settings.from_env())
    app = Starlette(
        routes=sandbox.routes(),
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.state.sandbox = sandbox
    return Envelope(app)
