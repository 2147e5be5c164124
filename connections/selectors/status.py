"""What the portal and the sync panel say of each connection and resource: freshness,
status, the dashboard. Reads only, always by customer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db.models import Max, Prefetch
from django.utils import timezone
from django.utils.timesince import timesince

from connections.models import (
    AuthCodeExchange,
    Connection,
    ResourceSync,
    SyncRun,
)
from connections.models.sync import resource_label
from customers.models import Customer

# --- Freshness and status: what the portal says of each connection and resource ------------
#
# One word per state, and a tone the page colours it by: fresh is green, stale amber,
# failing / broken red, paused and disconnected grey, connecting / syncing blue. A broken,
# paused or disconnected connection is never green, and a failing one never reads "just now".

TONES: dict[str, str] = {
    "fresh": "green",
    "connected": "green",
    "stale": "amber",
    "failing": "red",
    "no_access": "red",
    "halted": "red",
    "needs_reconnect": "red",
    "error": "red",
    "paused": "grey",
    "disconnected": "grey",
    "connecting": "blue",
    "syncing": "blue",
    "waiting": "blue",
    "not_synced": "neutral",
}

BADGES: dict[str, str] = {
    "connecting": "Connecting…",
    "syncing": "Syncing…",
    "connected": "Connected",
    "stale": "Out of date",
    "failing": "Sync failing",
    "no_access": "Missing permission",
    "paused": "Paused",
    "needs_reconnect": "Needs reconnect",
    "error": "Not syncing",
    "disconnected": "Disconnected",
    "not_synced": "Not yet synced",
}

PAUSED_SENTENCE = "Paused by your account manager."
# A sync run counts as long from this many records on: the page shows a progress bar, and
# the connection reads "Syncing" even if it synced before (a full re-read, a backfill).
LONG_SYNC_RECORDS = 1000
# How long after connecting the page keeps watching a connection whose history Trackstar
# is still importing (it can take hours at Trackstar; the page need not poll for that long).
WATCH_HISTORY_FOR = timedelta(hours=1)
# A pending exchange older than this is not shown as "Connecting…" any more (the sweep
# retries it; the customer can connect again).
CONNECTING_SHOWN_FOR = timedelta(hours=1)


def sync_error_words(error: str) -> str:
    """A stored sync error (written for staff: exception texts, HTTP details) in plain
    words for customers."""
    text = error.lower()
    if "api key" in text:
        return "Syncing is held up on our side; our team is on it."
    if "database" in text:
        return "Syncing was interrupted; it resumes by itself."
    if "no longer has this connection" in text or "access token" in text:
        return "Trackstar no longer accepts this connection."
    if "unreachable" in text or "did not answer" in text or "busy" in text:
        return "Trackstar is not answering; we keep trying."
    if "internal error" in text:
        return "Something went wrong on our side; the next sync tries again."
    return "The last sync did not finish; the next sync tries again."


def ago(moment: datetime | None, now: datetime | None = None, *, exact: bool = False) -> str:
    """ "4 minutes ago"; "just now" under a minute, unless `exact` (a failing resource's
    last success must not read as if it had just synced). The portal and admin say it so."""
    if moment is None:
        return ""
    now = now or timezone.now()
    if not exact and (now - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment, now)} ago"


@dataclass(frozen=True)
class Freshness:
    """One resource of one connection: how fresh its data is, and why."""

    resource: str
    last_success_at: datetime | None
    interval_seconds: int
    # Why this data is not being kept up to date whatever its age ("" when it is): a broken,
    # disconnected or paused connection's data is stale the moment it stops syncing.
    halted: str = ""
    # fresh, stale, failing, paused, syncing, waiting, not_synced, halted, no_access,
    # disconnected (see TONES).
    state: str = ""
    reason: str = ""  # plain words: why it fails
    records: int | None = None  # of the run in progress
    total: int | None = None  # about how many that run will read, when a past run tells
    busy: bool = False  # the page keeps watching it
    now: datetime | None = None

    @property
    def label(self) -> str:
        return resource_label(self.resource)

    @property
    def stale(self) -> bool:
        if self.halted or self.last_success_at is None:
            return True
        return self._now - self.last_success_at > timedelta(seconds=2 * self.interval_seconds)

    @property
    def _now(self) -> datetime:
        return self.now or timezone.now()

    @property
    def tone(self) -> str:
        return TONES.get(self.state, "neutral")

    @property
    def progress_words(self) -> str:
        if not self.records:
            return ""
        if self.total and self.total > self.records:
            return f"{self.records:,} of about {self.total:,}"
        return f"{self.records:,} so far"

    @property
    def words(self) -> str:
        """The resource's chip: "Orders: updated 4 minutes ago"."""
        label, last = self.label, self.last_success_at
        if self.state == "fresh" and last is not None:
            return f"{label}: updated {ago(last, self._now)}"
        if self.state == "stale" and last is not None:
            return f"{label}: updated {ago(last, self._now)} (stale)"
        if self.state == "failing":
            since = (
                f" Last updated {ago(last, self._now, exact=True)}." if last else " Not synced yet."
            )
            return f"{label}: {self.reason}{since}"
        if self.state == "paused":
            since = f", last updated {ago(last, self._now, exact=True)}" if last else ""
            return f"{label}: paused{since}"
        if self.state == "no_access":
            return f"{label}: no access"
        if self.state == "syncing":
            progress = self.progress_words
            return f"{label}: syncing, {progress}" if progress else f"{label}: syncing…"
        if self.state == "waiting" or (self.state == "not_synced" and not self.halted):
            return f"{label}: first sync in progress"
        if last is None:
            return f"{label}: never synced"
        return f"{label}: last updated {ago(last, self._now, exact=True)}"


