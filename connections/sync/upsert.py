"""Writing Trackstar records into their tables: one INSERT ... ON CONFLICT statement per
batch, keyed on (connection, trackstar_id), for the sync's pages and the webhooks' records.
No Trackstar calls and no scheduling here: the sync engine (run.py) builds a page's statement
in its prefetch thread and runs it in the page's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connections
from django.db import connection as db_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from connections.models import RECORD_MODELS, Connection, SyncedRecord
from connections.models.records import parse_datetime

logger = logging.getLogger(__name__)

# Records written by one statement of records_upsert (a sync's page is one statement too).
RECORDS_PER_STATEMENT = 1000


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
        if len(batch) == RECORDS_PER_STATEMENT:
            written += records_upsert_batch(connection, model, batch, synced_at, only_if_newer)[0]
            batch = []
    if batch:
        written += records_upsert_batch(connection, model, batch, synced_at, only_if_newer)[0]
    return written


@dataclass(frozen=True)
class UpsertStatement:
    sql: str
    params: list[Any]
    # Newest trackstar_updated_date among the records (updated_date for a record without
    # one), for the run's high-water mark (API.md §10).
    newest: datetime | None


def records_upsert_batch(
    connection: Connection,
    model: type[SyncedRecord],
    records: Sequence[Mapping[str, Any]],
    synced_at: datetime | None,
    only_if_newer: bool,
) -> tuple[int, datetime | None]:
    """Upsert a batch in one statement. Returns (rows written, newest updated_date)."""
    statement = upsert_statement_build(connection, model, records, synced_at, only_if_newer)
    return upsert_statement_execute(statement), statement.newest


def upsert_statement_build(
    connection: Connection,
    model: type[SyncedRecord],
    records: Sequence[Mapping[str, Any]],
    synced_at: datetime | None,
    only_if_newer: bool,
    db: BaseDatabaseWrapper | None = None,
) -> UpsertStatement:
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
        return UpsertStatement("", [], newest)

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
    return UpsertStatement(sql, params, newest)


def upsert_statement_execute(statement: UpsertStatement) -> int:
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
