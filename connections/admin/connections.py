"""A connection's page and the connection list, with their buttons and actions."""

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Max, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from audit.links import audit_log_url
from connections import services
from connections.admin.attention import needs_attention
from connections.admin.sync import BackfillInline, ResourceSyncInline, sync_panel_rows, sync_state
from connections.forms import BackfillForm
from connections.integrations import connection_label
from connections.link import magic_links as magic_link_service
from connections.models import Backfill, Connection, MagicLink, SyncRun
from connections.models.sync import resource_label
from connections.selectors.status import ago
from connections.services import connection_label_clean
from connections.sync import backfills as backfill_service
from connections.trackstar import TrackstarError

# Clicking "Send reconnect link" again within this sends no second email.
RECONNECT_LINK_RESEND_AFTER = timedelta(minutes=10)

HEALTH_KINDS = {
    "invalid_credentials": "Invalid credentials (blocking)",
    "missing_permission": "Missing permission (non-blocking)",
    "unclassified": "Unclassified error",
}


def who(connection: Connection) -> str:
    """How feedback names a connection: "ShipBob 2 of Acme Outdoor"."""
    return f"{connection_label(connection)} of {connection.customer.name}"


def _names(connections: list[Connection], most: int = 5) -> str:
    names = [who(c) for c in connections[:most]]
    if len(connections) > most:
        names.append(f"{len(connections) - most} more")
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    # Fits 1280 px: who, which WMS, how it is, when it last synced, what is wrong. The
    # Trackstar id is on the connection's page and found by the search box.
    list_display = ["customer", "name", "status_label", "last_synced_at", "problem"]
    list_display_links = ["name"]
    inlines = [ResourceSyncInline, BackfillInline]
    list_filter = ["status", "integration_name", "source", "sync_paused"]
    search_fields = ["trackstar_connection_id", "customer__name", "integration_name", "label"]
    search_help_text = "Customer, WMS, name or Trackstar connection id"
    list_select_related = ["customer"]
    autocomplete_fields = ["customer"]
    # The token itself is never rendered: not in the form, not in the list. The label is
    # the one thing staff edit here (saved through services.connection_rename).
    exclude = ["access_token", "trackstar_errors", "health_next_check_at"]
    readonly_fields = [
        "customer",
        "trackstar_connection_id",
        "integration_name",
        "integration_type",
        "status",
        "reconnect_cause",
        "trackstar_health",
        "health_checked_at",
        "source",
        "access_token_masked",
        "available_actions",
        "last_error",
        "sync_paused",
        "created_by",
        "connected_at",
        "disconnected_at",
        "reconnect_notified_at",
        "created_at",
        "updated_at",
    ]
    actions = [
        "resync_now",
        "reread_all",
        "send_reconnect_link",
        "disconnect",
        "pause_syncing",
        "resume_syncing",
    ]
    change_form_template = "admin/connections/connection/change_form.html"

    @admin.display(description="Name", ordering="label")
    def name(self, obj: Connection) -> str:
        return connection_label(obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)

        class ConnectionForm(form):  # type: ignore[misc, valid-type]
            def clean_label(self):
                # The service's rules, as a form error (not a 500 from save_model).
                return connection_label_clean(
                    connection=self.instance, label=self.cleaned_data["label"]
                )

        return ConnectionForm

    def save_model(self, request, obj, form, change) -> None:
        # Only the label is editable; it goes through the service (validated, audited).
        if change and "label" in form.changed_data:
            label = obj.label
            obj.refresh_from_db()
            services.connection_rename(connection=obj, label=label, actor=request.user)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        # One query for the list, whatever its length: the problem column counts here.
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_synced_at=Max("resource_syncs__last_success_at"),
                n_no_access=Count("resource_syncs", filter=~Q(resource_syncs__permission_error="")),
                n_failing=Count(
                    "resource_syncs",
                    filter=~Q(resource_syncs__last_error="")
                    & Q(resource_syncs__permission_error="", resource_syncs__unsupported=False),
                ),
                n_retrying=Count(
                    "resource_syncs",
                    filter=Q(resource_syncs__current_run__status=SyncRun.Status.RUNNING)
                    & ~Q(resource_syncs__current_run__error=""),
                ),
            )
        )

    @admin.display(description="Last sync", ordering="last_synced_at")
    def last_synced_at(self, obj: Connection):
        return obj.last_synced_at  # type: ignore[attr-defined]  # annotated

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj: Connection) -> str:
        if obj.sync_paused and obj.status == Connection.Status.ACTIVE:
            return "Active, syncing paused"
        return obj.get_status_display()

    @admin.display(description="Problem")
    def problem(self, obj: Connection) -> str:
        return self.problem_words(obj)

    @staticmethod
    def problem_words(obj: Connection) -> str:
        """What is wrong, in a line ("" when nothing); uses get_queryset's counts."""
        if obj.status == Connection.Status.DISCONNECTED:
            return obj.last_error[:80]
        if obj.status == Connection.Status.NEEDS_RECONNECT:
            cause = obj.get_reconnect_cause_display() if obj.reconnect_cause else obj.last_error
            return f"Needs reconnect: {cause[:80]}" if cause else "Needs reconnect"
        if obj.status == Connection.Status.ERROR:
            return obj.last_error[:80] or "Error"
        words = []
        counts = (
            (getattr(obj, "n_no_access", 0), "without access"),
            (getattr(obj, "n_retrying", 0), "retrying"),
            (getattr(obj, "n_failing", 0), "failing"),
        )
        for n, what in counts:
            if n:
                words.append(f"{n} resource{'s' if n > 1 else ''} {what}")
        if not words and obj.last_error:
            words.append(obj.last_error[:80])
        return "; ".join(words)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Connections are made through Link or a token import, from the customer's page.
        return False

    @admin.display(description="Trackstar reports")
    def trackstar_health(self, obj: Connection) -> str:
        if not obj.trackstar_errors:
            return "No errors" if obj.health_checked_at else "Not checked yet"
        return format_html_join(
            "",
            "<div>{}: {}{}</div>",
            (
                (
                    HEALTH_KINDS.get(e.get("kind"), e.get("kind")),
                    e.get("message") or "—",
                    f" ({', '.join(e['resources'])})" if e.get("resources") else "",
                )
                for e in obj.trackstar_errors
            ),
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/resync/", wrap(self.resync_view), name="connections_connection_resync"),
            path(
                "<int:pk>/backfill/",
                wrap(self.backfill_view),
                name="connections_connection_backfill",
            ),
            path(
                "<int:pk>/backfill/<int:backfill_pk>/cancel/",
                wrap(self.backfill_cancel_view),
                name="connections_connection_backfill_cancel",
            ),
            path(
                "<int:pk>/act/<slug:action>/",
                wrap(self.act_view),
                name="connections_connection_act",
            ),
            path(
                "<int:pk>/sync-status/",
                wrap(self.sync_status_view),
                name="connections_connection_sync_status",
            ),
            path(
                "needs-attention/",
                wrap(self.needs_attention_view),
                name="connections_needs_attention",
            ),
            *super().get_urls(),
        ]

    # --- The connection page's buttons ---------------------------------------------------

    def object_actions(self, request: HttpRequest, connection: Connection) -> list[dict[str, Any]]:
        """The buttons of a connection's page: what may be done to it now, by this user."""
        if not self.has_change_permission(request, connection):
            return []
        status = connection.status
        if status == Connection.Status.DISCONNECTED:
            return []
        email = connection.customer.contact_email
        buttons: list[dict[str, Any]] = []
        if status == Connection.Status.ACTIVE:
            buttons.append(
                {
                    "action": "resync",
                    "label": "Resync now",
                    "title": "Ask Trackstar to refresh every resource from the WMS, then read",
                }
            )
        if connection.sync_paused:
            buttons.append({"action": "resume", "label": "Resume syncing", "title": ""})
        else:
            buttons.append({"action": "pause", "label": "Pause syncing", "title": ""})
        if email:
            buttons.append(
                {
                    "action": "reconnect-link",
                    "label": "Send reconnect link",
                    "title": f"Email a magic link to {email} that reconnects this connection",
                    "primary": status != Connection.Status.ACTIVE,
                }
            )
        buttons.append(
            {
                "action": "disconnect",
                "label": "Disconnect…",
                "title": "Delete the connection at Trackstar (asks first)",
                "danger": True,
            }
        )
        return buttons

    def change_view(self, request, object_id, form_url="", extra_context=None):
        connection = None
        if str(object_id).isascii() and str(object_id).isdigit():
            connection = Connection.objects.select_related("customer").filter(pk=object_id).first()
        context = {**(extra_context or {})}
        if connection is not None:
            context["connection_actions"] = self.object_actions(request, connection)
            if request.user.has_perm("audit.view_auditentry"):
                context["audit_url"] = audit_log_url(connection=connection)
        return super().change_view(request, object_id, form_url, context)

    def _next_url(self, request: HttpRequest, pk: int) -> str:
        target = request.POST.get("next") or request.GET.get("next") or ""
        if target.startswith("/admin/") and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return target
        return reverse("admin:connections_connection_change", args=[pk])

    def act_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        handlers = {
            "resync": self._act_resync,
            "pause": self._act_pause,
            "resume": self._act_resume,
            "reconnect-link": self._act_reconnect_link,
            "disconnect": self._act_disconnect,
        }
        if action not in handlers:
            return HttpResponse("No such action.", status=404, content_type="text/plain")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        connection = self._changeable(request, pk)
        connection = Connection.objects.select_related("customer").get(pk=connection.pk)
        response = handlers[action](request, connection)
        return response or redirect(self._next_url(request, pk))

    def _act_resync(self, request: HttpRequest, connection: Connection) -> None:
        asked = connection.resource_syncs.filter(force_sync_requested_at__isnull=False).first()
        if asked is not None:
            # A second click, or a second person: Trackstar is on it already.
            messages.info(
                request,
                f"A resync of {who(connection)} is already under way (asked "
                f"{ago(asked.force_sync_requested_at)}); Dockside reads the changes when "
                "Trackstar is done.",
            )
            return
        try:
            requested = services.connection_resync(connection=connection, actor=request.user)
        except ValidationError as e:
            messages.error(request, f"{who(connection)}: {' '.join(e.messages)}")
            return
        names = ", ".join(resource_label(r).lower() for r in requested)
        messages.success(
            request,
            f"Resync queued for {who(connection)}: Trackstar is refreshing {names} from "
            "the WMS; Dockside reads the changes when it is done.",
        )

    def _act_pause(self, request: HttpRequest, connection: Connection) -> None:
        if connection.sync_paused:
            messages.info(request, f"Syncing of {who(connection)} was already paused.")
            return
        services.connection_set_paused(connection=connection, paused=True, actor=request.user)
        messages.success(
            request,
            f"Paused syncing of {who(connection)}. Its data stays; nothing new is read "
            "until you resume.",
        )

    def _act_resume(self, request: HttpRequest, connection: Connection) -> None:
        if not connection.sync_paused:
            messages.info(request, f"{who(connection)} was already syncing.")
            return
        services.connection_set_paused(connection=connection, paused=False, actor=request.user)
        messages.success(request, f"Resumed syncing of {who(connection)}.")

    def _act_reconnect_link(self, request: HttpRequest, connection: Connection) -> None:
        self._send_reconnect_link(request, connection)

    def _send_reconnect_link(self, request: HttpRequest, connection: Connection) -> bool:
        email = connection.customer.contact_email
        if connection.status == Connection.Status.DISCONNECTED:
            messages.warning(
                request, f"{who(connection)} is disconnected: it cannot be reconnected."
            )
            return False
        if not email:
            messages.warning(
                request,
                f"{connection.customer.name} has no contact email: add one on the "
                "customer's page, or issue a magic link and send it yourself.",
            )
            return False
        recent = (
            MagicLink.objects.filter(
                reinstall_connection=connection,
                emailed_to=email,
                revoked_at__isnull=True,
                use_count=0,
                expires_at__gt=timezone.now(),
                created_at__gt=timezone.now() - RECONNECT_LINK_RESEND_AFTER,
            )
            .order_by("-created_at")
            .first()
        )
        if recent is not None:
            # A double click (or two people at once) sends one email, not two.
            messages.info(
                request,
                f"A reconnect link for {who(connection)} was already sent to {email} "
                f"{ago(recent.created_at)}; not sent again.",
            )
            return False
        try:
            magic_link_service.magic_link_issue(
                customer=connection.customer,
                created_by=request.user,
                reinstall_connection=connection,
                email_to=email,
            )
        except ValidationError as e:
            # The service's rules (the connection was disconnected since the page loaded).
            messages.warning(request, " ".join(e.messages))
            return False
        messages.success(request, f"Reconnect link sent to {email} for {who(connection)}.")
        return True

    def _act_disconnect(self, request: HttpRequest, connection: Connection):
        if connection.status == Connection.Status.DISCONNECTED:
            messages.info(request, f"{who(connection)} was already disconnected.")
            return None
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/connections/disconnect_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": f"Disconnect {who(connection)}?",
                    "connections": [connection],
                    "one": connection,
                    "next": self._next_url(request, connection.pk),
                },
            )
        try:
            services.connection_disconnect(connection=connection, actor=request.user)
        except TrackstarError as e:
            messages.error(
                request,
                f"{who(connection)}: Trackstar did not answer ({e.message}); nothing changed.",
            )
            return None
        messages.success(
            request,
            f"Disconnected {who(connection)}: Trackstar deleted the connection; its "
            "synced data stays.",
        )
        return None

    def sync_status_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        """The sync panel's live progress, polled by static/staff/sync-panel.js."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        connection = get_object_or_404(Connection, pk=pk)
        rows = [sync_state(rs) for rs in sync_panel_rows(connection)]
        response = JsonResponse(
            {
                "status": connection.status,
                "busy": any(row["busy"] for row in rows),
                "resources": rows,
            }
        )
        add_never_cache_headers(response)
        return response

    # --- Needs attention -----------------------------------------------------------------

    def needs_attention_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        attention = needs_attention(
            with_links=request.user.has_perm("connections.view_magiclink"),
        )
        response = TemplateResponse(
            request,
            "admin/connections/needs_attention.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Needs attention",
                "attention": attention,
                "may_change": self.has_change_permission(request),
                "may_act_unassigned": request.user.has_perm("connections.add_connection")
                and request.user.has_perm("connections.change_connection"),
                "may_issue_links": request.user.has_perm("connections.add_magiclink"),
                "here": request.get_full_path(),
            },
        )
        add_never_cache_headers(response)
        return response

    def _changeable(self, request: HttpRequest, pk: int) -> Connection:
        if not self.has_change_permission(request):
            raise PermissionDenied
        return get_object_or_404(Connection, pk=pk)

    def resync_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.method != "POST":
            raise PermissionDenied
        connection = self._changeable(request, pk)
        connection = Connection.objects.select_related("customer").get(pk=connection.pk)
        resource = request.GET.get("resource") or None
        reread = request.GET.get("mode") == "reread"
        service = services.connection_reread if reread else services.connection_resync
        try:
            requested = service(
                connection=connection,
                actor=request.user,
                resources=[resource] if resource else None,
            )
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            names = ", ".join(resource_label(r).lower() for r in requested) or "nothing"
            messages.success(
                request,
                f"Re-reading {names} of {who(connection)} from Trackstar."
                if reread
                else f"Resync queued for {who(connection)}: Trackstar is refreshing {names} "
                "from the WMS; Dockside reads the changes when Trackstar is done.",
            )
        return redirect(self._next_url(request, pk))

    def backfill_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        connection = self._changeable(request, pk)
        form = BackfillForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                backfill = backfill_service.backfill_request(
                    connection=connection, actor=request.user, **form.cleaned_data
                )
            except ValidationError as e:
                form.add_error(None, e)
            else:
                messages.success(
                    request,
                    f"Trackstar is backfilling "
                    f"{resource_label(backfill.resource).lower()}; the "
                    "records arrive when it is done.",
                )
                return redirect("admin:connections_connection_change", pk)
        return TemplateResponse(
            request,
            "admin/connections/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Backfill history of {connection}",
                "form": form,
                "intro": "Trackstar's initial sync covers the last 30 days. A backfill asks "
                "Trackstar to import one resource over an older window; not every WMS "
                "supports every resource, and Trackstar says so.",
                "submit_label": "Start backfill",
            },
        )

    def backfill_cancel_view(self, request: HttpRequest, pk: int, backfill_pk: int):
        if request.method != "POST":
            raise PermissionDenied
        connection = self._changeable(request, pk)
        backfill = get_object_or_404(Backfill, pk=backfill_pk, connection=connection)
        try:
            backfill_service.backfill_cancel(backfill=backfill, actor=request.user)
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            messages.success(request, "Backfill cancelled.")
        return redirect("admin:connections_connection_change", pk)

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Connection], service
    ) -> list[Connection]:
        """Call a service for each connection; say which ones it refused and why."""
        done = []
        for connection in queryset.select_related("customer"):
            try:
                service(connection=connection, actor=request.user)
                done.append(connection)
            except ValidationError as e:
                messages.warning(request, f"{who(connection)}: {' '.join(e.messages)}")
        return done

    @admin.action(description="Resync now: refresh from the WMS, then read", permissions=["change"])
    def resync_now(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        if done := self._each(request, queryset, services.connection_resync):
            messages.success(
                request,
                f"Resync queued for {_names(done)}: Trackstar is refreshing from the WMS; "
                "Dockside reads the changes when it is done.",
            )

    @admin.action(
        description="Re-read everything from Trackstar (repair the local copy)",
        permissions=["change"],
    )
    def reread_all(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        if done := self._each(request, queryset, services.connection_reread):
            messages.success(request, f"Re-reading {_names(done)} from Trackstar.")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # "Disconnect" keeps history; deleting rows would lose synced data

    @admin.display(description="Access token")
    def access_token_masked(self, obj: Connection) -> str:
        return obj.access_token_masked or "—"

    @admin.action(
        description="Send a reconnect magic link to the customer's contact", permissions=["change"]
    )
    def send_reconnect_link(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset.select_related("customer"):
            self._send_reconnect_link(request, connection)

    @admin.action(
        description="Disconnect (deletes the connection at Trackstar)", permissions=["change"]
    )
    def disconnect(self, request: HttpRequest, queryset: QuerySet[Connection]):
        queryset = queryset.select_related("customer").exclude(
            status=Connection.Status.DISCONNECTED
        )
        if request.POST.get("confirm") != "yes":
            # An intermediate page, as for Django's delete action: this cannot be undone.
            return TemplateResponse(
                request,
                "admin/connections/disconnect_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "opts": self.model._meta,
                    "title": "Disconnect these connections?",
                    "connections": queryset,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        done = []
        for connection in queryset:
            try:
                services.connection_disconnect(connection=connection, actor=request.user)
                done.append(connection)
            except TrackstarError as e:
                messages.error(
                    request,
                    f"{who(connection)}: Trackstar did not answer ({e.message}); nothing changed.",
                )
        if done:
            messages.success(request, f"Disconnected {_names(done)}.")
        return None

    @admin.action(description="Pause scheduled syncing", permissions=["change"])
    def pause_syncing(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        changed = list(queryset.filter(sync_paused=False).select_related("customer"))
        for connection in changed:
            services.connection_set_paused(connection=connection, paused=True, actor=request.user)
        if changed:
            messages.success(request, f"Paused syncing of {_names(changed)}.")
        else:
            messages.info(request, "Those connections were already paused.")

    @admin.action(description="Resume scheduled syncing", permissions=["change"])
    def resume_syncing(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        changed = list(queryset.filter(sync_paused=True).select_related("customer"))
        for connection in changed:
            services.connection_set_paused(connection=connection, paused=False, actor=request.user)
        if changed:
            messages.success(request, f"Resumed syncing of {_names(changed)}.")
        else:
            messages.info(request, "Those connections were already syncing.")
