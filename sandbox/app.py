"""The Starlette app: Trackstar's API (shapes per spec/openapi.json) plus /_sandbox/ controls."""

import asyncio
import contextlib
import copy
import functools
import logging
import math
import pathlib
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import data, listing
from .config import Settings
from .integrations import (
    INTEGRATIONS,
    LIST_URLS,
    RESOURCE_WORDS,
    RESOURCES,
    check_credentials,
    logo_svg,
)
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
FUNCTION_RESOURCES = {fn: res for res, (fn, _) in RESOURCES.items()}
ERROR_KINDS = ("invalid_credentials", "missing_permission")
CONNECTIONS_PAGE = 100  # GET /connections takes only page_token, so the page size is ours
LATE_MAX = 10_000
# /_sandbox/requests keeps the most recent API requests, a few minutes of a busy test.
REQUEST_LOG_SIZE = 50_000
BACKFILL_MAX = 1000
LATE_AGE_MS = 2 * data.DAY_MS  # ingest-late: WMS dates this long before the dataset's anchor


def doc_resource(res: str) -> str:
    """The resource name DOC:connection-issues uses in errors[].resource ("inbound_shipments")."""
    return res.replace("-", "_")


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
        # What the rate limit saw, for tests to check a client's pacing (never part of
        # Trackstar's API): (epoch seconds, method, path, connection_id or None, status).
        self.requests: deque[tuple[float, str, str, str | None, int]] = deque(
            maxlen=REQUEST_LOG_SIZE
        )
        self.faults: dict | None = None
        spec = orjson.loads(SPEC_PATH.read_bytes())
        self.filters = listing.load_filter_specs(spec, WMS_PATHS)
        self.link_script = (HERE / "static" / "link.js").read_bytes()
        self._timers: set[asyncio.TimerHandle] = set()
        self._resume_history()

    # -- timers ------------------------------------------------------------------------------
    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run callback on the event loop after delay seconds (forgotten by a reset)."""
        loop = asyncio.get_running_loop()

        def run() -> None:
            self._timers.discard(handle)
            try:
                callback()
            except Exception:
                log.exception("sandbox timer failed")

        handle = loop.call_later(max(float(delay), 0.0), run)
        self._timers.add(handle)

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def _resume_history(self) -> None:
        # A restarted demo still announces initial syncs that had not finished.
        now = time.time()
        for conn in self.state.connections.values():
            for res, due in conn.ready_at.items():
                if due > now:
                    self._history_webhook(conn, res, due - now)

    async def startup(self) -> None:
        # Open on-demand jobs of a restarted demo still complete.
        now = time.time()
        for job_id, entry in self.state.sync_jobs.items():
            if entry["job"]["status"] == "open":
                self.later(entry["due"] - now, functools.partial(self._finish_job, job_id))

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
                # 401 only for a wrong key or an unknown token: broken WMS credentials never
                # stop reads, Trackstar serves its own copy (API.md §10).
                conn = self.state.connection_for_token(
                    request.headers.get("x-trackstar-access-token")
                )
                if conn is None:
                    return _error(401, "Invalid or missing x-trackstar-access-token.")
            kind = "get" if request.method == "GET" else "write"
            bucket = conn.access_token if conn else "key:" + self.settings.api_key
            limit = self.settings.get_rate if kind == "get" else self.settings.write_rate
            allowed, headers = self.limiter.hit(bucket, kind, limit)
            logged = [time.time(), request.method, request.url.path, conn and conn.connection_id]
            if not allowed:
                self.requests.append((*logged, 429))
                return _error(429, "Rate limit exceeded.", headers)
            try:
                response = await (handler(request, conn) if token else handler(request))
            except HTTPFailure as failure:
                response = failure.response
            if conn is not None:
                conn.last_used = time.time()
                conn.times_used += 1
            self.requests.append((*logged, response.status_code))
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
        now = time.time()
        last_sync = _iso(max(conn.created_at, now - 600))

        def status(res: str) -> str:
            if conn.blocked or conn.denied(res):
                return "error"
            return "enabled" if conn.ready(res, now) else "first_sync_in_progress"

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
                    "in_progress": not conn.ready(r, now),
                    "sync_status": status(r),
                }
                for r in integration.resources
            ],
            "errors": [self._error_json(conn, e) for e in conn.errors],
            # SKILL:trackstar; no schema for it is published.
            "historical_sync_completed": {
                RESOURCES[r][0]: conn.ready(r, now) for r in integration.resources
            },
            "available_actions": integration.available_actions,
            "available_endpoints": integration.available_endpoints,
            "integration_type": "wms",
            "webhooks_disabled": conn.webhooks_disabled,
        }

    # -- connection errors (API.md §10) ------------------------------------------------------
    def _error_message(self, conn: Connection, err: dict) -> str:
        name = INTEGRATIONS[conn.integration_name].display_name
        if err["kind"] == "missing_permission":
            return self._denied_message(conn, err["resource"])
        return f"{name} rejected the stored credentials (401 Unauthorized)."

    @staticmethod
    def _denied_message(conn: Connection, res: str) -> str:
        name = INTEGRATIONS[conn.integration_name].display_name
        return (
            f"The credentials for this {name} connection do not have access to "
            f"{RESOURCE_WORDS[res]}."
        )

    def _affected(self, conn: Connection, err: dict) -> list[dict]:
        # Invalid credentials stop every resource; a missing permission only its own.
        if err["kind"] == "missing_permission":
            resources = [err["resource"]]
        else:
            resources = INTEGRATIONS[conn.integration_name].resources
        return [{"endpoint": LIST_URLS[r], "preventing_sync": True} for r in resources]

    def _error_json(self, conn: Connection, err: dict) -> dict:
        """One errors[] entry in the configured shape: DOC's, the OAS's, or both merged."""
        shape = self.settings.error_shape
        message = self._error_message(conn, err)
        out: dict = {}
        if shape in ("both", "doc"):
            out["error_type"] = err["kind"]
            out["resource"] = doc_resource(err["resource"]) if err["resource"] else None
            out["message"] = message
        if shape in ("both", "oas"):
            out["error_message"] = message
            out["affected_endpoints"] = self._affected(conn, err)
            out["first_seen"] = _iso(err["first_seen"])
            out["last_seen"] = _iso(err["last_seen"])
        return out

    def _error_webhook(self, conn: Connection, err: dict, updated: float) -> dict:
        # Only the fields of the OAS webhook schema (ConnectionErrorSchema): no error_type.
        failed = err["resource"] or "orders"
        return {
            "failed_url": LIST_URLS[failed],
            "affected_endpoints": self._affected(conn, err),
            "integration_name": conn.integration_name,
            "error_message": self._error_message(conn, err),
            "created_date": _iso(err["first_seen"]),
            "updated_date": _iso(updated),
            "last_seen": _iso(err["last_seen"]),
        }

    def _open_error(self, conn: Connection, kind: str, res: str | None) -> None:
        now = time.time()
        err = conn.error(kind, res)
        if err is None:
            err = {"kind": kind, "resource": res, "first_seen": now, "last_seen": now}
            conn.errors.append(err)
            conn.errors_changed()
            self.webhook(conn, "connection-error.created", self._error_webhook(conn, err, now))
        else:
            # Seen again: last_seen moves. The OAS schema of this event requires
            # previous_attributes as a whole ConnectionErrorSchema, so it is the old payload.
            before = self._error_webhook(conn, err, err["last_seen"])
            err["last_seen"] = now
            self.webhook(
                conn,
                "connection-error.updated",
                self._error_webhook(conn, err, now),
                previous_attributes=before,
            )
        self.state.save()

    def _clear_errors(self, conn: Connection, kinds: tuple[str, ...] = ERROR_KINDS) -> None:
        now = time.time()
        cleared = [e for e in conn.errors if e["kind"] in kinds]
        if not cleared:
            return
        conn.errors = [e for e in conn.errors if e["kind"] not in kinds]
        conn.errors_changed()
        ds = self.state.dataset(conn)
        for err in cleared:
            self.webhook(conn, "connection-error.deleted", self._error_webhook(conn, err, now))
            if err["kind"] == "missing_permission":
                # Trackstar newly sees the resource: it gets its own initial sync (DOC on
                # reinstall; reads of it are empty meanwhile), and when that completes every
                # record's trackstar_*_date is that moment (now, with no delay).
                res = err["resource"]
                delay = self.settings.historical_sync_delay
                conn.ready_at[res] = now + delay
                ds.set_floor(res, int(conn.ready_at[res] * 1000))
                self._history_webhook(conn, res, delay)
        self.state.save()

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

    def _connection_created(self, conn: Connection, *, notify: bool = True) -> None:
        if notify:
            # Connections carry the customer_id they were made with, if any (API.md §10;
            # the envelope's customer_id is [INF], as the docs' transformation example).
            extra = {"customer_id": conn.customer_id} if conn.customer_id else {}
            self.webhook(
                conn,
                "connection.created",
                {"created_date": _iso(conn.created_at), "access_token": conn.access_token},
                **extra,
            )
        # Until its initial sync completes a resource reads as empty; its end is signalled
        # per resource (API.md §5, §10).
        delay = self.settings.historical_sync_delay
        for res in INTEGRATIONS[conn.integration_name].resources:
            conn.ready_at[res] = conn.created_at + delay
            self._history_webhook(conn, res, delay)

    def _history_webhook(self, conn: Connection, res: str, delay: float) -> None:
        ds = self.state.dataset(conn)
        payload = {
            "resource": res,
            "oldest_data_date": data.iso(ds.base_created_ms(res, 0)),
            "newest_data_date": data.iso(ds.anchor_ms),
        }
        self._send_later(conn, "connection.historical-sync-completed", payload, delay)

    def _readable(self, conn: Connection, res: str) -> bool:
        """501 if the WMS lacks res, 403 without permission; False while its initial sync
        is still running (the read then returns nothing)."""
        integration = INTEGRATIONS[conn.integration_name]
        if res in integration.missing:
            action = RESOURCES[res][0]
            raise HTTPFailure(
                _error(501, f"Endpoint {action} is not implemented for {integration.display_name}")
            )
        if conn.denied(res):
            raise HTTPFailure(
                _json({"error": self._denied_message(conn, res), "origin": "integration"}, 403)
            )
        return conn.ready(res, time.time())

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
            # Reinstall keeps the id, access token and history and repairs the credentials
            # (API.md §3); a missing permission stays until the WMS grants it (API.md §10).
            self._clear_errors(conn, ("invalid_credentials",))
        else:
            conn = self.state.create_connection(entry["integration_name"], customer_id, {})
            self._connection_created(conn)
        self.state.save()
        return _json(self.exchange_json(conn))

    async def connections_list(self, request: Request) -> Response:
        # The OAS lists only page_token; anything else is a 422 (API.md §10).
        unknown = set(request.query_params) - {"page_token"}
        if unknown:
            raise HTTPFailure(
                _error(
                    422,
                    "Unknown query parameter.",
                    detail={"query": {k: ["Unknown field."] for k in sorted(unknown)}},
                )
            )
        conns = list(self.state.connections.values())
        limit = CONNECTIONS_PAGE
        start = 0
        if request.query_params.get("page_token"):
            try:
                start = int(request.query_params["page_token"].removeprefix("c"))
            except ValueError:
                raise _validation("Invalid page_token.", "query", "page_token", "Bad.") from None
            if start < 0:
                raise _validation("Invalid page_token.", "query", "page_token", "Bad.")
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
        # The docs' example answers the object envelope (API.md §10), not the 2025 OAS's list.
        return _json({"data": self.connection_json(conn)})

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
        elif (
            not isinstance(functions, list)
            or not all(isinstance(f, str) for f in functions)
            or set(functions) - SYNC_FUNCTIONS
        ):
            raise _validation(
                "Invalid functions_to_sync.", "json", "functions_to_sync", "Unknown function."
            )
        functions = list(functions)
        cid = conn.connection_id
        self.later(self.settings.force_sync_delay, lambda: self._force_sync_done(cid, functions))
        return _json({"id": conn.connection_id, "syncing": True, "functions_to_sync": functions})

    def _force_sync_done(self, connection_id: str, functions: list[str]) -> None:
        """Trackstar pulled from the WMS: pending WMS-only changes of these functions land,
        unless the credentials are broken; then connection.force-sync-completed."""
        conn = self.state.connections.get(connection_id)
        if conn is None:
            return
        if not conn.blocked:
            resources = INTEGRATIONS[conn.integration_name].resources
            for fn in dict.fromkeys(functions):
                res = FUNCTION_RESOURCES.get(fn)
                if res in resources and not conn.denied(res):
                    self._apply_pending(conn, res)
        # The payload is undocumented (SKILL names the event only): an inference.
        self.webhook(
            conn,
            "connection.force-sync-completed",
            {"functions_to_sync": functions, "completed_date": _iso(time.time())},
        )
        self.state.save()

    def _apply_pending(self, conn: Connection, res: str) -> None:
        ds = self.state.dataset(conn)
        pending = ds.pending.pop(res, None)
        if not pending:
            return
        event = RESOURCES[res][1]
        for i in pending["updates"]:
            if i >= ds.total(res):
                continue
            old = ds.record(res, i)
            ds.touch(res, i)
            new = ds.record(res, i)
            self.webhook(
                conn,
                f"{event}.updated",
                new,
                previous_attributes=data.previous_attributes(old, new),
            )
        for _ in range(pending["creates"]):
            self.webhook(conn, f"{event}.created", ds.record(res, ds.append(res)))

    # -- on-demand syncs (DOC:on-demand-syncs.mdx) -------------------------------------------
    def _job(self, request: Request, conn: Connection) -> dict:
        job_id = request.path_params["job_id"]
        entry = self.state.sync_jobs.get(job_id)
        if entry is None or entry["job"]["connection_id"] != conn.connection_id:
            raise HTTPFailure(_error(404, "Sync job not found.", id=job_id))
        return entry["job"]

    async def on_demand_create(self, request: Request, conn: Connection) -> Response:
        body = await _body(request)
        problems: dict[str, list[str]] = {}
        for key in sorted(set(body) - {"start_time", "end_time", "function_name"}):
            problems[key] = ["Unknown field."]
        times: dict[str, int] = {}
        for key in ("start_time", "end_time"):
            value = body.get(key)
            if value is None:
                problems[key] = ["Missing data for required field."]
                continue
            try:
                if not isinstance(value, str):
                    raise ValueError
                times[key] = listing.parse_date_ms(value)
            except ValueError:
                problems[key] = ["Not an ISO 8601 date-time with a timezone."]
        if len(times) == 2 and times["start_time"] >= times["end_time"]:
            problems["end_time"] = ["Must be after start_time."]
        function = body.get("function_name")
        if function is None:
            problems["function_name"] = ["Missing data for required field."]
        elif not isinstance(function, str) or function not in SYNC_FUNCTIONS:
            problems["function_name"] = [f"Must be one of: {', '.join(sorted(SYNC_FUNCTIONS))}."]
        if problems:
            raise HTTPFailure(_error(422, "Invalid on-demand sync.", detail={"json": problems}))
        if function not in INTEGRATIONS[conn.integration_name].on_demand:
            raise HTTPFailure(
                _error(400, f"On-demand sync is not enabled for {conn.integration_name} {function}")
            )
        now = time.time()
        job = {
            "id": "job_" + secrets.token_hex(12),
            "connection_id": conn.connection_id,
            "function_name": function,
            "status": "open",
            "requested_start_time": data.iso(times["start_time"]),
            "requested_end_time": data.iso(times["end_time"]),
            "created_at": _iso(now),
        }
        delay = self.settings.on_demand_sync_delay
        self.state.sync_jobs[job["id"]] = {"job": job, "due": now + delay}
        self.state.save()
        job_id = job["id"]
        self.later(delay, lambda: self._finish_job(job_id))
        return _json({"data": job})

    async def on_demand_get(self, request: Request, conn: Connection) -> Response:
        return _json({"data": self._job(request, conn)})

    async def on_demand_cancel(self, request: Request, conn: Connection) -> Response:
        job = self._job(request, conn)
        if job["status"] != "open":
            raise HTTPFailure(_error(400, "Only open sync jobs can be cancelled."))
        job["status"] = "cancelled"
        self.state.save()
        return _json({"data": job})

    def _finish_job(self, job_id: str) -> None:
        """Backfill one record per day of the window (1 to BACKFILL_MAX), WMS dates inside it,
        Trackstar dates now; no per-record webhooks; then connection.sync-job-completed."""
        entry = self.state.sync_jobs.get(job_id)
        if entry is None or entry["job"]["status"] != "open":
            return
        job = entry["job"]
        conn = self.state.connections.get(job["connection_id"])
        if conn is None:
            return
        res = FUNCTION_RESOURCES[job["function_name"]]
        start = listing.parse_date_ms(job["requested_start_time"])
        end = listing.parse_date_ms(job["requested_end_time"])
        n = max(1, min(BACKFILL_MAX, (end - start) // data.DAY_MS))
        step = (end - start) / n
        ds = self.state.dataset(conn)
        stamp = data.now_ms()
        for k in range(n):
            ds.append_at(res, int(start + k * step), int(start + (k + 0.5) * step), stamp)
        job["status"] = "completed"
        # The payload is undocumented (SKILL names the event only): we send the job.
        self.webhook(conn, "connection.sync-job-completed", dict(job))
        self.state.save()

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
            ready = self._readable(conn, res)
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
            if not ready:
                # Nothing in Trackstar's copy until the initial sync completes (API.md §10).
                return _json({"data": [], "next_token": None, "total_count": 0})
            return _json(listing.list_page(ds, res, query, scope))

        return handler

    def wms_get(self, res: str, param: str):
        async def handler(request: Request, conn: Connection) -> Response:
            ready = self._readable(conn, res)
            ds = self.state.dataset(conn)
            record_id = request.path_params[param]
            i = ds.parse_id(res, record_id) if ready else None
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
            "errors": [
                {
                    "kind": e["kind"],
                    "resource": doc_resource(e["resource"]) if e["resource"] else None,
                    "first_seen": _iso(e["first_seen"]),
                    "last_seen": _iso(e["last_seen"]),
                }
                for e in conn.errors
            ],
            "webhooks_disabled": conn.webhooks_disabled,
            "counts": {r: ds.total(r) for r in RESOURCES},
            "mutated": {r: len(m) for r, m in ds.mut.items() if m},
            "pending": {
                r: {"updates": len(p["updates"]), "creates": p["creates"]}
                for r, p in ds.pending.items()
                if p["updates"] or p["creates"]
            },
            "historical_sync_completed": {
                RESOURCES[r][0]: conn.ready(r, time.time())
                for r in INTEGRATIONS[conn.integration_name].resources
            },
            "anchor": data.iso(ds.anchor_ms),
            "created_at": _iso(conn.created_at),
        }

    async def dashboard_connection(self, request: Request) -> Response:
        """What staff do in Trackstar's dashboard ("Add Connection") or what a Trackstar
        magic link does: a connection made without Dockside. It sends connection.created
        (with its access token) unless `"webhook": false` (a missed delivery)."""
        body = await _body(request, control=True)
        name = body.get("integration_name") or "sandbox"
        if name not in INTEGRATIONS:
            return _json({"error": f"Unknown integration {name!r}."}, 400)
        customer_id = body.get("customer_id")
        if customer_id is not None and not isinstance(customer_id, str):
            return _json({"error": "customer_id must be a string."}, 400)
        notify = body.get("webhook", True)
        if not isinstance(notify, bool):
            return _json({"error": "webhook must be true or false."}, 400)
        conn = self.state.create_connection(name, customer_id or None, {})
        self._connection_created(conn, notify=notify)
        self.state.save()
        return _json(self.exchange_json(conn))

    async def sandbox_connection(self, request: Request) -> Response:
        return _json(self._sandbox_view(self._control_connection(request)))

    @staticmethod
    def _resource_arg(value: object) -> str | None:
        """Our resource name from a control body's "resource" (hyphens or underscores)."""
        if not isinstance(value, str):
            return None
        res = RESOURCE_ALIASES.get(value, value)
        return res if res in RESOURCES else None

    async def break_connection(self, request: Request) -> Response:
        conn = self._control_connection(request)
        body = await _body(request, control=True)
        kind = body.get("kind") or "invalid_credentials"
        if kind not in ERROR_KINDS:
            return _json({"error": f"kind must be one of {list(ERROR_KINDS)}."}, 400)
        res = None
        if kind == "missing_permission":
            resources = INTEGRATIONS[conn.integration_name].resources
            res = self._resource_arg(body.get("resource"))
            if res not in resources:
                return _json(
                    {
                        "error": f"missing_permission needs a resource of this connection, "
                        f"one of {[doc_resource(r) for r in resources]}; "
                        f"got {body.get('resource')!r}."
                    },
                    400,
                )
        elif body.get("resource") is not None:
            return _json({"error": "resource goes with kind missing_permission only."}, 400)
        self._open_error(conn, kind, res)
        return _json(self._sandbox_view(conn))

    async def repair_connection(self, request: Request) -> Response:
        conn = self._control_connection(request)
        self._clear_errors(conn)
        return _json(self._sandbox_view(conn))

    @staticmethod
    def _count_arg(body: dict, key: str, default: int, low: int = 0, high: int | None = None):
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise HTTPFailure(_json({"error": f"{key} must be an integer >= {low}."}, 400))
        if high is not None and value > high:
            raise HTTPFailure(_json({"error": f"{key} must be at most {high}."}, 400))
        return value

    async def mutate(self, request: Request) -> Response:
        conn = self._control_connection(request)
        body = await _body(request, control=True)
        res = self._resource_arg(body.get("resource"))
        if res is None:
            return _json({"error": f"Unknown resource {body.get('resource')!r}."}, 400)
        in_wms_only = body.get("in_wms_only", False)
        if not isinstance(in_wms_only, bool):
            return _json({"error": "in_wms_only must be true or false."}, 400)
        count = self._count_arg(body, "count", 1)
        create = self._count_arg(body, "create", 0)
        ds = self.state.dataset(conn)
        event = RESOURCES[res][1]
        indices: list[int] = []
        if body.get("ids"):
            if not isinstance(body["ids"], list):
                return _json({"error": "ids must be a list."}, 400)
            for x in body["ids"]:
                i = ds.parse_id(res, x) if isinstance(x, str) else None
                if i is None:
                    return _json({"error": "Unknown id in ids."}, 400)
                indices.append(i)
        else:
            total = ds.total(res)
            indices = random.sample(range(total), min(count, total))
        indices = sorted(set(indices))
        if in_wms_only:
            # Held in the WMS: Trackstar's copy, reads and webhooks see nothing until a force
            # sync covering res applies them (API.md §10).
            pending = ds.pending.setdefault(res, {"updates": [], "creates": 0})
            held = set(pending["updates"])
            pending["updates"] += [i for i in indices if i not in held]
            pending["creates"] += create
            self.state.save()
            return _json(
                {
                    "resource": res,
                    "updated_ids": [ds.make_id(res, i) for i in indices],
                    "created_ids": [],
                    "pending": True,
                }
            )
        updated = []
        for i in indices:
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
        for _ in range(create):
            i = ds.append(res)
            new = ds.record(res, i)
            created.append(new["id"])
            self.webhook(conn, f"{event}.created", new)
        self.state.save()
        return _json(
            {"resource": res, "updated_ids": updated, "created_ids": created, "pending": False}
        )

    async def ingest_late(self, request: Request) -> Response:
        """Records Trackstar only now sees although the WMS dates them long ago: old
        created/updated_date, new trackstar_* dates, no webhooks (API.md §10)."""
        conn = self._control_connection(request)
        body = await _body(request, control=True)
        res = self._resource_arg(body.get("resource"))
        if res is None or res not in INTEGRATIONS[conn.integration_name].resources:
            return _json({"error": f"Unknown resource {body.get('resource')!r}."}, 400)
        if "count" not in body:
            return _json({"error": "count is required."}, 400)
        count = self._count_arg(body, "count", 1, low=1, high=LATE_MAX)
        ds = self.state.dataset(conn)
        stamp = data.now_ms()
        old = ds.anchor_ms - LATE_AGE_MS
        ids = []
        for k in range(count):
            # One ms apart, the newest still LATE_AGE_MS before the anchor.
            updated = old - (count - 1 - k)
            i = ds.append_at(res, updated - data.DAY_MS, updated, stamp)
            ids.append(ds.make_id(res, i))
        self.state.save()
        return _json({"resource": res, "ids": ids})

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
                problem = Settings.check(key, value)
                if problem:
                    return _json({"error": problem}, 400)
            for key, value in body.items():
                setattr(self.settings, key, value)
        # Never the API key itself (DESIGN.md §9), only whether one is set.
        return _json(self.settings.public())

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        # Back to the startup configuration too, so one test's knobs never leak into the next.
        for name in Settings.TUNABLE:
            setattr(self.settings, name, copy.deepcopy(getattr(self.initial_settings, name)))
        self.faults = None
        self.limiter.windows.clear()
        self.requests.clear()
        self._cancel_timers()
        self.sender.clear()
        return _json({"reset": True})

    async def health(self, request: Request) -> Response:
        return _json({"ok": True})

    async def webhook_log(self, request: Request) -> Response:
        return _json({"deliveries": self.sender.log})

    async def request_log(self, request: Request) -> Response:
        connection_id = request.query_params.get("connection_id")
        return _json(
            {
                "requests": [
                    {"at": at, "method": method, "path": path, "connection_id": cid, "status": st}
                    for at, method, path, cid, st in self.requests
                    if connection_id is None or cid == connection_id
                ]
            }
        )

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
            # Before /connections/{connection_id}, which would swallow them.
            Route(
                "/connections/on-demand-syncs",
                api(self.on_demand_create, token=True),
                methods=["POST"],
            ),
            Route(
                "/connections/on-demand-syncs/{job_id}",
                api(self.on_demand_get, token=True),
                methods=["GET"],
            ),
            Route(
                "/connections/on-demand-syncs/{job_id}/cancel",
                api(self.on_demand_cancel, token=True),
                methods=["POST"],
            ),
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
            # link.trackstarhq.com/main.js: the script at the root of its own host (API.md §10).
            Route("/main.js", self.link_js, methods=["GET"]),
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
                control(self.repair_connection),
                methods=["POST"],
            ),
            Route(
                "/_sandbox/connections/{connection_id}/ingest-late",
                control(self.ingest_late),
                methods=["POST"],
            ),
            Route(
                "/_sandbox/connections/{connection_id}/mutate",
                control(self.mutate),
                methods=["POST"],
            ),
            Route("/_sandbox/connections", control(self.dashboard_connection), methods=["POST"]),
            Route("/_sandbox/dataset", control(self.dataset), methods=["POST"]),
            Route("/_sandbox/config", control(self.config), methods=["GET", "POST"]),
            Route("/_sandbox/reset", control(self.reset), methods=["POST"]),
            Route("/_sandbox/webhooks", control(self.webhook_log), methods=["GET"]),
            Route("/_sandbox/requests", control(self.request_log), methods=["GET"]),
        ]
        return routes


LINK_CORS_PATHS = frozenset(
    {"/main.js", "/link/main.js", "/_sandbox/link/integrations", "/_sandbox/link/authorize"}
)


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
        # CORS only for what the Link modal calls from the embedding page (the script, its
        # integrations list, authorize, the logos). The other /_sandbox/ controls (faults,
        # break, config, reset, …) answer no cross-origin caller: a page on another origin
        # must not be able to drive them from a developer's browser.
        cors = path in LINK_CORS_PATHS or path.startswith("/_sandbox/logos/")
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

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await sandbox.startup()
        yield

    app = Starlette(
        routes=sandbox.routes(),
        exception_handlers={404: _not_found, 405: _not_found},
        lifespan=lifespan,
    )
    app.state.sandbox = sandbox
    return Envelope(app)
