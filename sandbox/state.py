"""Everything the sandbox remembers: connections, link tokens, auth codes, magic links,
on-demand sync jobs.

Generated WMS data is not stored (see data.py), only each connection's Dataset parameters, so
the --state-file stays small and a restarted demo keeps its connections working.
"""

import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field

from .data import Dataset

log = logging.getLogger("sandbox.state")


@dataclass
class Connection:
    connection_id: str
    integration_name: str
    access_token: str
    customer_id: str | None
    created_at: float
    last_used: float
    times_used: int = 0
    # Mirrors an open invalid_credentials error in `errors` (and is how older state files
    # recorded one).
    broken: bool = False
    broken_since: float | None = None
    webhooks_disabled: bool = False
    credentials: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    # Open connection errors: {kind: invalid_credentials|missing_permission,
    # resource: None|resource, first_seen, last_seen} (epoch seconds).
    errors: list = field(default_factory=list)
    # resource -> epoch seconds at which its initial sync completes; a resource missing here
    # (connections from older state files) is ready.
    ready_at: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.broken and not self.error("invalid_credentials"):
            since = self.broken_since or self.created_at
            self.errors.append(
                {
                    "kind": "invalid_credentials",
                    "resource": None,
                    "first_seen": since,
                    "last_seen": since,
                }
            )

    def error(self, kind: str, resource: str | None = None) -> dict | None:
        for e in self.errors:
            if e["kind"] == kind and e["resource"] == resource:
                return e
        return None

    @property
    def blocked(self) -> bool:
        return self.error("invalid_credentials") is not None

    def denied(self, resource: str) -> bool:
        return self.error("missing_permission", resource) is not None

    def errors_changed(self) -> None:
        found = self.error("invalid_credentials")
        self.broken = found is not None
        self.broken_since = found["first_seen"] if found else None

    def ready(self, resource: str, now: float) -> bool:
        return now >= self.ready_at.get(resource, 0)


class State:
    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.connections: dict[str, Connection] = {}
        self.by_token: dict[str, str] = {}
        self.link_tokens: dict[str, dict] = {}
        self.auth_codes: dict[str, dict] = {}
        self.magic_links: dict[str, dict] = {}
        # job id -> {"job": the documented job object, "due": epoch seconds it completes}
        self.sync_jobs: dict[str, dict] = {}
        self.sandbox_connection_id: str | None = None
        self.datasets: dict[str, Dataset] = {}
        if path and os.path.exists(path):
            self._load()

    def reset(self) -> None:
        self.connections.clear()
        self.by_token.clear()
        self.link_tokens.clear()
        self.auth_codes.clear()
        self.magic_links.clear()
        self.sync_jobs.clear()
        self.datasets.clear()
        self.sandbox_connection_id = None
        self.save()

    # -- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        with open(self.path) as f:  # type: ignore[arg-type]
            raw = json.load(f)
        for c in raw.get("connections", []):
            conn = Connection(**c)
            self.connections[conn.connection_id] = conn
            self.by_token[conn.access_token] = conn.connection_id
            self.datasets[conn.connection_id] = Dataset(conn.connection_id, **conn.dataset)
        self.link_tokens = raw.get("link_tokens", {})
        self.auth_codes = raw.get("auth_codes", {})
        self.magic_links = raw.get("magic_links", {})
        self.sync_jobs = raw.get("sync_jobs", {})
        self.sandbox_connection_id = raw.get("sandbox_connection_id")
        log.info("loaded %d connections from %s", len(self.connections), self.path)

    def save(self) -> None:
        if not self.path:
            return
        for cid, ds in self.datasets.items():
            if cid in self.connections:
                self.connections[cid].dataset = ds.dump()
        now = time.time()
        raw = {
            "connections": [asdict(c) for c in self.connections.values()],
            "link_tokens": {k: v for k, v in self.link_tokens.items() if v["expires_at"] > now},
            "auth_codes": {k: v for k, v in self.auth_codes.items() if v["expires_at"] > now},
            "magic_links": self.magic_links,
            "sync_jobs": self.sync_jobs,
            "sandbox_connection_id": self.sandbox_connection_id,
        }
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(raw, f)
        os.replace(tmp, self.path)  # atomic, so a crash never leaves half a file

    # -- connections -------------------------------------------------------------------------
    def create_connection(
        self, integration_name: str, customer_id: str | None, credentials: dict
    ) -> Connection:
        now = time.time()
        conn = Connection(
            connection_id="conn_" + secrets.token_hex(12),
            integration_name=integration_name,
            access_token="trackstar_" + secrets.token_urlsafe(24),
            customer_id=customer_id,
            created_at=now,
            last_used=now,
            credentials=credentials,
        )
        self.connections[conn.connection_id] = conn
        self.by_token[conn.access_token] = conn.connection_id
        self.datasets[conn.connection_id] = Dataset(conn.connection_id)
        return conn

    def delete_connection(self, conn: Connection) -> None:
        self.connections.pop(conn.connection_id, None)
        self.by_token.pop(conn.access_token, None)
        self.datasets.pop(conn.connection_id, None)
        if self.sandbox_connection_id == conn.connection_id:
            self.sandbox_connection_id = None

    def connection_for_token(self, token: str | None) -> Connection | None:
        cid = self.by_token.get(token or "")
        return self.connections.get(cid) if cid else None

    def dataset(self, conn: Connection) -> Dataset:
        return self.datasets[conn.connection_id]
