"""HTTP client for the Trackstar API (https://docs.trackstarhq.com).

Plain Python on purpose: no Django here, so it can be used from tasks, the shell and tests
alike. It never retries; callers (Celery tasks) decide what to retry from the error type.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import orjson
import requests

from connections.trackstar.errors import (
    TrackstarAuthError,
    TrackstarBadRequest,
    TrackstarError,
    TrackstarForbidden,
    TrackstarNotFound,
    TrackstarNotImplemented,
    TrackstarPaginationError,
    TrackstarRateLimited,
    TrackstarUnavailable,
    TrackstarValidationError,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 30.0)

# List endpoints of the WMS resources we sync (API.md §6).
RESOURCES: Mapping[str, str] = MappingProxyType(
    {
        "warehouses": "/wms/warehouses",
        "warehouse_customers": "/wms/warehouse-customers",
        "inventory": "/wms/inventory",
        "products": "/wms/products",
        "orders": "/wms/orders",
        "inbound_shipments": "/wms/inbound-shipments",
        "returns": "/wms/returns",
        "shipping_methods": "/wms/shipping-methods",
        "bills": "/wms/billing",
    }
)

# Resource -> the action name used in `available_actions` and `functions_to_sync`
# (openapi.json, ConnectionResourceSyncSchema enum).
RESOURCE_ACTIONS: Mapping[str, str] = MappingProxyType(
    {
        "warehouses": "get_warehouses",
        "warehouse_customers": "get_warehouse_customers",
        "inventory": "get_inventory",
        "products": "get_products",
        "orders": "get_orders",
        "inbound_shipments": "get_inbound_shipments",
        "returns": "get_returns",
        "shipping_methods": "get_shipping_methods",
        "bills": "get_bills",
    }
)

# The full functions_to_sync enum of POST /connections/sync (openapi.json).
SYNC_FUNCTIONS: frozenset[str] = frozenset(
    {
        *RESOURCE_ACTIONS.values(),
        "get_warehouse_locations",
        "get_inventory_ledger",
        "get_shipments",
    }
)

_ACTION_RESOURCES: Mapping[str, str] = MappingProxyType(
    {action: resource for resource, action in RESOURCE_ACTIONS.items()}
)


def resource_named(value: Any) -> str | None:
    """Our resource name for the ways Trackstar's payloads name one: "orders",
    "inbound-shipments", "inbound_shipments" or "get_inbound_shipments"; None otherwise."""
    if not isinstance(value, str) or not value:
        return None
    name = value.strip().replace("-", "_")
    return name if name in RESOURCES else _ACTION_RESOURCES.get(name)


INTEGRATION_TYPES: frozenset[str] = frozenset({"wms", "freight", "cart"})

# Filter operators (API.md §5). The `-insensitive` variants appear in openapi.json for
# order_number and reference_id on /wms/orders.
FILTER_OPERATORS: frozenset[str] = frozenset(
    {
        "eq",
        "neq",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "nin",
        "contains",
        "not_contains",
        "eq-insensitive",
        "in-insensitive",
        "contains-insensitive",
    }
)

MAX_LIMIT = 1000  # Trackstar's default and maximum page size (API.md §5).
MAX_LIST_VALUES = 100  # a longer comma list is a 422 (API.md §5)
_RESERVED_PARAMS = frozenset({"limit", "page_token"})
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class ExchangeResult:
    access_token: str = field(repr=False)
    connection_id: str
    integration_name: str
    customer_id: str | None
    available_actions: list[str]


@dataclass
class Page:
    records: list[dict[str, Any]]
    next_token: str | None
    total_count: int | None
    page_number: int


def encode_filters(filters: Mapping[str, Any] | None) -> dict[str, str]:
    """Turn `{"updated_date": {"gte": dt}, "status": "open"}` into Trackstar query params.

    A plain value means `field=value`; a mapping means `field[op]=value` for each operator.
    """
    params: dict[str, str] = {}
    for name, value in (filters or {}).items():
        if not isinstance(name, str) or not name or "[" in name or "]" in name:
            raise ValueError(f"Invalid filter field name: {name!r}")
        if name in _RESERVED_PARAMS:
            raise ValueError(f"{name!r} is set by the client, not as a filter")
        if isinstance(value, Mapping):
            if not value:
                raise ValueError(f"Filter {name!r} has no operators")
            for operator, operand in value.items():
                if operator not in FILTER_OPERATORS:
                    raise ValueError(f"Unknown filter operator {operator!r} for {name!r}")
                params[f"{name}[{operator}]"] = _encode_value(name, operand)
        else:
            params[name] = _encode_value(name, value)
    return params


def _encode_value(name: str, value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else list(value)
        if not items:
            raise ValueError(f"Filter {name!r} has an empty list")
        if len(items) > MAX_LIST_VALUES:
            raise ValueError(f"Filter {name!r} has more than {MAX_LIST_VALUES} values")
        encoded = [_encode_scalar(name, item) for item in items]
        if any("," in item for item in encoded):
            raise ValueError(f"Filter {name!r} has a list value containing a comma")
        return ",".join(encoded)
    return _encode_scalar(name, value)


def _encode_scalar(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"Filter {name!r} has a naive datetime; pass an aware one")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str | int | float | Decimal):
        return str(value)
    raise ValueError(f"Filter {name!r} has an unsupported value type {type(value).__name__}")


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float:
    """Seconds to wait after a 429: `retry-after` (seconds or HTTP-date, RFC 9110 §10.2.3),
    else `x-ratelimit-reset` (epoch seconds, API.md §7), else 1 second."""
    now = time.time() if now is None else now
    retry_after = headers.get("retry-after")
    if retry_after:
        seconds = _finite_float(retry_after)
        if seconds is not None:
            return max(seconds, 0.0)
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:  # RFC 9110 HTTP-dates are always GMT
                when = when.replace(tzinfo=UTC)
            return max(when.timestamp() - now, 0.0)
    reset = _finite_float(headers.get("x-ratelimit-reset") or "")
    if reset is not None:
        # Documented as epoch seconds; a small number can only be a delta, so read it as one.
        return max(reset - now, 0.0) if reset > 1e9 else max(reset, 0.0)
    return 1.0


def _finite_float(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _redact(value: Any, secrets: Iterable[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, _REDACTED)
        return value
    if isinstance(value, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    return value


class TrackstarClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        max_pages: int = 100_000,
        session: requests.Session | None = None,
        user_agent: str = "Dockside/1.0",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if not api_key:
            raise ValueError("api_key is required")
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_pages = max_pages
        self.user_agent = user_agent
        self._api_key = api_key
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()

    def __repr__(self) -> str:
        return f"<TrackstarClient base_url={self.base_url!r}>"

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> TrackstarClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Link and connections (API.md §3, §4) ---------------------------------------------

    def create_link_token(
        self, *, customer_id: str | None = None, connection_id: str | None = None
    ) -> str:
        body: dict[str, str] = {}
        if customer_id is not None:
            body["customer_id"] = customer_id
        if connection_id is not None:
            body["connection_id"] = connection_id
        data = self._request("POST", "/link/token", json=body)
        return self._require_str(data, "link_token", "POST", "/link/token")

    def exchange_auth_code(
        self, *, auth_code: str, customer_id: str | None = None
    ) -> ExchangeResult:
        body: dict[str, str] = {"auth_code": auth_code}
        if customer_id is not None:
            body["customer_id"] = customer_id
        path = "/link/exchange"
        data = self._request("POST", path, json=body, extra_secrets=(auth_code,))
        access_token = self._require_str(data, "access_token", "POST", path)
        actions = data.get("available_actions") or []
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise TrackstarError(
                "Trackstar returned malformed available_actions", method="POST", path=path
            )
        customer = data.get("customer_id")
        return ExchangeResult(
            access_token=access_token,
            connection_id=self._require_str(data, "connection_id", "POST", path),
            integration_name=self._require_str(data, "integration_name", "POST", path),
            customer_id=customer if isinstance(customer, str) else None,
            available_actions=list(actions),
        )

    def list_connections(self, *, customer_id: str | None = None) -> Iterator[dict[str, Any]]:
        # GET /connections takes only page_token (openapi.json; any other parameter is a
        # 422, API.md §10), so a customer's connections are picked out here.
        for page in self._paginate("/connections", params={}, access_token=None):
            for connection in page.records:
                if customer_id is None or connection.get("customer_id") == customer_id:
                    yield connection

    def get_connection(self, connection_id: str) -> dict[str, Any]:
        path = f"/connections/{_segment(connection_id)}"
        data = self._request("GET", path).get("data")
        # openapi.json gives this endpoint the list envelope; the object envelope is what
        # a single-object endpoint normally returns (API.md §4, open question 4).
        # An empty list is not Trackstar's 404 (which names the id): it is not taken as
        # "this connection was deleted", a decision that erases the connection's token.
        candidates = data if isinstance(data, list) else [data]
        # Never hand back some other connection than the one asked for.
        matches = [
            c
            for c in candidates
            if isinstance(c, dict) and c.get("connection_id", connection_id) == connection_id
        ]
        if len(matches) != 1:
            raise TrackstarError(
                "Trackstar returned a malformed connection", method="GET", path=path
            )
        return matches[0]

    def update_connection(
        self,
        *,
        access_token: str,
        customer_id: str | None = None,
        webhooks_disabled: bool | None = None,
    ) -> dict[str, Any]:
        """PATCH /connections acts on the token's own connection and answers with its id,
        which makes it the way to learn which connection an access token belongs to."""
        body: dict[str, Any] = {}
        if customer_id is not None:
            body["customer_id"] = customer_id
        if webhooks_disabled is not None:
            body["webhooks_disabled"] = webhooks_disabled
        return self._request("PATCH", "/connections", access_token=access_token, json=body)

    def delete_connection(self, *, access_token: str) -> dict[str, Any]:
        return self._request("DELETE", "/connections", access_token=access_token)

    def force_sync(
        self, *, access_token: str, functions: list[str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, list[str]] = {}
        if functions is not None:
            unknown = sorted(set(functions) - SYNC_FUNCTIONS)
            if unknown:
                raise ValueError(f"Unknown sync functions: {', '.join(unknown)}")
            body["functions_to_sync"] = list(functions)
        return self._request("POST", "/connections/sync", access_token=access_token, json=body)

    # -- On-demand syncs (API.md §4; DOC:on-demand-syncs.mdx) -------------------------------

    def create_on_demand_sync(
        self, *, access_token: str, function_name: str, start_time: datetime, end_time: datetime
    ) -> dict[str, Any]:
        """Backfill one function over [start_time, end_time]. Trackstar answers 400
        ("On-demand sync is not enabled for …") for a pair it does not support."""
        if function_name not in SYNC_FUNCTIONS:
            raise ValueError(f"Unknown sync function {function_name!r}")
        body = {
            "function_name": function_name,
            "start_time": _encode_scalar("start_time", start_time),
            "end_time": _encode_scalar("end_time", end_time),
        }
        path = "/connections/on-demand-syncs"
        return _job(self._request("POST", path, access_token=access_token, json=body), path)

    def get_on_demand_sync(self, job_id: str, *, access_token: str) -> dict[str, Any]:
        path = f"/connections/on-demand-syncs/{_segment(job_id)}"
        return _job(self._request("GET", path, access_token=access_token), path)

    def cancel_on_demand_sync(self, job_id: str, *, access_token: str) -> dict[str, Any]:
        path = f"/connections/on-demand-syncs/{_segment(job_id)}/cancel"
        return _job(self._request("POST", path, access_token=access_token), path)

    def list_integrations(self, integration_type: str = "wms") -> list[dict[str, Any]]:
        if integration_type not in INTEGRATION_TYPES:
            raise ValueError(f"Unknown integration type {integration_type!r}")
        path = f"/integrations/{integration_type}"
        data = self._request("GET", path).get("data")
        if not isinstance(data, list):
            raise TrackstarError("Trackstar returned a malformed response", method="GET", path=path)
        return data

    # -- WMS data (API.md §5, §6) ---------------------------------------------------------

    def iter_pages(
        self,
        resource: str,
        *,
        access_token: str,
        filters: Mapping[str, Any] | None = None,
        limit: int = MAX_LIMIT,
        page_token: str | None = None,
    ) -> Generator[Page, None, None]:
        """Yield every page of a resource. Every page repeats the filters and the limit,
        as Trackstar requires (API.md §5). `page_token` starts at that page (a `next_token`
        from an earlier iteration with the same filters), so a caller can resume."""
        path = _resource_path(resource)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        # Validate now, not on the first next(), so a bad filter fails where it is written.
        params = {**encode_filters(filters), "limit": str(limit)}
        return self._paginate(path, params=params, access_token=access_token, page_token=page_token)

    def iter_records(
        self,
        resource: str,
        *,
        access_token: str,
        filters: Mapping[str, Any] | None = None,
        limit: int = MAX_LIMIT,
    ) -> Iterator[dict[str, Any]]:
        pages = self.iter_pages(resource, access_token=access_token, filters=filters, limit=limit)
        return (record for page in pages for record in page.records)

    def get_record(self, resource: str, record_id: str, *, access_token: str) -> dict[str, Any]:
        path = f"{_resource_path(resource)}/{_segment(record_id)}"
        data = self._request("GET", path, access_token=access_token).get("data")
        if not isinstance(data, dict):
            raise TrackstarError("Trackstar returned a malformed record", method="GET", path=path)
        return data

    # -- Plumbing -------------------------------------------------------------------------

    def _paginate(
        self,
        path: str,
        *,
        params: Mapping[str, str],
        access_token: str | None,
        page_token: str | None = None,
    ) -> Generator[Page, None, None]:
        seen_tokens: set[str] = {page_token} if page_token else set()
        page_number = 0
        while True:
            if page_number >= self.max_pages:
                raise TrackstarPaginationError(
                    f"Stopped after {self.max_pages} pages", method="GET", path=path
                )
            query = dict(params)
            if page_token is not None:
                query["page_token"] = page_token
            body = self._request("GET", path, access_token=access_token, params=query)
            page_number += 1
            records = body.get("data")
            if not isinstance(records, list):
                raise TrackstarError("Trackstar returned a malformed page", method="GET", path=path)
            next_token = body.get("next_token") or None
            total_count = body.get("total_count")
            yield Page(
                records=records,
                next_token=next_token,
                total_count=total_count if isinstance(total_count, int) else None,
                page_number=page_number,
            )
            if next_token is None:
                return
            if next_token in seen_tokens:
                raise TrackstarPaginationError(
                    f"Trackstar repeated a page token after page {page_number}",
                    method="GET",
                    path=path,
                )
            seen_tokens.add(next_token)
            page_token = next_token

    def _request(
        self,
        method: str,
        path: str,
        *,
        access_token: str | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        extra_secrets: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Send one request; return the JSON object or raise a TrackstarError subclass."""
        headers = {
            "x-trackstar-api-key": self._api_key,
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }
        if access_token is not None:
            if not access_token:
                raise ValueError("access_token must not be empty")
            headers["x-trackstar-access-token"] = access_token
        secrets = [s for s in (self._api_key, access_token, *extra_secrets) if s]
        started = time.monotonic()
        try:
            response = self._session.request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                headers=headers,
                timeout=self.timeout,
                # A redirect would carry the API key header to wherever it points.
                allow_redirects=False,
            )
        except requests.Timeout as e:
            self._log(method, path, None, started, None, failure=type(e).__name__)
            raise TrackstarUnavailable(
                "Trackstar did not answer in time", method=method, path=path
            ) from e
        except requests.ConnectionError as e:
            self._log(method, path, None, started, None, failure=type(e).__name__)
            raise TrackstarUnavailable(
                "Could not connect to Trackstar", method=method, path=path
            ) from e
        except requests.RequestException as e:
            self._log(method, path, None, started, None, failure=type(e).__name__)
            # Not chained: e.g. InvalidHeader quotes the header value, which may be a secret.
            message = f"Trackstar request failed ({type(e).__name__})"
            raise TrackstarError(message, method=method, path=path) from None

        request_id = response.headers.get("x-request-id")
        self._log(method, path, response.status_code, started, request_id)
        try:
            # orjson: a 1000-order page is ~1.5 MB; the stdlib parser was a good share of a
            # sync worker's CPU per record (BENCHMARKS.md).
            body = orjson.loads(response.content)
        except ValueError as e:  # orjson.JSONDecodeError is a ValueError
            body = None
            decode_error: ValueError | None = e
        else:
            decode_error = None

        status = response.status_code
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise TrackstarError(
                    "Trackstar returned a response that is not a JSON object",
                    status_code=status,
                    request_id=request_id,
                    method=method,
                    path=path,
                ) from decode_error
            return body
        raise self._error_for(response, body, secrets, request_id, method, path)

    def _error_for(
        self,
        response: requests.Response,
        body: Any,
        secrets: list[str],
        request_id: str | None,
        method: str,
        path: str,
    ) -> TrackstarError:
        status = response.status_code
        body = _redact(body, secrets) if isinstance(body, dict) else {}
        message = body.get("error") if isinstance(body.get("error"), str) else None
        origin = body.get("origin") if isinstance(body.get("origin"), str) else None
        common: dict[str, Any] = {
            "status_code": status,
            "origin": origin,
            "request_id": request_id,
            "method": method,
            "path": path,
        }
        if status == 401:
            return TrackstarAuthError(message, **common)
        if status == 403:
            return TrackstarForbidden(message, **common)
        if status == 404:
            object_id = body.get("id") if isinstance(body.get("id"), str) else None
            return TrackstarNotFound(message, object_id=object_id, **common)
        if status == 422:
            return TrackstarValidationError(message, detail=body.get("detail"), **common)
        if status == 429:
            retry_after = parse_retry_after(response.headers)
            return TrackstarRateLimited(message, retry_after=retry_after, **common)
        if status == 501:
            return TrackstarNotImplemented(message, **common)
        if status >= 500:
            return TrackstarUnavailable(message, **common)
        if 400 <= status < 500:
            return TrackstarBadRequest(message, **common)
        # 1xx/3xx: redirects are not followed (see _request), so they end up here.
        return TrackstarError(message or f"Unexpected HTTP {status} from Trackstar", **common)

    @staticmethod
    def _require_str(data: Mapping[str, Any], key: str, method: str, path: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise TrackstarError(f"Trackstar response is missing {key}", method=method, path=path)
        return value

    @staticmethod
    def _log(
        method: str,
        path: str,
        status: int | None,
        started: float,
        request_id: str | None,
        *,
        failure: str | None = None,
    ) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug(
            "trackstar %s %s -> %s in %.0f ms (request id %s)",
            method,
            path,
            status if failure is None else failure,
            elapsed_ms,
            request_id,
            extra={
                "trackstar_method": method,
                "trackstar_path": path,
                "trackstar_status": status,
                "trackstar_elapsed_ms": round(elapsed_ms),
                "trackstar_request_id": request_id,
            },
        )


def _job(body: dict[str, Any], path: str) -> dict[str, Any]:
    """An on-demand sync job, bare or in the `{data: {...}}` envelope (the docs show
    neither; accept both)."""
    data = body.get("data")
    job: dict[str, Any] = data if isinstance(data, dict) else body
    if not isinstance(job.get("id"), str) or not job["id"]:
        raise TrackstarError("Trackstar returned a malformed sync job", path=path)
    return job


def _resource_path(resource: str) -> str:
    try:
        return RESOURCES[resource]
    except KeyError:
        raise ValueError(
            f"Unknown Trackstar resource {resource!r}; expected one of {', '.join(RESOURCES)}"
        ) from None


def _segment(value: str) -> str:
    """Quote an id for use as one path segment, so an id cannot change the path."""
    if not value:
        raise ValueError("id must not be empty")
    return quote(value, safe="")