@dataclass(frozen=True)
class ConnectionFreshness:
    """One connection's line in the portal: how fresh each of its resources is."""

    connection: Connection
    items: list[Freshness]
    halted: str = ""
    state: str = ""

    @property
    def stale(self) -> bool:
        return any(item.stale for item in self.items)

    @property
    def tone(self) -> str:
        return TONES.get(self.state, "neutral")


# Words for the portal: why a connection's data stopped being updated.
HALTED_WORDS: dict[str, str] = {
    Connection.Status.NEEDS_RECONNECT: "needs reconnect, not updating",
    Connection.Status.ERROR: "not syncing",
    Connection.Status.DISCONNECTED: "disconnected, no longer updated",
}
PAUSED_WORDS = "syncing paused"


def _halted(connection: Connection) -> str:
    if connection.status in HALTED_WORDS:
        return HALTED_WORDS[connection.status]
    return PAUSED_WORDS if connection.sync_paused else ""


def _line_state(connection: Connection) -> str:
    if connection.status == Connection.Status.DISCONNECTED:
        return "disconnected"
    if connection.status in HALTED_WORDS:
        return "halted"
    return "paused" if connection.sync_paused else ""


def _resource_freshness(
    sync: ResourceSync,
    connection: Connection,
    *,
    now: datetime,
    estimates: dict[tuple[int, str], int] | None = None,
) -> Freshness:
    """The state of one resource, from its ResourceSync (and current_run, selected with it)."""
    halted = _halted(connection) or (PAUSED_WORDS if sync.paused else "")
    base = Freshness(
        resource=sync.resource,
        last_success_at=sync.last_success_at,
        interval_seconds=sync.interval_seconds,
        halted=halted,
        now=now,
    )
    status = connection.status
    if status == Connection.Status.DISCONNECTED:
        return replace(base, state="disconnected")
    if status != Connection.Status.ACTIVE:
        # needs_reconnect, error, pending: nothing syncs until that is fixed.
        return replace(base, state="halted" if status != Connection.Status.PENDING else "")
    if connection.sync_paused or sync.paused:
        return replace(base, state="paused")
    if sync.permission_error:
        return replace(base, state="no_access")
    run = sync.current_run if sync.current_run_id else None
    if run is not None and run.status == SyncRun.Status.RUNNING:
        if run.error:
            # Between retries of a page: the run waits, keeping its cursor.
            return replace(base, state="failing", reason=sync_error_words(run.error))
        total = None
        if estimates and run.since is None:
            total = estimates.get((connection.pk, sync.resource))
        return replace(base, state="syncing", records=run.records, total=total, busy=True)
    if sync.last_error:
        return replace(base, state="failing", reason=sync_error_words(sync.last_error))
    if sync.last_success_at is None:
        if sync.requested_at is not None:
            return replace(base, state="syncing", records=0, busy=True)
        recent = connection.connected_at is None or now - connection.connected_at < (
            WATCH_HISTORY_FOR
        )
        if sync.waiting_for_history:
            return replace(base, state="waiting", busy=recent)
        return replace(base, state="not_synced", busy=recent)
    item = replace(base, state="fresh")
    return replace(base, state="stale") if item.stale else item


