"""The sync engine: keep a local copy of each connection's WMS records (DESIGN.md §6).

One sync per (connection, resource) at a time, held by a lease on its ResourceSync row.
A run pages through Trackstar 1000 records at a time and commits each page in one
transaction: one upsert statement for the records, the run's progress and cursor, and the
lease renewal, which also fences out a worker whose lease was taken over. The lease is
short (SYNC_LEASE_SECONDS) and renewed on every page and while a page waits, a heartbeat:
a task that dies mid-run leaves the cursor behind, its lease lapses within seconds, and
another worker resumes there. A lost database connection is retried, run and cursor kept.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import itertools
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db import connection as db_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Q
from django.utils import timezone

from audit.services import audit_record
from connections import enqueue
from connections.clients import trackstar_client
from connections.database import DATABASE_LOST, database_connection_drop
from connections.health.account import trackstar_key_rejected
from connections.models import RECORD_MODELS, Connection, ResourceSync, SyncedRecord, SyncRun
from connections.models.records import parse_datetime
from connections.sync.trackstar_budget import acquire, trackstar_get_limiter
from connections.trackstar import (
    RESOURCE_ACTIONS,
    TrackstarAuthError,
    TrackstarBadRequest,
    TrackstarError,
    TrackstarForbidden,
    TrackstarNotImplemented,
    TrackstarRateLimited,
    TrackstarUnavailable,
    TrackstarValidationError,
    resource_named,
)

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
# Retries of one page inside a run (429 and timeouts/5xx) before the task gives up and
# retries later from the same page.
PAGE_RETRIES = 5
PAGE_BACKOFF_BASE = 0.5
PAGE_BACKOFF_CAP = 10.0
# Resources Trackstar refreshes only twice a day (API.md §5).
SLOW_RESOURCES = frozenset({"warehouses", "shipping_methods"})


class LeaseLost(Exception):
    """Another worker took this sync's lease: stop without writing anything more."""


class SyncStatus(enum.StrEnum):
    """How one sync task's run of the engine ended."""

    # The run ended:
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"  # the WMS does not offer the resource
    FORBIDDEN = "forbidden"  # a missing permission
    TOKEN_REJECTED = "token_rejected"
    DELETED = "deleted"  # at Trackstar
    # The run waits:
    PAUSED = "paused"  # Trackstar refuses our API key
    CONTINUE = "continue"  # out of time: the task enqueues the rest
    BUSY = "busy"  # another worker holds the lease (retry_in seconds left on it)
    # Nothing was run:
    SKIPPED = "skipped"
    LEASE_LOST = "lease_lost"  # fenced out by another worker


@dataclass(frozen=True)
class SyncOutcome:
    status: SyncStatus
    run: SyncRun | None = None
    retry_in: float | None = None


@dataclass
class _Lease:
    resource_sync_id: int
    token: uuid.UUID
    run: SyncRun


# --- Records ---------------------------------------------------------------------------------


def records_upsert(
    *,
    connection: Connection,
    resource: str,
    records: Iterable[Mapping[str, Any]],
    only_if_newer: bool = False,
    synced_at: datetime | None = None,
) -> int:
    """Insert or update Trackstar records of one resource in one statement per 1000.

    With `only_if_newer`, a row whose updated_date is newer than the incoming record's is
    left alone: for webhooks, which may arrive out of order or after a sync fetched a newer
    version. Returns how many rows were written."""
    model = RECORD_MODELS[resource]
    written = 0
    batch: list[Mapping[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) == PAGE_SIZE:
            written += _upsert(connection, model, batch, synced_at, only_if_newer)[0]
            batch = []
    if batch:
        written += _upsert(connection, model, batch, synced_at, only_if_newer)[0]
    return written


@dataclass(frozen=True)
class _Statement:
    sql: str
    params: list[Any]
    # Newest trackstar_updated_date among the records (updated_date for a record without
    # one), for the run's high-water mark (API.md §10).
    newest: datetime | None


def _upsert(
    connection: Connection,
    model: type[SyncedRecord],
    records: Sequence[Mapping[str, Any]],
    synced_at: datetime | None,
    only_if_newer: bool,
) -> tuple[int, datetime | None]:
    """Upsert a batch in one statement. Returns (rows written, newest updated_date)."""
    statement = _upsert_statement(connection, model, records, synced_at, only_if_newer)
    return _upsert_execute(statement), statement.newest


def _upsert_statement(
    connection: Connection,
    model: type[SyncedRecord],
    records: Sequence[Mapping[str, Any]],
    synced_at: datetime | None,
    only_if_newer: bool,
    db: BaseDatabaseWrapper | None = None,
) -> _Statement:
    """Build one INSERT ... ON CONFLICT (connection_id, trackstar_id) DO UPDATE for the
    batch, without touching the database (a sync builds the next page's statement in its
    prefetch thread, `db` being the connection the statement will run on).

    Raw SQL rather than bulk_create(update_conflicts=True): the same statement serves both
    modes (only_if_newer needs a WHERE on the DO UPDATE), skips building model instances,
    and stays one statement on SQLite, where Django would split it into batches of 999
    parameters. Both backends take this syntax (PostgreSQL 9.5+, SQLite 3.24+)."""
    db = db or connections[DEFAULT_DB_ALIAS]
    synced_at = synced_at or timezone.now()
    # A page may repeat an id (a record updated while Trackstar paged); one statement must
    # not touch a row twice, so keep the newest copy.
    by_id: dict[str, tuple[datetime | None, Mapping[str, Any]]] = {}
    newest: datetime | None = None
    for record in records:
        trackstar_id = record.get("id")
        if not isinstance(trackstar_id, str) or not trackstar_id:
            logger.warning(
                "Skipping a %s record without an id",
                model.resource,
                extra={"connection_id": connection.trackstar_connection_id},
            )
            continue
        updated = parse_datetime(record.get("updated_date"))
        seen = parse_datetime(record.get("trackstar_updated_date")) or updated
        if seen is not None and (newest is None or seen > newest):
            newest = seen
        previous = by_id.get(trackstar_id)
        if previous is None or _newer_or_equal(updated, previous[0]):
            by_id[trackstar_id] = (updated, record)
    if not by_id:
        return _Statement("", [], newest)

    opts = model._meta
    names = [
        "connection_id",
        "customer_id",
        "trackstar_id",
        "created_date",
        "updated_date",
        "synced_at",
        "data",
        *model.columns_from({}),
    ]
    fields: list[Any] = [opts.get_field(name) for name in names]
    rows = (
        [
            connection.pk,
            connection.customer_id,
            trackstar_id,
            parse_datetime(record.get("created_date")),
            updated,
            synced_at,
            record,
            *model.columns_from(record).values(),
        ]
        for trackstar_id, (updated, record) in by_id.items()
    )
    ops = db.ops
    table = ops.quote_name(opts.db_table)
    columns = ", ".join(ops.quote_name(field.column) for field in fields)
    updates = ", ".join(
        f"{ops.quote_name(f.column)} = EXCLUDED.{ops.quote_name(f.column)}"
        for f in fields
        if f.column not in ("connection_id", "customer_id", "trackstar_id")
    )
    if db.vendor == "postgresql":
        sql, params = _insert_postgresql(db, table, columns, fields, rows)
    else:
        sql, params = _insert_values(db, table, columns, fields, rows, len(by_id))
    sql += f" ON CONFLICT (connection_id, trackstar_id) DO UPDATE SET {updates}"
    if only_if_newer:
        updated_col = f"{table}.{ops.quote_name('updated_date')}"
        sql += f" WHERE {updated_col} IS NULL OR {updated_col} <= EXCLUDED.updated_date"
    return _Statement(sql, params, newest)


def _upsert_execute(statement: _Statement) -> int:
    if not statement.sql:
        return 0
    if db_connection.vendor == "postgresql":
        return _execute_server_bound(statement.sql, statement.params)
    with db_connection.cursor() as cursor:
        cursor.execute(statement.sql, statement.params)
        return cursor.rowcount


def _insert_values(
    db: BaseDatabaseWrapper,
    table: str,
    columns: str,
    fields: list[Any],
    rows: Iterable[list[Any]],
    count: int,
) -> tuple[str, list[Any]]:
    """INSERT ... VALUES (...), (...): one placeholder per value, adapted by Django."""
    prep = [field.get_db_prep_save for field in fields]
    params: list[Any] = []
    for row in rows:
        params.extend(p(value, db) for p, value in zip(prep, row, strict=True))
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholder] * count)}", params


