"""A connection's health as Trackstar reports it on `GET /connections/{id}` (API.md §10).

Two kinds of error, documented in two shapes:
- DOC (connection-issues.mdx): `{error_type: "invalid_credentials" | "missing_permission",
  resource: null | "returns", message}`;
- OAS: `{error_message, affected_endpoints: [{endpoint: "GET /wms/returns",
  preventing_sync}], first_seen, last_seen}`.

Invalid credentials block every resource until a reinstall; a missing permission affects
only the named resources. An entry that does not say which (no `error_type`) is never read
as invalid credentials: nobody emails the customer on a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connections.trackstar.client import RESOURCES, resource_named

INVALID_CREDENTIALS = "invalid_credentials"
MISSING_PERMISSION = "missing_permission"

# "GET /wms/returns" -> "returns"; the list endpoint of each resource we know.
_ENDPOINT_RESOURCES = {f"GET {path}": resource for resource, path in RESOURCES.items()}


@dataclass(frozen=True)
class HealthIssue:
    kind: str  # INVALID_CREDENTIALS, MISSING_PERMISSION or "unclassified"
    message: str
    resources: frozenset[str] = frozenset()

    @property
    def blocking(self) -> bool:
        return self.kind == INVALID_CREDENTIALS


@dataclass(frozen=True)
class ConnectionHealth:
    errors: tuple[HealthIssue, ...] = ()
    # Resource -> whether Trackstar's initial sync of it is done; None when Trackstar did
    # not say (the field is SKILL-only).
    history_completed: Mapping[str, bool] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> HealthIssue | None:
        return next((e for e in self.errors if e.blocking), None)

    @property
    def missing_permissions(self) -> dict[str, str]:
        """Resource -> message, for the non-blocking errors."""
        out: dict[str, str] = {}
        for error in self.errors:
            if error.kind == MISSING_PERMISSION:
                for resource in error.resources:
                    words = resource.replace("_", " ")
                    out.setdefault(resource, error.message or f"No access to {words}.")
        return out

    @property
    def unclassified(self) -> list[str]:
        return [e.message for e in self.errors if e.kind == "unclassified"]


def _endpoint_resources(endpoints: Any) -> set[str]:
    found: set[str] = set()
    if not isinstance(endpoints, list):
        return found
    for item in endpoints:
        endpoint = item.get("endpoint") if isinstance(item, Mapping) else item
        if isinstance(endpoint, str):
            resource = _ENDPOINT_RESOURCES.get(" ".join(endpoint.split()))
            if resource is not None:
                found.add(resource)
    return found


def parse_error(entry: Mapping[str, Any]) -> HealthIssue:
    """One errors[] entry (either shape, or both merged). Only the DOC shape's `error_type`
    says what kind it is; an entry without one is unclassified."""
    message = entry.get("message") or entry.get("error_message") or ""
    message = message if isinstance(message, str) else ""
    error_type = entry.get("error_type")
    if error_type == INVALID_CREDENTIALS:
        return HealthIssue(INVALID_CREDENTIALS, message or "The WMS credentials no longer work.")
    if error_type == MISSING_PERMISSION:
        resource = resource_named(entry.get("resource"))
        resources = {resource} if resource else _endpoint_resources(entry.get("affected_endpoints"))
        if resources:
            return HealthIssue(MISSING_PERMISSION, message, frozenset(resources))
        return HealthIssue("unclassified", message or "A permission is missing.")
    # OAS shape only: it does not say which kind. Read as neither invalid credentials (no
    # customer is emailed on a guess) nor a missing permission (no resource stops being
    # read on a guess): staff see it, with the endpoints it names.
    names = sorted(_endpoint_resources(entry.get("affected_endpoints")))
    return HealthIssue(
        "unclassified", message or "Trackstar reports a connection error.", frozenset(names)
    )


def parse_health(details: Mapping[str, Any]) -> ConnectionHealth:
    raw_errors = details.get("errors")
    errors = tuple(
        parse_error(entry)
        for entry in (raw_errors if isinstance(raw_errors, list) else [])
        if isinstance(entry, Mapping)
    )
    history: dict[str, bool] | None = None
    raw_history = details.get("historical_sync_completed")
    if isinstance(raw_history, Mapping):
        history = {}
        for key, done in raw_history.items():
            resource = resource_named(key)
            if resource is not None and isinstance(done, bool):
                history[resource] = done
    return ConnectionHealth(errors=errors, history_completed=history, details=details)