@dataclass(frozen=True)
class ConnectionStatus:
    """What the portal's dashboard says of one connection: its state, the sentence that
    explains it, and each resource's freshness."""

    connection: Connection
    wms: str  # the integration's name, "ShipBob"
    state: str
    resources: list[Freshness]
    words: str = ""
    notes: list[str] = field(default_factory=list)  # missing permissions, resources not offered
    busy: bool = False

    @property
    def tone(self) -> str:
        return TONES.get(self.state, "neutral")

    @property
    def badge(self) -> str:
        return BADGES.get(self.state, self.state)

    @property
    def last_success_at(self) -> datetime | None:
        """The last successful sync: of the failing resources when some fail (another
        resource's success a minute ago says nothing of the one that fails)."""
        failing = [r for r in self.resources if r.state == "failing"]
        moments = [r.last_success_at for r in failing or self.resources if r.last_success_at]
        if not moments:
            return None
        return min(moments) if failing else max(moments)

    @property
    def last_sync_words(self) -> str:
        """The "Last sync" column: when data last arrived, and that it is failing."""
        last = self.last_success_at
        now = timezone.now()
        if self.state in ("failing", "needs_reconnect", "error"):
            when = f"{ago(last, now, exact=True)}" if last else "Never"
            return f"{when} · failing" if self.state == "failing" else when
        if last is None:
            return "Not yet"
        # "just now" only where data is arriving: never for a paused, disconnected or
        # broken connection.
        return ago(last, now, exact=self.state not in ("connected", "syncing"))

    @property
    def progress(self) -> dict[str, int | None] | None:
        running = [r for r in self.resources if r.state == "syncing"]
        if not running:
            return None
        records = sum(r.records or 0 for r in running)
        totals = [r.total for r in running]
        total = sum(t for t in totals if t) if all(totals) else None
        return {"records": records, "total": total if total and total > records else None}

    @property
    def long_sync(self) -> bool:
        progress = self.progress
        if progress is None:
            return False
        return bool(progress["total"]) or (progress["records"] or 0) >= LONG_SYNC_RECORDS


@dataclass(frozen=True)
class Connecting:
    """An auth code received and not yet exchanged: the row the page shows meanwhile."""

    exchange: AuthCodeExchange
    wms: str
    state: str = "connecting"
    busy: bool = True

    @property
    def badge(self) -> str:
        return BADGES["connecting"]

    @property
    def tone(self) -> str:
        return TONES["connecting"]


@dataclass(frozen=True)
class Dashboard:
    connections: list[ConnectionStatus]
    connecting: list[Connecting]

    @property
    def busy(self) -> bool:
        return bool(self.connecting) or any(status.busy for status in self.connections)

    @property
    def freshness(self) -> list[ConnectionFreshness]:
        """The freshness panel: one line per connection with resources, oldest first. A
        disconnected connection is listed while data it synced is still shown."""
        lines = []
        for status in sorted(
            self.connections, key=lambda s: (s.connection.created_at, s.connection.pk)
        ):
            items = status.resources
            if status.state == "disconnected":
                items = [item for item in items if item.last_success_at is not None]
            if items:
                lines.append(
                    ConnectionFreshness(
                        connection=status.connection,
                        items=items,
                        halted=_halted(status.connection),
                        state=status.state,
                    )
                )
        return lines