def _insert_postgresql(
    db: BaseDatabaseWrapper, table: str, columns: str, fields: list[Any], rows: Iterable[list[Any]]
) -> tuple[str, list[Any]]:
    """INSERT ... SELECT FROM unnest(col1[], col2[], ...): one array parameter per column,
    sent in binary, so the statement text is the same for every page and psycopg does not
    quote a thousand JSON documents (bench/: several times faster than VALUES; a COPY into
    a staging table and a merge measured no faster, and takes three statements)."""
    arrays: list[list[Any]] = [[] for _ in fields]
    data_index = 6
    for row in rows:
        # orjson: JSON text for the JSON column, several times faster than json.dumps.
        row[data_index] = orjson.dumps(row[data_index]).decode()
        for values, value in zip(arrays, row, strict=True):
            values.append(value)
    casts = ", ".join(
        f"%b::{'text' if f.get_internal_type() == 'JSONField' else _pg_type(db, f)}[]"
        for f in fields
    )
    select = ", ".join(
        f"c{i}::{f.db_type(db)}" if f.get_internal_type() == "JSONField" else f"c{i}"
        for i, f in enumerate(fields)
    )
    aliases = ", ".join(f"c{i}" for i in range(len(fields)))
    sql = f"INSERT INTO {table} ({columns}) SELECT {select} FROM unnest({casts}) AS u({aliases})"
    return sql, arrays


def _pg_type(db: BaseDatabaseWrapper, field: Any) -> str:
    if field.is_relation:
        return field.target_field.rel_db_type(db)
    return field.db_type(db)


def _execute_server_bound(sql: str, params: list[Any]) -> int:
    """Run one statement with server-side binding (Django's psycopg cursors bind on the
    client), in Django's transaction and visible to its query log and test assertions."""
    import psycopg

    db_connection.ensure_connection()
    raw = psycopg.Cursor(db_connection.connection)
    # Django's wrappers accept any DB-API cursor; the stubs only know their own.
    cursor = (
        db_connection.make_debug_cursor(raw)  # type: ignore[arg-type]
        if db_connection.queries_logged
        else db_connection.make_cursor(raw)  # type: ignore[arg-type]
    )
    with cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _newer_or_equal(a: datetime | None, b: datetime | None) -> bool:
    return b is None or (a is not None and a >= b)


# --- Scheduling ------------------------------------------------------------------------------


def sync_resources_for(connection: Connection) -> list[str]:
    """The resources we sync that this connection's integration offers. No actions known
    (e.g. an imported token) means try them all: a 501 marks the missing ones."""
    actions = set(connection.available_actions or [])
    if not actions:
        return list(RECORD_MODELS)
    return [r for r in RECORD_MODELS if RESOURCE_ACTIONS[r] in actions]


def _interval_for(resource: str) -> int:
    if resource in SLOW_RESOURCES:
        return settings.SYNC_SLOW_INTERVAL_SECONDS
    return settings.SYNC_INTERVAL_SECONDS


