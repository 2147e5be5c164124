"""The sync engine: keep a local copy of each connection's WMS records (DESIGN.md §6).

One sync per (connection, resource) at a time, held by a lease on its ResourceSync row.
A run pages through Trackstar 1000 records at a time and commits each page in one
transaction: one upsert statement for the records, the run's progress and cursor, and the
lease renewal, which also fences out a worker whose lease was taken over. A task that
dies mid-run leaves the cursor behind; the next task to take the lease resumes there.
"""

from __future__ import annotations

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
from kombu.exceptions import OperationalError as BrokerError

from ..clients import trackstar_client
from ..models import RECORD_MODELS, Connection, ResourceSync, SyncedRecord, SyncRun
from ..models.records import parse_datetime
from ..ratelimit import acquire, trackstar_get_limiter
from ..trackstar import (
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
from .account import trackstar_key_rejected

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


@dataclass(frozen=True)
class SyncOutcome:
    # succeeded, failed, unsupported, forbidden (a missing permission), token_rejected,
    # deleted (at Trackstar): the run ended. paused: Trackstar refuses our API key.
    # continue: out of time, the task enqueues the rest; busy: another worker holds the
    # lease (retry_in seconds left on it); skipped: nothing to do; lease_lost: fenced out.
    status: str
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


def sync_schedule_initial(*, connection: Connection) -> list[str]:
    """After a connection becomes active. A resource Trackstar has finished its initial
    sync of (a reconnect keeps Trackstar's history) continues from its mark now; the others
    wait for connection.historical-sync-completed, since until then their reads return
    nothing (API.md §10). The health check asked for here reads Trackstar's
    historical_sync_completed map, in case the webhooks came first or never come."""
    from ..models import WebhookEvent
    from .health import health_check_enqueue

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
        _enqueue(connection.pk, resource_sync.resource, kind)
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
    for rs in _ensure_resource_syncs(connection):
        # A conditional UPDATE: the webhook and the health poll may say it at the same
        # moment, and only one of them may start the read.
        if rs.resource in wanted and ResourceSync.objects.filter(
            pk=rs.pk, history_ready=False
        ).update(history_ready=True, updated_at=timezone.now()):
            newly.append(rs.resource)
            kind = SyncRun.Kind.WEBHOOK if rs.high_water_mark else SyncRun.Kind.INITIAL
            sync_enqueue_on_commit(connection.pk, rs.resource, kind)
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
    names = list(pending.values_list("resource", flat=True))
    pending.update(force_sync_requested_at=None, updated_at=timezone.now())
    for resource in names:
        sync_enqueue_on_commit(connection.pk, resource, SyncRun.Kind.FORCE)
    return names


def sync_request_now(
    *,
    connection: Connection,
    resources: Iterable[str] | None = None,
    full: bool = False,
    kind: str = SyncRun.Kind.MANUAL,
) -> list[str]:
    """Staff's "resync now": enqueue a run of these resources (default: all it offers),
    after the caller's transaction commits. `full` ignores the high-water mark. The webhook
    handler passes kind=webhook for connection.historical-sync-completed (always full)."""
    wanted = set(resources) if resources is not None else None
    requested = [
        rs.resource
        for rs in _ensure_resource_syncs(connection)
        if wanted is None or rs.resource in wanted
    ]
    for resource in requested:
        sync_enqueue_on_commit(connection.pk, resource, kind, full)
    return requested


def sync_enqueue_on_commit(
    connection_id: int, resource: str, kind: str, full: bool = False
) -> None:
    """Enqueue a run once the caller's transaction commits (a dead broker leaves it due)."""
    transaction.on_commit(
        functools.partial(_enqueue, connection_id, resource, kind, full), robust=True
    )


def _enqueue(connection_id: int, resource: str, kind: str, full: bool = False) -> bool:
    from ..tasks import sync_resource as sync_resource_task

    try:
        sync_resource_task.delay(connection_id, resource, kind, full)
    except BrokerError:
        # Leave the row due: the dispatcher enqueues it once the broker is back.
        ResourceSync.objects.filter(connection_id=connection_id, resource=resource).update(
            next_sync_at=timezone.now()
        )
        logger.warning(
            "Broker unavailable; %s sync left for the dispatcher",
            resource,
            extra={"connection_id": connection_id},
        )
        return False
    return True


def sync_dispatch_due(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Beat, every minute: enqueue the syncs that are due, oldest first, at most `limit`.

    A dispatched row is pushed a grace period ahead, so the next tick does not enqueue it
    again while it waits in the queue; when it runs, the lease and then the schedule move
    next_sync_at on. Concurrent dispatchers skip each other's locked rows."""
    now = now or timezone.now()
    limit = limit or settings.SYNC_DISPATCH_BATCH
    grace = timedelta(seconds=max(2 * settings.SYNC_LEASE_SECONDS, 300))
    # Active connections without sync state (made before sync existed, or by a path that
    # skipped sync_schedule_initial) get it now.
    for connection in Connection.objects.filter(
        status=Connection.Status.ACTIVE, resource_syncs__isnull=True
    )[:limit]:
        _ensure_resource_syncs(connection, now=now)

    if trackstar_key_rejected():
        # Trackstar refuses our API key: every read would be a 401. Syncs resume when the
        # health poll finds the key accepted again.
        return 0
    _force_syncs_timed_out(now)
    # A resource waits for Trackstar's initial sync; if neither the webhook nor the map on
    # GET /connections/{id} ever says so, it is read anyway after SYNC_HISTORY_WAIT_SECONDS
    # (never skip data).
    history_known = Q(history_ready=True) | Q(
        created_at__lt=now - timedelta(seconds=settings.SYNC_HISTORY_WAIT_SECONDS)
    )
    with transaction.atomic():
        due = list(
            ResourceSync.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                history_known,
                enabled=True,
                unsupported=False,
                paused=False,
                permission_error="",
                next_sync_at__lte=now,
                connection__status=Connection.Status.ACTIVE,
                connection__sync_paused=False,
            )
            .order_by("next_sync_at")
            .values_list("pk", "connection_id", "resource", "high_water_mark")[:limit]
        )
        ResourceSync.objects.filter(pk__in=[row[0] for row in due]).update(
            next_sync_at=now + grace, updated_at=now
        )
    for _, connection_id, resource, mark in due:
        kind = SyncRun.Kind.INCREMENTAL if mark else SyncRun.Kind.INITIAL
        _enqueue(connection_id, resource, kind)
    if due:
        logger.info("Dispatched %d syncs", len(due))
    return len(due)


def _force_syncs_timed_out(now: datetime) -> None:
    """Force syncs whose completion event never came: read what Trackstar has now."""
    cutoff = now - timedelta(seconds=settings.SYNC_FORCE_TIMEOUT_SECONDS)
    late = list(
        ResourceSync.objects.filter(force_sync_requested_at__lt=cutoff).values_list(
            "pk", "connection_id", "resource"
        )[:500]
    )
    if not late:
        return
    ResourceSync.objects.filter(pk__in=[row[0] for row in late]).update(
        force_sync_requested_at=None, updated_at=now
    )
    for _, connection_id, resource in late:
        _enqueue(connection_id, resource, SyncRun.Kind.FORCE)


# --- One run ---------------------------------------------------------------------------------


def sync_resource(
    *,
    connection_id: int,
    resource: str,
    kind: str = SyncRun.Kind.INCREMENTAL,
    full: bool = False,
    time_budget: float | None = None,
    page_budget: int | None = None,
) -> SyncOutcome:
    """Run (or resume) the sync of one resource of one connection.

    Raises TrackstarUnavailable / TrackstarRateLimited when Trackstar stays unreachable
    for a page: the lease is released and the run keeps its cursor, so a retry resumes it.
    `time_budget` / `page_budget` end a long run early with status "continue"."""
    if resource not in RECORD_MODELS:
        raise ValueError(f"Not a synced resource: {resource!r}")
    connection = Connection.objects.select_related("customer").filter(pk=connection_id).first()
    if connection is None or connection.status != Connection.Status.ACTIVE:
        return SyncOutcome("skipped")
    if not connection.access_token:
        return SyncOutcome("skipped")
    acquired = _lease_acquire(connection, resource, kind, full)
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
        return SyncOutcome("lease_lost", lease.run)
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
    except Exception as e:
        # A bug or a database error: end the run visibly rather than resume into it forever.
        logger.exception("Sync crashed", extra=log_extra)
        _finish_failed(lease, f"Internal error: {type(e).__name__}")
        raise


def _lease_acquire(
    connection: Connection, resource: str, kind: str, full: bool
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
        manual = kind == SyncRun.Kind.MANUAL
        scheduled = kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.INCREMENTAL)
        if not resource_sync.enabled or (resource_sync.unsupported and not manual):
            return SyncOutcome("skipped")
        if (resource_sync.paused or connection.sync_paused) and not manual:
            return SyncOutcome("skipped")
        if resource_sync.permission_error and not manual:
            return SyncOutcome("skipped")
        if (
            scheduled
            and not resource_sync.history_ready
            and resource_sync.created_at
            > now - (timedelta(seconds=settings.SYNC_HISTORY_WAIT_SECONDS))
        ):
            return SyncOutcome("skipped")
        expires = resource_sync.lease_expires_at
        if resource_sync.lease_token and expires is not None and expires > now:
            return SyncOutcome(
                "busy",
                resource_sync.current_run,
                retry_in=(expires - now).total_seconds(),
            )
        run = resource_sync.current_run
        if run is not None and run.status != SyncRun.Status.RUNNING:
            run = None
        if run is None:
            if kind in (SyncRun.Kind.INITIAL, SyncRun.Kind.INCREMENTAL) and _recently_synced(
                resource_sync, now
            ):
                # A duplicate of a scheduled run that already happened (redelivered, or
                # dispatched twice while the queue was long).
                return SyncOutcome("skipped")
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
        run.attempts += 1
        run.save(update_fields=["attempts", "updated_at"])
        resource_sync.current_run = run
        resource_sync.unsupported = False
        resource_sync.lease_token = uuid.uuid4()
        resource_sync.lease_expires_at = now + lease_for
        # If this worker dies, the dispatcher looks again once the lease has lapsed.
        resource_sync.next_sync_at = resource_sync.lease_expires_at
        resource_sync.save(
            update_fields=[
                "current_run",
                "unsupported",
                "lease_token",
                "lease_expires_at",
                "next_sync_at",
                "updated_at",
            ]
        )
    return _Lease(resource_sync.pk, resource_sync.lease_token, run)


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
                return SyncOutcome("continue", lease.run)
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
            return pending.result()
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
        # Keep the lease while waiting, so a slow page is not mistaken for a dead worker.
        _lease_renew(lease)
        time.sleep(wait)
        pending = refetch()
    raise AssertionError("unreachable")


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
    return SyncOutcome("succeeded", run)


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
    return SyncOutcome("failed", run)


def _finish_unsupported(lease: _Lease, error: str) -> SyncOutcome:
    run = _finish(lease, status=SyncRun.Status.UNSUPPORTED, error=error, unsupported=True)
    return SyncOutcome("unsupported", run)


def _finish_unauthorized(
    connection: Connection, lease: _Lease, error: TrackstarAuthError
) -> SyncOutcome:
    """A 401 on a read: our API key or this access token is wrong, not the customer's WMS
    credentials (API.md §10). The key-only GET /connections/{id} tells which."""
    from .health import Probe, probe_unauthorized

    probe = probe_unauthorized(connection=connection, error=error)
    if probe == Probe.KEY_REJECTED:
        # Every sync pauses (the dispatcher stops); this run keeps its cursor and resumes.
        _lease_release(lease, error="Paused: Trackstar refuses our API key.")
        return SyncOutcome("paused", lease.run)
    if probe == Probe.UNREACHABLE:
        _lease_release(lease, error="Trackstar refused the token and then did not answer.")
        raise TrackstarUnavailable("Trackstar did not answer the check after a 401")
    message = {
        Probe.DELETED: "Trackstar no longer has this connection: it was deleted there.",
        Probe.TOKEN_REJECTED: "Trackstar refused this connection's access token.",
    }[probe]
    run = _finish(lease, status=SyncRun.Status.FAILED, error=message)
    return SyncOutcome(probe.value, run)


def _finish_forbidden(
    connection: Connection, lease: _Lease, error: TrackstarForbidden
) -> SyncOutcome:
    """A 403 on one resource: a missing permission (non-blocking). This resource waits;
    every other keeps syncing. The health check reads Trackstar's errors[] for detail and
    clears the mark when the permission is granted."""
    from .health import health_check_enqueue

    message = error.message or f"No access to {lease.run.resource}."
    run = _finish(
        lease,
        status=SyncRun.Status.FAILED,
        error=message,
        permission_error=message,
        permission_source=ResourceSync.PermissionSource.READ,
        permission_error_at=timezone.now(),
    )
    transaction.on_commit(lambda: health_check_enqueue(connection_id=connection.pk), robust=True)
    return SyncOutcome("forbidden", run)


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
        resource_sync.save()
    run.refresh_from_db()
    return run