def _wms_name(slug: str, integrations: dict | None) -> str:
    info = (integrations or {}).get(slug) or {}
    return info.get("display_name") or slug.replace("-", " ").title()


RECONNECT_WORDS: dict[str, str] = {
    Connection.ReconnectCause.INVALID_CREDENTIALS: "{wms} no longer accepts the saved credentials.",
    Connection.ReconnectCause.TOKEN_REJECTED: "Trackstar no longer accepts this connection.",
    Connection.ReconnectCause.TOKEN_MISSING: "The connection was made, but did not finish.",
}


def _reconnect_words(connection: Connection, wms: str, can_reconnect: bool) -> str:
    cause = RECONNECT_WORDS.get(connection.reconnect_cause, "{wms} needs to be connected again.")
    finish = connection.reconnect_cause == Connection.ReconnectCause.TOKEN_MISSING
    if can_reconnect:
        then = "Reconnect to finish." if finish else "Reconnect to resume syncing."
    else:
        then = "An owner of your account can reconnect it."
    return f"{cause.format(wms=wms)} {then}"


def _syncing_words(resources: list[Freshness]) -> str:
    running = [r for r in resources if r.state == "syncing"]
    if len(running) == 1 and running[0].records:
        one, label = running[0], running[0].label.lower()
        if one.total and one.total > (one.records or 0):
            return f"{one.records:,} of about {one.total:,} {label}"
        return f"{one.records:,} {label} so far"
    if running:
        records = sum(r.records or 0 for r in running)
        totals = [r.total for r in running]
        if records and all(totals):
            return f"{records:,} of about {sum(t for t in totals if t):,} records"
        if records:
            return f"{records:,} records so far"
        return "Reading your data…"
    return "Waiting for Trackstar to import your history."


def _connection_status(
    connection: Connection,
    resources: list[Freshness],
    *,
    wms: str,
    reconnecting: bool,
    can_reconnect: bool,
    notes: list[str],
) -> ConnectionStatus:
    def status(state: str, words: str = "", busy: bool = False) -> ConnectionStatus:
        return ConnectionStatus(connection, wms, state, resources, words, notes, busy)

    if connection.status == Connection.Status.DISCONNECTED:
        return status("disconnected", "Disconnected: its data is kept, and no longer updated.")
    if reconnecting or connection.status == Connection.Status.PENDING:
        return status("connecting", "Connecting…" if not reconnecting else "Reconnecting…", True)
    if connection.status == Connection.Status.NEEDS_RECONNECT:
        return status("needs_reconnect", _reconnect_words(connection, wms, can_reconnect))
    if connection.status == Connection.Status.ERROR:
        return status("error", "Syncing has stopped. Contact your account manager if this lasts.")
    if connection.sync_paused:
        return status("paused", PAUSED_SENTENCE)
    busy = any(r.busy for r in resources)
    failing = [r for r in resources if r.state == "failing"]
    if failing:
        reasons = dict.fromkeys(r.reason for r in failing)  # in order, once each
        names = ", ".join(r.label.lower() for r in failing).capitalize()
        return status("failing", f"{names}: {' '.join(reasons)}", busy)
    if any(r.state == "no_access" for r in resources):
        return status("no_access", "", busy)
    first_sync = any(r.busy and r.last_success_at is None for r in resources)
    long_run = any(
        r.state == "syncing" and (r.records or 0) >= LONG_SYNC_RECORDS for r in resources
    )
    if first_sync or long_run:
        return status("syncing", _syncing_words(resources), busy)
    if not resources or all(r.last_success_at is None for r in resources):
        # Just connected, its resources not set up yet: the page keeps watching.
        connected = connection.connected_at
        recent = connected is not None and timezone.now() - connected < WATCH_HISTORY_FOR
        return status("not_synced", "The first sync starts shortly.", busy or recent)
    if any(r.state == "stale" for r in resources):
        return status("stale", "Syncs are running late; we keep trying.", busy)
    return status("connected", "", busy)