def _phase(connection_id: int, resource: str, interval: int) -> float:
    """A fixed offset within the interval, from a hash: 10,000 connections spread evenly
    over it and stay spread, instead of all firing at the same minute."""
    digest = hashlib.sha256(f"{connection_id}:{resource}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (interval * 1000) / 1000


def next_slot(*, connection_id: int, resource: str, interval: int, after: datetime) -> datetime:
    """This pair's next slot at least half an interval after `after` (so at most 1.5)."""
    phase = _phase(connection_id, resource, interval)
    earliest = after.timestamp() + interval / 2
    slot = phase + math.ceil((earliest - phase) / interval) * interval
    return datetime.fromtimestamp(slot, tz=after.tzinfo or timezone.get_current_timezone())


def _ensure_resource_syncs(
    connection: Connection, *, now: datetime | None = None
) -> list[ResourceSync]:
    wanted = sync_resources_for(connection)
    now = now or timezone.now()
    ResourceSync.objects.bulk_create(
        [
            ResourceSync(
                connection=connection,
                resource=resource,
                interval_seconds=_interval_for(resource),
                next_sync_at=now,
            )
            for resource in wanted
        ],
        ignore_conflicts=True,
    )
    # Resources the integration no longer offers (after a reconnect) stop syncing.
    ResourceSync.objects.filter(connection=connection).exclude(resource__in=wanted).update(
        enabled=False, updated_at=now
    )
    ResourceSync.objects.filter(connection=connection, resource__in=wanted, enabled=False).update(
        enabled=True, updated_at=now
    )
    return list(ResourceSync.objects.filter(connection=connection, resource__in=wanted))


def _ensure_resource_syncs_spread(now: datetime, limit: int) -> int:
    """Sync state for active connections that have none (a big import, or connections made
    before sync existed): `limit` connections a tick, in a few statements whatever their
    number. Each resource's first slot is its phase in the interval, so 10,000 imported
    connections are read over the interval rather than all in the next minute, and
    sync_history_completed keeps to that slot."""
    fresh = list(
        Connection.objects.filter(
            status=Connection.Status.ACTIVE, resource_syncs__isnull=True
        ).only("pk", "available_actions")[:limit]
    )
    interval = settings.SYNC_INTERVAL_SECONDS
    ResourceSync.objects.bulk_create(
        [
            ResourceSync(
                connection_id=connection.pk,
                resource=resource,
                interval_seconds=_interval_for(resource),
                next_sync_at=now + timedelta(seconds=_phase(connection.pk, resource, interval)),
            )
            for connection in fresh
            for resource in sync_resources_for(connection)
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    return len(fresh)


def _first_slot_ahead(resource_sync: ResourceSync, now: datetime) -> bool:
    """Never read, and its first slot (a big import's, spread over the interval) is still
    ahead: the dispatcher reads it then."""
    return (
        resource_sync.last_success_at is None
        and resource_sync.current_run_id is None
        and resource_sync.next_sync_at is not None
        and resource_sync.next_sync_at > now
    )


def sync_schedule_initial(*, connection: Connection) -> list[str]:
    """After a connection becomes active. A resource Trackstar has finished its initial
    sync of (a reconnect keeps Trackstar's history) continues from its mark now; the others
    wait for connection.historical-sync-completed, since until then their reads return
    nothing (API.md §10). The health check asked for here reads Trackstar's
    historical_sync_completed map, in case the webhooks came first or never come."""
    from connections.health.services import health_check_enqueue
    from connections.models import WebhookEvent

    # connection.historical-sync-completed events that arrived before the connection was
    # stored (or while it waited for its token) were set aside: they count now.
    done_before = {
        resource_named(payload["data"].get("resource"))
        for payload in WebhookEvent.objects.filter(
            trackstar_connection_id=connection.trackstar_connection_id,
            event_type="connection.historical-sync-completed",
        ).values_list("payload", flat=True)
        if isinstance(payload, dict) and isinstance(payload.get("data"), dict)
    }
    scheduled = []
    for resource_sync in _ensure_resource_syncs(connection):
        if not resource_sync.history_ready and resource_sync.resource in done_before:
            ResourceSync.objects.filter(pk=resource_sync.pk).update(
                history_ready=True, updated_at=timezone.now()
            )
            resource_sync.history_ready = True
        if not resource_sync.history_ready:
            continue
        kind = SyncRun.Kind.INCREMENTAL if resource_sync.high_water_mark else SyncRun.Kind.INITIAL
        sync_request(connection_id=connection.pk, resource=resource_sync.resource, kind=kind)
        scheduled.append(resource_sync.resource)
    health_check_enqueue(connection_id=connection.pk)
    return scheduled


def sync_history_completed(*, connection: Connection, resources: Iterable[str]) -> list[str]:
    """Trackstar finished its initial sync of these resources (the webhook, or the map on
    GET /connections/{id}): read them now. A resource read before (a reinstall that opened
    more history) continues incrementally: what Trackstar just ingested carries a new
    trackstar_updated_date, so no second full read is needed."""
    wanted = set(resources)
    newly = []
    now = timezone.now()
    for rs in _ensure_resource_syncs(connection, now=now):
        # A conditional UPDATE: the webhook and the health poll may say it at the same
        # moment, and only one of them may start the read.
        if rs.resource in wanted and ResourceSync.objects.filter(
            pk=rs.pk, history_ready=False
        ).update(history_ready=True, updated_at=now):
            newly.append(rs.resource)
            if _first_slot_ahead(rs, now):
                continue
            kind = SyncRun.Kind.WEBHOOK if rs.high_water_mark else SyncRun.Kind.INITIAL
            sync_request(connection_id=connection.pk, resource=rs.resource, kind=kind)
    return newly


def sync_force_requested(*, connection: Connection, resources: Iterable[str]) -> list[str]:
    """Trackstar accepted a force sync of these resources: read them when it says it is done
    (sync_force_completed), or after SYNC_FORCE_TIMEOUT_SECONDS (the dispatcher)."""
    wanted = list(resources)
    _ensure_resource_syncs(connection)
    ResourceSync.objects.filter(connection=connection, resource__in=wanted).update(
        force_sync_requested_at=timezone.now(), updated_at=timezone.now()
    )
    return wanted


def sync_force_completed(
    *, connection: Connection, resources: Iterable[str] | None = None
) -> list[str]:
    """connection.force-sync-completed: Trackstar's copy is fresh from the WMS; read what
    changed. `resources` None (the event did not say) means every one we asked for; a
    force sync started elsewhere (Trackstar's dashboard) reads the resources it names."""
    pending = ResourceSync.objects.filter(connection=connection, enabled=True)
    if resources is None:
        pending = pending.filter(force_sync_requested_at__isnull=False)
    else:
        pending = pending.filter(resource__in=list(resources))
    now = timezone.now()
    with transaction.atomic():
        rows = list(pending.select_for_update(of=("self",)).order_by("pk"))
        for rs in rows:
            rs.force_sync_requested_at = None
        _requests_record(
            rows, kind=SyncRun.Kind.FORCE, now=now, also_save=("force_sync_requested_at",)
        )
    return [rs.resource for rs in rows]


def sync_request_now(
    *,
    connection: Connection,
    resources: Iterable[str] | None = None,
    full: bool = False,
    kind: str = SyncRun.Kind.MANUAL,
) -> list[str]:
    """Staff's "resync now": request a run of these resources (default: all it offers),
    sent after the caller's transaction commits. `full` ignores the high-water mark. A
    request already queued or a run in progress is joined, not repeated (sync_request)."""
    wanted = set(resources) if resources is not None else None
    requested = [
        rs for rs in _ensure_resource_syncs(connection) if wanted is None or rs.resource in wanted
    ]
    with transaction.atomic():
        rows = list(
            ResourceSync.objects.select_for_update(of=("self",))
            .filter(pk__in=[rs.pk for rs in requested])
            .order_by("pk")
        )
        _requests_record(rows, kind=kind, full=full, now=timezone.now())
    return [rs.resource for rs in requested]


# --- Requests: a run asked for is a row first, a message second -----------------------------
#
# Like the exchange outbox: the request is written in the asker's transaction and its
# message sent once that commits, so a broker that is down, or that loses its data, costs
# at most a sweep (sync_requests_resend). The run that starts takes the request; requests
# and run starts lock the ResourceSync row, so which came first is the order of the lock,
# not of two machines' clocks: a request made while a run runs gets one run after it
# (that run sends it when it ends), never none and never two.

# The kind a run serves when requests of several kinds join: staff's re-read over a refresh
# from the WMS, over a backfill's, a webhook's, a first read's and the schedule's.
_KIND_RANK: dict[str, int] = {
    SyncRun.Kind.INCREMENTAL: 0,
    SyncRun.Kind.INITIAL: 1,
    SyncRun.Kind.WEBHOOK: 2,
    SyncRun.Kind.BACKFILL: 3,
    SyncRun.Kind.FORCE: 4,
    SyncRun.Kind.MANUAL: 5,
}
_REQUEST_FIELDS = (
    "requested_at",
    "requested_kind",
    "requested_full",
    "request_sends",
    "request_resend_at",
)
# (resource sync id, connection id, resource, kind, full): one message to send.
_Send = tuple[int, int, str, str, bool]


def _stronger_kind(a: str, b: str) -> str:
    return a if _KIND_RANK.get(a, -1) >= _KIND_RANK.get(b, -1) else b


def _resend_after(sends: int) -> timedelta:
    """How long a request's message may take before it is presumed lost: doubling with each
    copy sent, up to 32 times SYNC_REQUEST_RESEND_SECONDS."""
    return timedelta(seconds=settings.SYNC_REQUEST_RESEND_SECONDS * 2 ** min(sends - 1, 5))


def _leased(resource_sync: ResourceSync, now: datetime) -> bool:
    expires = resource_sync.lease_expires_at
    return resource_sync.lease_token is not None and expires is not None and expires > now


def _request_join(
    resource_sync: ResourceSync, kind: str, full: bool, now: datetime
) -> _Send | None:
    """Record a request on this (locked) row, joined to the one already there. Returns the
    message to send, if one goes out now: not while a run holds the lease (the run sends
    it when it ends), nor while the message of the request it joined is on its way."""
    pending = resource_sync.requested_at is not None
    if pending:
        resource_sync.requested_kind = _stronger_kind(kind, resource_sync.requested_kind)
        resource_sync.requested_full = resource_sync.requested_full or full
    else:
        resource_sync.requested_at = now
        resource_sync.requested_kind = kind
        resource_sync.requested_full = full
        resource_sync.request_sends = 0
        # For the sweep, should the run holding the lease die before it sends this.
        resource_sync.request_resend_at = now
    on_its_way = (
        pending
        and resource_sync.request_sends > 0
        and resource_sync.request_resend_at is not None
        and resource_sync.request_resend_at > now
    )
    if _leased(resource_sync, now) or on_its_way:
        return None
    return _request_sent(resource_sync, now)


def _request_sent(resource_sync: ResourceSync, now: datetime) -> _Send:
    """Count a message of the request as sent; its resend time moves on."""
    resource_sync.request_sends = min(resource_sync.request_sends + 1, 1000)
    resource_sync.request_resend_at = now + _resend_after(resource_sync.request_sends)
    kind = resource_sync.requested_kind
    if kind == SyncRun.Kind.INCREMENTAL and resource_sync.high_water_mark is None:
        kind = SyncRun.Kind.INITIAL  # what the run will be
    return (
        resource_sync.pk,
        resource_sync.connection_id,
        resource_sync.resource,
        kind,
        resource_sync.requested_full,
    )


def _request_taken(resource_sync: ResourceSync) -> None:
    """A run started (or there is nothing to run): the request is served."""
    resource_sync.requested_at = None
    resource_sync.requested_kind = ""
    resource_sync.requested_full = False
    resource_sync.request_sends = 0
    resource_sync.request_resend_at = None


def _requests_record(
    rows: list[ResourceSync],
    *,
    kind: str,
    full: bool = False,
    now: datetime,
    also_save: Sequence[str] = (),
) -> list[_Send]:
    """Record a request on each of these rows (locked by the caller's transaction), in one
    statement per 1000, and send the messages that must go out once it commits."""
    sends = []
    for resource_sync in rows:
        if (send := _request_join(resource_sync, kind, full, now)) is not None:
            sends.append(send)
        resource_sync.updated_at = now
    if rows:
        ResourceSync.objects.bulk_update(
            rows, [*_REQUEST_FIELDS, *also_save, "updated_at"], batch_size=1000
        )
    _requests_send_on_commit(sends)
    return sends


def _requests_send_on_commit(sends: list[_Send]) -> None:
    if sends:
        transaction.on_commit(functools.partial(_requests_send, sends), robust=True)


def _requests_send(sends: list[_Send]) -> int:
    """Publish the messages; a broker that refuses one is down: the rest wait for the
    dispatcher's next tick with it (their requests are rows). Returns how many went out."""
    for i, (_, connection_id, resource, kind, full) in enumerate(sends):
        if _enqueue(connection_id, resource, kind, full) is False:
            ResourceSync.objects.filter(pk__in=[send[0] for send in sends[i:]]).update(
                request_resend_at=timezone.now()
            )
            return i
    return len(sends)


def sync_request(*, connection_id: int, resource: str, kind: str, full: bool = False) -> bool:
    """Request a run of one resource: recorded on its row in the caller's transaction, the
    message sent once that commits. A request already queued, or a run in progress, is
    joined rather than repeated. Returns whether a message goes out."""
    with transaction.atomic():
        ResourceSync.objects.get_or_create(
            connection_id=connection_id,
            resource=resource,
            defaults={"interval_seconds": _interval_for(resource), "next_sync_at": timezone.now()},
        )
        rows = list(
            ResourceSync.objects.select_for_update(of=("self",)).filter(
                connection_id=connection_id, resource=resource
            )
        )
        return bool(_requests_record(rows, kind=kind, full=full, now=timezone.now()))


def _request_follow_up(resource_sync: ResourceSync, run: SyncRun, *, succeeded: bool) -> None:
    """The run ended (the caller holds the row's lock and saves it): a request made while it
    ran gets its run now. Not what this run read, if it succeeded: a full read covered the
    requests' `full`, and a first read left a mark, so what changed since it started is an
    incremental read (trackstar_updated_date moves with every change, API.md §10)."""
    if resource_sync.requested_at is None:
        return
    if succeeded:
        if run.since is None:
            resource_sync.requested_full = False
        if resource_sync.requested_kind == SyncRun.Kind.INITIAL:
            resource_sync.requested_kind = SyncRun.Kind.INCREMENTAL
    _requests_send_on_commit([_request_sent(resource_sync, timezone.now())])


def _request_follow_up_of(resource_sync_id: int, run: SyncRun) -> None:
    """_request_follow_up after a run that did not succeed, its row locked by the caller."""
    resource_sync = ResourceSync.objects.filter(
        pk=resource_sync_id, requested_at__isnull=False
    ).first()
    if resource_sync is not None:
        _request_follow_up(resource_sync, run, succeeded=False)
        resource_sync.save(update_fields=[*_REQUEST_FIELDS, "updated_at"])


def _enqueue(connection_id: int, resource: str, kind: str, full: bool = False) -> bool:
    """Publish a request's message (or a resume's). The worker runs it only if the request
    is still waiting or a run is there to resume, so a copy of it does nothing."""
    # Through the breaker: a "Resync now" in admin must not hang on a hung Redis.
    if not enqueue.resource_sync(connection_id, resource, kind, full):
        # Leave the row due and the request unsent: the dispatcher sends it once the broker
        # is back.
        now = timezone.now()
        ResourceSync.objects.filter(connection_id=connection_id, resource=resource).update(
            next_sync_at=now, request_resend_at=now
        )
        logger.warning(
            "Broker unavailable; %s sync left for the dispatcher",
            resource,
            extra={"connection_id": connection_id},
        )
        return False
    return True


def sync_dispatch_due(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Beat, every minute: request the syncs that are due, oldest first, at most `limit`, and
    send again the requests whose message seems lost (sync_requests_resend).

    A bounded number of statements whatever the number of connections (tests state it):
    each step is one indexed query or one bulk statement over at most `limit` rows. A row
    already queued (a request waiting) or running (a live lease) is not due: its request
    or its run sends what comes next. Concurrent dispatchers skip each other's locked rows."""
    now = now or timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    _ensure_resource_syncs_spread(now, limit)

    if trackstar_key_rejected():
        # Trackstar refuses our API key: every read would be a 401. Syncs resume when the
        # health poll finds the key accepted again.
        return 0
    _force_syncs_timed_out(now, limit)
    # A resource waits for Trackstar's initial sync; if neither the webhook nor the map on
    # GET /connections/{id} ever says so, it is read anyway after SYNC_HISTORY_WAIT_SECONDS
    # (never skip data).
    history_known = Q(history_ready=True) | Q(
        created_at__lt=now - timedelta(seconds=settings.SYNC_HISTORY_WAIT_SECONDS)
    )
    # Pushed ahead while it waits and runs (the lease, then the schedule move it on), so a
    # request taken by a run that found nothing to do is not requested again next minute.
    grace = timedelta(seconds=max(2 * settings.SYNC_LEASE_SECONDS, 300))
    with transaction.atomic():
        due = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                history_known,
                Q(lease_token__isnull=True) | Q(lease_expires_at__lte=now),
                enabled=True,
                unsupported=False,
                paused=False,
                permission_error="",
                next_sync_at__lte=now,
                requested_at__isnull=True,
                connection__status=Connection.Status.ACTIVE,
                connection__sync_paused=False,
            )
            .order_by("next_sync_at")[:limit]
        )
        for resource_sync in due:
            resource_sync.next_sync_at = now + grace
        _requests_record(due, kind=SyncRun.Kind.INCREMENTAL, now=now, also_save=("next_sync_at",))
    resent = sync_requests_resend(now=now, limit=limit)
    if due or resent:
        logger.info("Dispatched %d syncs; sent %d requests again", len(due), resent)
    return len(due)


def sync_requests_resend(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Send again the requests no run has taken by their resend time: their message was lost
    with the broker's data, or waits behind a long queue (that copy will then find its
    request taken and do nothing). Not while a run holds the lease: it sends them when it
    ends. Returns how many were sent."""
    now = now or timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    with transaction.atomic():
        late = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                Q(lease_token__isnull=True) | Q(lease_expires_at__lte=now),
                requested_at__isnull=False,
                request_resend_at__lte=now,
                connection__status=Connection.Status.ACTIVE,
            )
            .order_by("request_resend_at")[:limit]
        )
        sends = [_request_sent(resource_sync, now) for resource_sync in late]
        for resource_sync in late:
            resource_sync.updated_at = now
        if late:
            ResourceSync.objects.bulk_update(
                late, ["request_sends", "request_resend_at", "updated_at"], batch_size=1000
            )
        _requests_send_on_commit(sends)
    if late:
        logger.warning("Sent %d sync requests again: their runs never started", len(late))
    return len(late)


def _force_syncs_timed_out(now: datetime, limit: int) -> None:
    """Force syncs whose completion event never came: read what Trackstar has now."""
    cutoff = now - timedelta(seconds=settings.SYNC_FORCE_TIMEOUT_SECONDS)
    with transaction.atomic():
        late = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(force_sync_requested_at__lt=cutoff)
            .order_by("force_sync_requested_at")[:limit]
        )
        for resource_sync in late:
            resource_sync.force_sync_requested_at = None
        _requests_record(
            late, kind=SyncRun.Kind.FORCE, now=now, also_save=("force_sync_requested_at",)
        )


# --- One run ---------------------------------------------------------------------------------


def sync_resource(
    *,
    connection_id: int,
    resource: str,
    kind: str = SyncRun.Kind.INCREMENTAL,
    full: bool = False,
    time_budget: float | None = None,
    page_budget: int | None = None,
    requested: bool = False,
) -> SyncOutcome:
    """Run (or resume) the sync of one resource of one connection.

    Raises TrackstarUnavailable / TrackstarRateLimited when Trackstar stays unreachable
    for a page: the lease is released and the run keeps its cursor, so a retry resumes it.
    `time_budget` / `page_budget` end a long run early with status "continue".
    `requested`: the message of a request (sync_request) or of a resume, which has nothing
    to do when no run waits to be resumed and another run already took the request."""
    if resource not in RECORD_MODELS:
        raise ValueError(f"Not a synced resource: {resource!r}")
    connection = Connection.objects.select_related("customer").filter(pk=connection_id).first()
    if connection is None or connection.status != Connection.Status.ACTIVE:
        return SyncOutcome(SyncStatus.SKIPPED)
    if not connection.access_token:
        return SyncOutcome(SyncStatus.SKIPPED)
    acquired = _lease_acquire(connection, resource, kind, full, requested)
    if isinstance(acquired, SyncOutcome):
        return acquired
    lease = acquired
    log_extra = {
        "customer_id": connection.customer.public_id,
        "connection_id": connection.trackstar_connection_id,
        "resource": resource,
        "sync_run_id": lease.run.pk,
    }
    try:
        return _run(connection, resource, lease, time_budget, page_budget, log_extra)
    except LeaseLost:
        logger.warning("Lost the sync lease; another worker continues", extra=log_extra)
        return SyncOutcome(SyncStatus.LEASE_LOST, lease.run)
    except (TrackstarRateLimited, TrackstarUnavailable) as e:
        _lease_release(lease, error=f"Trackstar is busy or unreachable; will retry ({e}).")
        raise
    except TrackstarAuthError as e:
        return _finish_unauthorized(connection, lease, e)
    except TrackstarForbidden as e:
        return _finish_forbidden(connection, lease, e)
    except TrackstarNotImplemented as e:
        return _finish_unsupported(
            lease, f"{connection.integration_name} does not offer {resource}: {e.message}"
        )
    except TrackstarError as e:
        logger.warning("Sync failed: %s", e, extra=log_extra)
        return _finish_failed(lease, f"Trackstar refused the sync: {e}")
    except DATABASE_LOST as e:
        # A failover, a restart, a terminated backend: not the run's fault. The last page
        # committed whole or not at all, so the run and its cursor stay for the task's
        # retry, seconds from now on a fresh connection.
        logger.warning("Lost the database connection mid-sync: %s", e, extra=log_extra)
        _lease_release_after_database_error(lease)
        raise
    except Exception as e:
        # A bug, or bad data the database refused: end the run visibly rather than resume
        # into it forever.
        logger.exception("Sync crashed", extra=log_extra)
        _finish_failed(lease, f"Internal error: {type(e).__name__}")
        raise


def _lease_acquire(
    connection: Connection, resource: str, kind: str, full: bool, requested: bool = False
) -> _Lease | SyncOutcome:
    now = timezone.now()
    lease_for = timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    with transaction.atomic():
        ResourceSync.objects.get_or_create(
            connection=connection,
            resource=resource,
            defaults={"interval_seconds": _interval_for(resource)},
        )
        resource_sync = (
            ResourceSync.objects.select_for_update(of=("self",))
            .select_related("current_run")
            .get(connection=connection, resource=resource)
        )
        # A request waiting on the row: the run that starts serves it, whichever message
        # brought the worker here. What it asks is on the row, not in a request's message:
        # a join or the end of a run may have changed it since the message went out.
        pending = resource_sync.requested_at is not None
        if pending:
            request_kind = resource_sync.requested_kind
            if not requested:
                request_kind = _stronger_kind(kind, request_kind)
            request_full = resource_sync.requested_full or (full and not requested)
            kind = _stronger_kind(kind, resource_sync.requested_kind)  # for the checks below
        manual = kind == SyncRun.Kind.MANUAL
        scheduled = kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.INCREMENTAL)
        if not resource_sync.enabled or (resource_sync.unsupported and not manual):
            return _skipped(resource_sync)
        if (resource_sync.paused or connection.sync_paused) and not manual:
            return _skipped(resource_sync)
        if resource_sync.permission_error and not manual:
            return _skipped(resource_sync)
        if (
            scheduled
            and not resource_sync.history_ready
            and resource_sync.created_at
            > now - (timedelta(seconds=settings.SYNC_HISTORY_WAIT_SECONDS))
        ):
            return _skipped(resource_sync)
        expires = resource_sync.lease_expires_at
        if resource_sync.lease_token and expires is not None and expires > now:
            return SyncOutcome(
                SyncStatus.BUSY,
                resource_sync.current_run,
                retry_in=(expires - now).total_seconds(),
            )
        run = resource_sync.current_run
        if run is not None and run.status != SyncRun.Status.RUNNING:
            run = None
        if run is not None:
            # Resumed. A request made while it ran waits for its end (the run sends it
            # then), except the schedule's: this run is the scheduled read.
            if pending and resource_sync.requested_kind == SyncRun.Kind.INCREMENTAL:
                _request_taken(resource_sync)
        else:
            if requested and not pending:
                # A copy of a request's message (sent again, redelivered): a run took it.
                return SyncOutcome(SyncStatus.SKIPPED)
            if not pending and scheduled and _recently_synced(resource_sync, now):
                # A duplicate of a scheduled run that already happened (redelivered, or
                # dispatched twice while the queue was long).
                return SyncOutcome(SyncStatus.SKIPPED)
            if pending:
                kind, full = request_kind, request_full
            mark = resource_sync.high_water_mark
            run_kind = kind
            if mark is None and kind == SyncRun.Kind.INCREMENTAL:
                run_kind = SyncRun.Kind.INITIAL
            if mark is None or full or run_kind == SyncRun.Kind.INITIAL:
                since = None
            else:
                since = mark - timedelta(seconds=settings.SYNC_OVERLAP_SECONDS)
            run = SyncRun.objects.create(
                connection=connection,
                resource=resource,
                kind=run_kind,
                since=since,
            )
            _request_taken(resource_sync)
        run.attempts += 1
        run.save(update_fields=["attempts", "updated_at"])
        resource_sync.current_run = run
        resource_sync.unsupported = False
        resource_sync.lease_token = uuid.uuid4()
        resource_sync.lease_expires_at = now + lease_for
        # Moves with every renewal; once the lease lapses (this worker died), the row is
        # due, and sync_resume_orphaned hands the run to another worker.
        resource_sync.next_sync_at = resource_sync.lease_expires_at
        resource_sync.save(
            update_fields=[
                "current_run",
                "unsupported",
                "lease_token",
                "lease_expires_at",
                "next_sync_at",
                *_REQUEST_FIELDS,
                "updated_at",
            ]
        )
    return _Lease(resource_sync.pk, resource_sync.lease_token, run)


def _skipped(resource_sync: ResourceSync) -> SyncOutcome:
    """Nothing to run (disabled, paused, no access, no history yet): a request waiting is
    dropped, the row's state says why."""
    if resource_sync.requested_at is not None:
        _request_taken(resource_sync)
        resource_sync.save(update_fields=[*_REQUEST_FIELDS, "updated_at"])
    return SyncOutcome(SyncStatus.SKIPPED)


def _recently_synced(resource_sync: ResourceSync, now: datetime) -> bool:
    last = resource_sync.last_success_at
    return last is not None and last > now - timedelta(seconds=resource_sync.interval_seconds / 2)


def _lease_renew(lease: _Lease) -> None:
    now = timezone.now()
    expires = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    renewed = ResourceSync.objects.filter(
        pk=lease.resource_sync_id, lease_token=lease.token
    ).update(lease_expires_at=expires, next_sync_at=expires, updated_at=now)
    if not renewed:
        raise LeaseLost


def _lease_release(lease: _Lease, *, error: str) -> None:
    """Give the lease up but keep the run and its cursor for whoever takes it next."""
    with transaction.atomic():
        now = timezone.now()
        released = ResourceSync.objects.filter(
            pk=lease.resource_sync_id, lease_token=lease.token
        ).update(lease_token=None, lease_expires_at=None, next_sync_at=now, updated_at=now)
        if released:
            SyncRun.objects.filter(pk=lease.run.pk).update(error=error, updated_at=now)


def _lease_release_after_database_error(lease: _Lease) -> None:
    """Drop the broken connection and give the lease up on a fresh one, so the retry can
    take it at once. A database still unreachable keeps it: it lapses in
    SYNC_LEASE_SECONDS, and the retry waits that out."""
    database_connection_drop()
    try:
        _lease_release(lease, error="Lost the database connection; resuming.")
    except DATABASE_LOST:
        database_connection_drop()


def sync_resume_orphaned(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Beat, every SYNC_RESUME_INTERVAL_SECONDS: enqueue the runs whose worker died.

    A live run renews its lease on every page and while it waits, so a lease that lapsed
    means nobody holds the run: another worker resumes it from its cursor within a lease
    and an interval of the crash, rather than at the dispatcher's next minute. (A worker
    process killed alone needs none of this: Celery gives its message back at once, and
    the task retries when the lease lapses.) Re-enqueued rows are pushed a grace period
    ahead, as the dispatcher does, so neither enqueues them again while they wait."""
    if trackstar_key_rejected():
        return 0  # the dispatcher resumes every sync once the key is accepted again
    now = now or timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    grace = timedelta(seconds=max(2 * settings.SYNC_LEASE_SECONDS, 300))
    with transaction.atomic():
        orphaned = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                # next_sync_at moves with every renewal: the index finds the few that lapsed.
                next_sync_at__lte=now,
                lease_token__isnull=False,
                lease_expires_at__lte=now,
                current_run__status=SyncRun.Status.RUNNING,
                enabled=True,
                paused=False,
                connection__status=Connection.Status.ACTIVE,
                connection__sync_paused=False,
            )
            .order_by("next_sync_at")
            .values_list("pk", "connection_id", "resource", "current_run__kind")[:limit]
        )
        ResourceSync.objects.filter(pk__in=[row[0] for row in orphaned]).update(
            next_sync_at=now + grace, updated_at=now
        )
    for _, connection_id, resource, kind in orphaned:
        # The run's own kind: the resumed task passes the same checks the first one did.
        _enqueue(connection_id, resource, kind)
    if orphaned:
        logger.info("Resuming %d syncs whose worker stopped renewing its lease", len(orphaned))
    return len(orphaned)


def _run(
    connection: Connection,
    resource: str,
    lease: _Lease,
    time_budget: float | None,
    page_budget: int | None,
    log_extra: dict[str, Any],
) -> SyncOutcome:
    run = lease.run
    model = RECORD_MODELS[resource]
    # trackstar_updated_date, not the WMS's updated_date: it also moves when Trackstar first
    # sees a record that is old in the WMS (late ingestion, a reinstall, a backfill).
    filters = {"trackstar_updated_date": {"gte": run.since}} if run.since else None
    page_token = run.next_page_token or None
    mark = run.high_water_mark
    started = time.monotonic()
    pages_this_attempt = 0
    # One page ahead: a thread downloads, parses and turns the next page into its SQL
    # statement while the database writes the current one (this thread then waits on
    # PostgreSQL, not on the GIL). Retries, the lease and every write stay on this thread.
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-prefetch")
    db = connections[DEFAULT_DB_ALIAS]

    def fetch(token: str | None) -> Future[_FetchedPage]:
        return prefetch.submit(_fetch_once, connection, model, filters, token, db)

    try:
        pending = fetch(page_token)
        while True:
            try:
                page = _await_page(pending, functools.partial(fetch, page_token), lease)
            except (TrackstarValidationError, TrackstarBadRequest):
                if page_token is None:
                    raise
                # The resumed page token expired or was refused: start this run's query
                # over; upserts are idempotent, so re-reading costs time, not correctness.
                logger.info("Page token refused on resume; restarting the run", extra=log_extra)
                page_token = None
                pending = fetch(None)
                continue
            if page.next_token is not None and page.next_token == page_token:
                raise TrackstarError("Trackstar repeated a page token", path=resource)
            upcoming = fetch(page.next_token) if page.next_token is not None else None
            mark = _commit_page(lease, page, mark)
            pages_this_attempt += 1
            if upcoming is None:
                return _finish_succeeded(connection, lease, mark, log_extra)
            page_token, pending = page.next_token, upcoming
            out_of_time = time_budget is not None and time.monotonic() - started > time_budget
            out_of_pages = page_budget is not None and pages_this_attempt >= page_budget
            if out_of_time or out_of_pages:
                _lease_release(lease, error="")
                return SyncOutcome(SyncStatus.CONTINUE, lease.run)
    finally:
        # Do not wait for a prefetch nobody needs any more (it ends within the timeout).
        prefetch.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class _FetchedPage:
    next_token: str | None
    size: int
    statement: _Statement


def _fetch_once(
    connection: Connection,
    model: type[SyncedRecord],
    filters: Mapping[str, Any] | None,
    page_token: str | None,
    db: BaseDatabaseWrapper,
) -> _FetchedPage:
    """One page, under the rate limit every worker shares for this access token, turned
    into its upsert statement. No database access: this runs in the prefetch thread."""
    acquire(trackstar_get_limiter(), connection.access_token)
    pages = trackstar_client().iter_pages(
        model.resource,
        access_token=connection.access_token,
        filters=filters,
        limit=PAGE_SIZE,
        page_token=page_token,
    )
    try:
        page = next(pages)
    finally:
        pages.close()
    statement = _upsert_statement(connection, model, page.records, timezone.now(), False, db)
    return _FetchedPage(page.next_token, len(page.records), statement)


def _await_page(
    pending: Future[_FetchedPage], refetch: Callable[[], Future[_FetchedPage]], lease: _Lease
) -> _FetchedPage:
    """The page, or the same page asked again: a 429 waits for retry-after and a timeout
    or 5xx backs off, a bounded number of times; then the error goes to the task."""
    for attempt in itertools.count():
        try:
            return _result_renewing(pending, lease)
        except TrackstarRateLimited as e:
            if attempt >= PAGE_RETRIES:
                raise
            wait = e.retry_after + random.uniform(0, 0.25)  # noqa: S311
        except TrackstarUnavailable:
            if attempt >= PAGE_RETRIES:
                raise
            # Exponential backoff with full jitter, as tasks/retry.py, in seconds not minutes.
            wait = random.uniform(  # noqa: S311
                PAGE_BACKOFF_BASE / 2, min(PAGE_BACKOFF_CAP, PAGE_BACKOFF_BASE * 2**attempt)
            )
        _sleep_renewing(wait, lease)
        pending = refetch()
    raise AssertionError("unreachable")


def _heartbeat_seconds() -> float:
    """How often a waiting run renews its lease: three times a lease, so a late renewal
    (a busy machine, a slow statement) does not lose it."""
    return max(0.5, settings.SYNC_LEASE_SECONDS / 3)


def _result_renewing(pending: Future[_FetchedPage], lease: _Lease) -> _FetchedPage:
    """Wait for the page, renewing the lease meanwhile: a page held up by the shared rate
    limit or by a slow Trackstar (up to the read timeout) is a live worker, not a dead one."""
    while not wait_futures([pending], timeout=_heartbeat_seconds()).done:
        _lease_renew(lease)
    return pending.result()


def _sleep_renewing(seconds: float, lease: _Lease) -> None:
    """Sleep (a retry-after may be long), renewing the lease at every heartbeat."""
    _lease_renew(lease)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, _heartbeat_seconds()))
        if time.monotonic() < deadline:
            _lease_renew(lease)


def _commit_page(lease: _Lease, page: _FetchedPage, mark: datetime | None) -> datetime | None:
    """Records, progress, cursor and lease in one transaction. The lease UPDATE comes first:
    it locks the ResourceSync row, so a takeover waits for this commit and a worker whose
    token changed writes nothing."""
    now = timezone.now()
    with transaction.atomic():
        _lease_renew(lease)
        _upsert_execute(page.statement)
        newest = page.statement.newest
        if newest is not None and (mark is None or newest > mark):
            mark = newest
        SyncRun.objects.filter(pk=lease.run.pk).update(
            pages=F("pages") + 1,
            records=F("records") + page.size,
            high_water_mark=mark,
            next_page_token=page.next_token or "",
            error="",
            updated_at=now,
        )
    return mark


def _finish_succeeded(
    connection: Connection, lease: _Lease, mark: datetime | None, log_extra: dict[str, Any]
) -> SyncOutcome:
    run = lease.run
    now = timezone.now()
    with transaction.atomic():
        resource_sync = (
            ResourceSync.objects.select_for_update()
            .filter(pk=lease.resource_sync_id, lease_token=lease.token)
            .first()
        )
        if resource_sync is None:
            raise LeaseLost
        # Max updated_date seen, never past the run's start (a WMS clock ahead of ours must
        # not make us skip what changes meanwhile), never behind the previous mark. A run
        # that saw nothing moves the mark to its start, except before any data arrived:
        # Trackstar fills a new connection's history after it connects (API.md §5), so an
        # empty resource stays on full (cheap) reads until it has records.
        previous = resource_sync.high_water_mark
        if mark is not None:
            new_mark: datetime | None = min(mark, run.started_at)
        else:
            new_mark = run.started_at if previous is not None else None
        if previous is not None and new_mark is not None:
            new_mark = max(new_mark, previous)
        resource_sync.high_water_mark = new_mark
        resource_sync.last_success_at = now
        # A read that succeeded after the wait for Trackstar's initial sync ran out: the
        # resource is being synced now, whatever Trackstar says later.
        resource_sync.history_ready = True
        resource_sync.last_error = ""
        resource_sync.lease_token = None
        resource_sync.lease_expires_at = None
        resource_sync.current_run = None
        resource_sync.next_sync_at = next_slot(
            connection_id=connection.pk,
            resource=resource_sync.resource,
            interval=resource_sync.interval_seconds,
            after=now,
        )
        _request_follow_up(resource_sync, run, succeeded=True)
        resource_sync.save()
        SyncRun.objects.filter(pk=run.pk).update(
            status=SyncRun.Status.SUCCEEDED,
            high_water_mark=new_mark,
            error="",
            next_page_token="",
            finished_at=now,
            updated_at=now,
        )
    run.refresh_from_db()
    logger.info(
        "Synced %d %s records in %d pages", run.records, run.resource, run.pages, extra=log_extra
    )
    return SyncOutcome(SyncStatus.SUCCEEDED, run)


def _finish(lease: _Lease, *, status: str, error: str, **resource_sync_fields: Any) -> SyncRun:
    now = timezone.now()
    with transaction.atomic():
        updated = ResourceSync.objects.filter(
            pk=lease.resource_sync_id, lease_token=lease.token
        ).update(
            lease_token=None,
            lease_expires_at=None,
            current_run=None,
            last_error=error,
            updated_at=now,
            **resource_sync_fields,
        )
        if updated:
            SyncRun.objects.filter(pk=lease.run.pk).update(
                status=status, error=error, finished_at=now, updated_at=now
            )
            _request_follow_up_of(lease.resource_sync_id, lease.run)
    lease.run.refresh_from_db()
    return lease.run


def _finish_failed(lease: _Lease, error: str) -> SyncOutcome:
    resource_sync = ResourceSync.objects.get(pk=lease.resource_sync_id)
    run = _finish(
        lease,
        status=SyncRun.Status.FAILED,
        error=error,
        next_sync_at=timezone.now() + timedelta(seconds=resource_sync.interval_seconds),
    )
    return SyncOutcome(SyncStatus.FAILED, run)


def _finish_unsupported(lease: _Lease, error: str) -> SyncOutcome:
    run = _finish(lease, status=SyncRun.Status.UNSUPPORTED, error=error, unsupported=True)
    return SyncOutcome(SyncStatus.UNSUPPORTED, run)


def _finish_unauthorized(
    connection: Connection, lease: _Lease, error: TrackstarAuthError
) -> SyncOutcome:
    """A 401 on a read: our API key or this access token is wrong, not the customer's WMS
    credentials (API.md §10). The key-only GET /connections/{id} tells which."""
    from connections.health.services import Probe, probe_unauthorized

    probe = probe_unauthorized(connection=connection, error=error)
    if probe == Probe.KEY_REJECTED:
        # Every sync pauses (the dispatcher stops); this run keeps its cursor and resumes.
        _lease_release(lease, error="Paused: Trackstar refuses our API key.")
        return SyncOutcome(SyncStatus.PAUSED, lease.run)
    if probe == Probe.UNREACHABLE:
        _lease_release(lease, error="Trackstar refused the token and then did not answer.")
        raise TrackstarUnavailable("Trackstar did not answer the check after a 401")
    message = {
        Probe.DELETED: "Trackstar no longer has this connection: it was deleted there.",
        Probe.TOKEN_REJECTED: "Trackstar refused this connection's access token.",
    }[probe]
    status = {Probe.DELETED: SyncStatus.DELETED, Probe.TOKEN_REJECTED: SyncStatus.TOKEN_REJECTED}
    run = _finish(lease, status=SyncRun.Status.FAILED, error=message)
    return SyncOutcome(status[probe], run)


def _finish_forbidden(
    connection: Connection, lease: _Lease, error: TrackstarForbidden
) -> SyncOutcome:
    """A 403 on one resource: a missing permission (non-blocking). This resource waits;
    every other keeps syncing. The health check reads Trackstar's errors[] for detail and
    clears the mark when the permission is granted."""
    from connections.health.services import health_check_enqueue

    message = error.message or f"No access to {lease.run.resource}."
    newly = not ResourceSync.objects.filter(
        pk=lease.resource_sync_id, permission_error__gt=""
    ).exists()
    run = _finish(
        lease,
        status=SyncRun.Status.FAILED,
        error=message,
        permission_error=message,
        permission_source=ResourceSync.PermissionSource.READ,
        permission_error_at=timezone.now(),
    )
    if newly:
        audit_record(
            actor=None,
            action="connection.permission_missing",
            connection=connection,
            resource=lease.run.resource,
            reason=message,
        )
    transaction.on_commit(lambda: health_check_enqueue(connection_id=connection.pk), robust=True)
    return SyncOutcome(SyncStatus.FORBIDDEN, run)


def sync_fail(*, connection_id: int, resource: str, reason: str) -> SyncRun | None:
    """The task gave up retrying: end the resource's current run as failed. The next
    scheduled run starts over from the high-water mark."""
    now = timezone.now()
    with transaction.atomic():
        resource_sync = (
            ResourceSync.objects.select_for_update(of=("self",))
            .select_related("current_run")
            .filter(connection_id=connection_id, resource=resource)
            .first()
        )
        if resource_sync is None or resource_sync.current_run is None:
            return None
        expires = resource_sync.lease_expires_at
        if resource_sync.lease_token and expires is not None and expires > now:
            return None  # someone else is running it right now
        run = resource_sync.current_run
        SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(
            status=SyncRun.Status.FAILED, error=reason, finished_at=now, updated_at=now
        )
        resource_sync.current_run = None
        resource_sync.last_error = reason
        resource_sync.lease_token = None
        resource_sync.lease_expires_at = None
        resource_sync.next_sync_at = now + timedelta(seconds=resource_sync.interval_seconds)
        _request_follow_up(resource_sync, run, succeeded=False)
        resource_sync.save()
    run.refresh_from_db()
    return run
