"""The connection page's sync panel and history backfills, and the list of sync runs."""

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from config.admin import ReadOnlyAdmin
from connections import services
from connections.integrations import integration_display_name
from connections.models import Backfill, Connection, ResourceSync, SyncRun
from connections.selectors.status import Freshness, ago


def _last_full_read_records() -> Subquery:
    """Records the resource's last complete full read brought: the "about" of a full
    read's progress (Trackstar's total_count is the page's, not the whole list's)."""
    return Subquery(
        SyncRun.objects.filter(
            connection=OuterRef("connection"),
            resource=OuterRef("resource"),
            status=SyncRun.Status.SUCCEEDED,
            since__isnull=True,
        )
        .order_by("-started_at")
        .values("records")[:1]
    )


def sync_panel_rows(connection: Connection) -> QuerySet[ResourceSync]:
    return (
        ResourceSync.objects.filter(connection=connection)
        .select_related("current_run", "connection")
        .annotate(expected_records=_last_full_read_records())
        .order_by("resource")
    )


def run_is_retrying(run: SyncRun | None) -> bool:
    """A run that stopped on an error it will get over (Trackstar busy or unreachable, a
    lost database connection): it keeps its cursor and the task tries again."""
    return run is not None and run.status == SyncRun.Status.RUNNING and bool(run.error)


def sync_state(resource_sync: ResourceSync) -> dict:
    """The sync panel's State cell, as words and numbers (the page and its poll share it)."""
    words, busy = "", False
    records: int | None = None
    expected: int | None = None
    run = resource_sync.current_run
    if resource_sync.unsupported:
        words = "Not offered by this WMS"
    elif resource_sync.paused or resource_sync.connection.sync_paused:
        words = "Paused"
    elif run is not None and run.status == SyncRun.Status.RUNNING:
        busy = True
        records = run.records
        if run.since is None:
            expected = getattr(resource_sync, "expected_records", None) or None
        if run_is_retrying(run):
            words = (
                f"Retrying (attempt {run.attempts}, {run.records:,} records so far). "
                f"Last error: {run.error}"
            )
        elif run.pages == 0:
            words = "Starting: asking Trackstar for the first page"
        elif expected and expected >= run.records:
            words = f"Syncing: {run.records:,} of about {expected:,} records"
        else:
            words = f"Syncing: {run.records:,} records so far"
        if resource_sync.requested_at is not None:
            words += "; one more run asked, after this one"
    elif resource_sync.requested_at is not None and resource_sync.enabled:
        busy = True
        kind = resource_sync.requested_kind
        label = SyncRun.Kind(kind).label if kind in SyncRun.Kind.values else "Sync"
        words = f"Queued ({label}, asked {ago(resource_sync.requested_at)})"
    else:
        words = "Scheduled" if resource_sync.enabled else "Disabled"
    if resource_sync.force_sync_requested_at is not None:
        busy = True
    return {
        "resource": resource_sync.resource,
        "state": words,
        "records": records,
        "expected": expected,
        "retrying": run_is_retrying(run),
        "busy": busy,
        "last_error": resource_sync.last_error,
    }