def _full_run_estimates(connection_ids: list[int]) -> dict[tuple[int, str], int]:
    """(connection, resource) → records of its largest full read that succeeded: about how
    many a full read running now will find (Trackstar's total_count is per page)."""
    rows = (
        SyncRun.objects.filter(
            connection_id__in=connection_ids, status=SyncRun.Status.SUCCEEDED, since__isnull=True
        )
        .values("connection_id", "resource")
        .annotate(most=Max("records"))
        .order_by()
    )
    return {(row["connection_id"], row["resource"]): row["most"] for row in rows}


def connection_status_list(
    *, customer: Customer, integrations: dict | None = None, can_reconnect: bool = True
) -> Dashboard:
    """Every connection of the customer with its state and each resource's freshness, and
    the connects still being exchanged, in three or four queries whatever their number.
    `can_reconnect`: the words say "Reconnect" only to someone who may."""
    now = timezone.now()
    connections = list(
        Connection.objects.filter(customer=customer)
        .prefetch_related(
            Prefetch(
                "resource_syncs",
                queryset=ResourceSync.objects.filter(enabled=True)
                .select_related("current_run")
                .order_by("resource"),
            )
        )
        .order_by("-created_at", "-pk")
    )
    pending = list(
        AuthCodeExchange.objects.filter(
            customer=customer,
            status=AuthCodeExchange.Status.PENDING,
            created_at__gte=now - CONNECTING_SHOWN_FOR,
        ).order_by("-created_at")
    )
    reinstalling = {e.reinstall_connection_id for e in pending if e.reinstall_connection_id}
    full_runs = [
        connection.pk
        for connection in connections
        for sync in connection.resource_syncs.all()
        if sync.current_run_id and sync.current_run and sync.current_run.since is None
    ]
    estimates = _full_run_estimates(full_runs) if full_runs else {}
    statuses = []
    for connection in connections:
        wms = _wms_name(connection.integration_name, integrations)
        syncs = [sync for sync in connection.resource_syncs.all() if not sync.unsupported]
        notes = [
            sync.health_words(wms)
            for sync in connection.resource_syncs.all()
            if (sync.permission_error or sync.unsupported)
            and connection.status in (Connection.Status.ACTIVE, Connection.Status.NEEDS_RECONNECT)
        ]
        resources = [
            _resource_freshness(sync, connection, now=now, estimates=estimates) for sync in syncs
        ]
        statuses.append(
            _connection_status(
                connection,
                resources,
                wms=wms,
                reconnecting=connection.pk in reinstalling,
                can_reconnect=can_reconnect,
                notes=notes,
            )
        )
    connecting = [
        Connecting(exchange=e, wms=_wms_name(e.integration_name, integrations))
        for e in pending
        if not e.reinstall_connection_id
    ]
    return Dashboard(connections=statuses, connecting=connecting)


def freshness_list(
    *, customer: Customer, resources: list[str] | None = None
) -> list[ConnectionFreshness]:
    """Per connection and resource, how fresh the customer's data is, in one query. A
    disconnected connection is listed while data it synced is still shown."""
    now = timezone.now()
    syncs = ResourceSync.objects.filter(
        connection__customer=customer, unsupported=False, enabled=True
    )
    if resources is not None:
        syncs = syncs.filter(resource__in=resources)
    syncs = syncs.select_related("connection", "current_run").order_by(
        "connection__created_at", "connection_id", "resource"
    )
    lines: dict[int, ConnectionFreshness] = {}
    for sync in syncs:
        connection = sync.connection
        if connection.status == Connection.Status.DISCONNECTED and sync.last_success_at is None:
            continue
        line = lines.get(connection.pk)
        if line is None:
            state = _line_state(connection)
            line = lines[connection.pk] = ConnectionFreshness(
                connection=connection, items=[], halted=_halted(connection), state=state
            )
        line.items.append(_resource_freshness(sync, connection, now=now))
    return list(lines.values())
