"""Validate sandbox responses against the matching response schema in openapi.json."""

import functools
import re
from pathlib import Path

import orjson
from openapi_schema_validator import OAS30Validator

SPEC_PATH = Path(__file__).resolve().parents[2] / "sandbox" / "spec" / "openapi.json"


@functools.cache
def spec() -> dict:
    return _with_2026_fields(orjson.loads(SPEC_PATH.read_bytes()))


_DATE_TIME = {"type": "string", "format": "date-time"}


def _with_2026_fields(raw: dict) -> dict:
    """The 2025 OAS forbids additional properties everywhere, but Trackstar's 2026 docs add
    fields the sandbox must serve (API.md §4, §5, §10). Relax the schemas for exactly those
    documented fields, and nothing else:
    - trackstar_created_date / trackstar_updated_date on every record (SKILL:trackstar);
    - DOC:connection-issues' error_type / resource / message beside the OAS fields of an
      errors[] entry;
    - historical_sync_completed (function -> bool) on a connection (SKILL:trackstar);
    - GET /connections/{connection_id} answers the docs' object envelope {data: Connection},
      not the 2025 OAS's list envelope."""
    schemas = raw["components"]["schemas"]
    for schema in schemas.values():
        props = schema.get("properties")
        if isinstance(props, dict) and {"id", "created_date", "updated_date"} <= set(props):
            props.setdefault("trackstar_created_date", _DATE_TIME)
            props.setdefault("trackstar_updated_date", _DATE_TIME)
    schemas["ConnectionError"]["properties"].update(
        {
            "error_type": {"type": "string", "enum": ["invalid_credentials", "missing_permission"]},
            "resource": {"type": "string", "nullable": True},
            "message": {"type": "string"},
        }
    )
    schemas["Connection"]["properties"]["historical_sync_completed"] = {
        "type": "object",
        "additionalProperties": {"type": "boolean"},
    }
    one = raw["paths"]["/connections/{connection_id}"]["get"]["responses"]["200"]
    one["content"]["application/json"]["schema"] = {
        "type": "object",
        "properties": {"data": {"$ref": "#/components/schemas/Connection"}},
        "required": ["data"],
        "additionalProperties": False,
    }
    return raw


def response_schema(method: str, path: str, status: int) -> dict:
    responses = spec()["paths"][path][method.lower()]["responses"]
    response = responses.get(str(status)) or responses.get("default")
    assert response is not None, f"openapi.json defines no {status} for {method} {path}"
    return response["content"]["application/json"]["schema"]


def webhook_schema(event_type: str) -> dict:
    body = spec()["webhooks"][event_type]["post"]["requestBody"]
    return body["content"]["application/json"]["schema"]


def _validate(schema: dict, body: object) -> None:
    # Refs are "#/components/...": give the schema the spec's components as its root.
    OAS30Validator({**schema, "components": spec()["components"]}).validate(body)


def validate(method: str, path: str, response) -> dict:
    """Check a requests.Response against the spec's schema for (method, path template, status)."""
    body = response.json()
    _validate(response_schema(method, path, response.status_code), body)
    return body


# The spec defines no 401/429/501 bodies; API.md §7 documents this one for all errors.
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "origin"],
    "properties": {
        "error": {"type": "string", "minLength": 1},
        "origin": {"type": "string", "enum": ["trackstar", "integration"]},
    },
}


def validate_error(response) -> dict:
    """For statuses the spec leaves undefined: the documented {error, origin} body."""
    assert response.status_code >= 400
    body = response.json()
    _validate(ERROR_SCHEMA, body)
    return body


def validate_webhook(event_type: str, body: dict) -> None:
    _validate(webhook_schema(event_type), body)


def template_for(path: str) -> str:
    """The OAS path template a concrete path matches, e.g. /wms/orders/x → /wms/orders/{order_id}."""
    if path in spec()["paths"]:
        return path
    for template in spec()["paths"]:
        if re.match("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$", path):
            return template
    raise AssertionError(f"no path in openapi.json matches {path}")