class ResourceSyncInline(admin.TabularInline):
    """The sync panel: one row per resource, with its last run and a resync button."""

    model = ResourceSync
    extra = 0
    can_delete = False
    verbose_name = "resource sync"
    verbose_name_plural = "Sync panel"
    fields = readonly_fields = (
        "resource",
        "state",
        "health",
        "last_run",
        "last_success_at",
        "freshness",
        "next_sync_at",
        "last_error_cell",
        "resync",
    )
    ordering = ["resource"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    # The panel is the connection's: whoever may see the connection sees it, and nothing
    # in it is edited in the form (its buttons post to their own views).
    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("connections.view_connection") or request.user.has_perm(
            "connections.change_connection"
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None):
        if request.user.has_perm("connections.change_connection"):
            return self.fields
        return tuple(f for f in self.fields if f != "resync")

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("current_run", "connection")
            .annotate(expected_records=_last_full_read_records())
        )

    @admin.display(description="State")
    def state(self, obj: ResourceSync) -> str:
        state = sync_state(obj)
        bar = ""
        if state["expected"] and state["records"] is not None:
            bar = format_html(
                '<br><progress max="{}" value="{}" data-sync-progress="{}"></progress>',
                state["expected"],
                min(state["records"], state["expected"]),
                obj.resource,
            )
        return format_html(
            '<span data-sync-state="{}"{}>{}</span>{}',
            obj.resource,
            mark_safe(' class="sync-retrying"') if state["retrying"] else "",
            state["state"],
            bar,
        )

    @admin.display(description="Last error")
    def last_error_cell(self, obj: ResourceSync) -> str:
        return format_html('<span data-sync-error="{}">{}</span>', obj.resource, obj.last_error)

    @admin.display(description="Health")
    def health(self, obj: ResourceSync) -> str:
        words = obj.health_words(integration_display_name(obj.connection.integration_name))
        if obj.force_sync_requested_at is not None:
            words = (
                f"Trackstar is refreshing from the WMS (asked "
                f"{ago(obj.force_sync_requested_at)}); we read when it is done. " + words
            )
        return words or "OK"

    @admin.display(description="Last run")
    def last_run(self, obj: ResourceSync) -> str:
        run = obj.connection.sync_runs.filter(resource=obj.resource).first()
        if run is None:
            return "—"
        url = reverse("admin:connections_syncrun_change", args=[run.pk])
        return format_html(
            '<a href="{}">{} {}</a>: {} records, {} pages',
            url,
            run.get_kind_display(),
            run.get_status_display().lower(),
            run.records,
            run.pages,
        )

    @admin.display(description="Freshness")
    def freshness(self, obj: ResourceSync) -> str:
        if obj.unsupported:
            return "—"
        item = Freshness(obj.resource, obj.last_success_at, obj.interval_seconds)
        return format_html(
            '<span style="color:{}">{}</span>',
            "#a85d00" if item.stale else "#0f7b45",
            "stale" if item.stale else "fresh",
        )

    @admin.display(description="")
    def resync(self, obj: ResourceSync) -> str:
        if obj.unsupported:
            return ""
        url = reverse("admin:connections_connection_resync", args=[obj.connection_id])
        return format_html(
            '<button type="submit" class="button" formaction="{}?resource={}" formmethod="post" '
            'name="_resync" title="Ask Trackstar to pull from the WMS now, then read">'
            "Resync now</button> "
            '<button type="submit" class="button" formaction="{}?resource={}&amp;mode=reread" '
            'formmethod="post" name="_reread" title="Read Trackstar\'s whole copy again">'
            "Re-read</button>",
            url,
            obj.resource,
            url,
            obj.resource,
        )


class BackfillInline(admin.TabularInline):
    """History backfills (Trackstar on-demand syncs) of this connection."""

    model = Backfill
    extra = 0
    can_delete = False
    verbose_name_plural = "History backfills"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("requested_by")

    fields = readonly_fields = (
        "resource",
        "window",
        "status",
        "requested_by",
        "created_at",
        "finished_at",
        "error",
        "cancel",
    )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    has_view_permission = ResourceSyncInline.has_view_permission
    has_change_permission = ResourceSyncInline.has_change_permission

    def get_fields(self, request, obj=None):
        if request.user.has_perm("connections.change_connection"):
            return self.fields
        return tuple(f for f in self.fields if f != "cancel")

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="Window")
    def window(self, obj: Backfill) -> str:
        last_day = obj.end_time - timedelta(microseconds=1)  # the end is exclusive
        return f"{obj.start_time:%Y-%m-%d} → {last_day:%Y-%m-%d}"

    @admin.display(description="")
    def cancel(self, obj: Backfill) -> str:
        if obj.status != Backfill.Status.OPEN:
            return ""
        url = reverse(
            "admin:connections_connection_backfill_cancel", args=[obj.connection_id, obj.pk]
        )
        return format_html(
            '<button type="submit" class="button" formaction="{}" '
            'formmethod="post" name="_cancel_backfill">Cancel</button>',
            url,
        )


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "connection",
        "resource",
        "kind",
        "status",
        "pages",
        "records",
        "duration",
        "attempts",
        "error_short",
    ]
    list_filter = ["status", "resource", "kind"]
    search_fields = ["connection__trackstar_connection_id", "connection__customer__name"]
    list_select_related = ["connection", "connection__customer"]
    actions = ["retry"]

    @admin.display(description="Duration")
    def duration(self, obj: SyncRun) -> str:
        seconds = obj.duration_seconds
        return "—" if seconds is None else f"{seconds:.1f} s"

    @admin.display(description="Error")
    def error_short(self, obj: SyncRun) -> str:
        return obj.error[:100]

    def has_change_permission(self, request, obj=None) -> bool:
        # Read-only fields, but the retry action needs change permission on the list.
        return obj is None and request.user.has_perm("connections.change_connection")

    @admin.action(description="Retry (sync the resource again)", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[SyncRun]) -> None:
        done = set()
        for run in queryset.filter(status=SyncRun.Status.FAILED).select_related("connection"):
            if (run.connection_id, run.resource) in done:
                continue
            try:
                services.connection_reread(
                    connection=run.connection, actor=request.user, resources=[run.resource]
                )
                done.add((run.connection_id, run.resource))
            except ValidationError as e:
                messages.warning(request, " ".join(e.messages))
        messages.success(request, f"Queued {len(done)} resync(s).")
