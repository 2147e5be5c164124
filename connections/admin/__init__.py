"""Staff screens. Every action calls a service, so admin cannot skip validation, enqueueing
or the audit log."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.debug import sensitive_post_parameters

from audit import services as audit_service
from audit.services import audit_sentence
from connections import services
from connections.crypto import decrypt, encrypt
from connections.forms import (
    BackfillForm,
    MagicLinkIssueForm,
    PortalUserInviteForm,
    TokenImportForm,
    UnassignedAssignForm,
    UnassignedDeleteForm,
    pk_or_none,
    reconnect_choices,
    reconnect_label,
)
from connections.integrations import connection_label, integration_display_name
from connections.link import adoption as adoption_service
from connections.link import magic_links as magic_link_service
from connections.link.endpoints import LinkActor, LinkEndpoints, link_config
from connections.models import (
    AuditEntry,
    AuthCodeExchange,
    Backfill,
    Connection,
    MagicLink,
    ResourceSync,
    SyncRun,
    TrackstarAccount,
    UnassignedConnection,
    WebhookEvent,
)
from connections.models.sync import resource_label
from connections.selectors import Freshness
from connections.services import connection_label_clean
from connections.sync import backfills as backfill_service
from connections.trackstar import TrackstarError
from connections.webhooks import services as webhook_service
from customers.admin import CustomerAdmin
from customers.models import Customer
from customers.services import portal_user_invite
from portal.logins.services import login_slowdown_lift, login_unlock
from portal.logins.slowdown import login_username
from portal.templatetags.portal import ago

# --- Customers, with what staff do for them ------------------------------------------------


class ConnectionInline(admin.TabularInline):
    model = Connection
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = (
        "name",
        "status",
        "source",
        "trackstar_connection_id",
        "connected_at",
    )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Name")
    def name(self, obj: Connection) -> str:
        return connection_label(obj)


def _staff_actor(request: HttpRequest, customer_pk: int, allow_spent: bool = False) -> LinkActor:
    if not request.user.has_perm("connections.add_connection"):
        raise PermissionDenied
    customer = get_object_or_404(Customer, pk=customer_pk, is_active=True)
    return LinkActor(customer=customer, source=Connection.Source.STAFF, user=request.user)


ISSUED_SESSION_KEY = "dockside_issued_magic_link"

staff_link = LinkEndpoints(
    resolve_actor=_staff_actor,
    status_url=lambda exchange, customer_pk: reverse(
        "admin:customers_customer_connect_exchange", args=[customer_pk, exchange.public_id]
    ),
)


class ConnectionsCustomerAdmin(CustomerAdmin):
    inlines = [*CustomerAdmin.inlines, ConnectionInline]
    list_display = [
        *list(CustomerAdmin.list_display)[:5],
        "active_connections",
        "attention_connections",
        "created_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        # Counted in the list query itself: one query whatever the number of customers.
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_active=Count(
                    "connections", filter=Q(connections__status=Connection.Status.ACTIVE)
                ),
                n_attention=Count(
                    "connections",
                    filter=Q(
                        connections__status__in=[
                            Connection.Status.NEEDS_RECONNECT,
                            Connection.Status.ERROR,
                        ]
                    ),
                ),
            )
            # Meta.ordering does not apply to a GROUP BY query: the autocomplete's pages
            # (which use this queryset as it is) would come in no stable order.
            .order_by("name", "pk")
        )

    @admin.display(description="Active", ordering="n_active")
    def active_connections(self, obj: Customer) -> int:
        return obj.n_active  # type: ignore[attr-defined]  # annotated in get_queryset

    @admin.display(description="Need attention", ordering="n_attention")
    def attention_connections(self, obj: Customer) -> int:
        return obj.n_attention  # type: ignore[attr-defined]

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:customer_pk>/connect/",
                wrap(self.connect_view),
                name="customers_customer_connect",
            ),
            path(
                "<int:customer_pk>/connect/get-link-token",
                wrap(staff_link.get_link_token),
                name="customers_customer_connect_link_token",
            ),
            path(
                "<int:customer_pk>/connect/store-token",
                wrap(staff_link.store_token),
                name="customers_customer_connect_store_token",
            ),
            path(
                "<int:customer_pk>/connect/exchanges/<uuid:public_id>",
                wrap(staff_link.exchange_status),
                name="customers_customer_connect_exchange",
            ),
            path(
                "<int:customer_pk>/import-token/",
                wrap(sensitive_post_parameters("access_token")(self.import_token_view)),
                name="customers_customer_import_token",
            ),
            path(
                "<int:customer_pk>/invite/",
                wrap(self.invite_view),
                name="customers_customer_invite",
            ),
            *super().get_urls(),
        ]

    def _customer_or_deny(self, request: HttpRequest, customer_pk: int, perm: str) -> Customer:
        if not request.user.has_perm(perm):
            raise PermissionDenied
        return get_object_or_404(Customer, pk=customer_pk)

    def _page(self, request, customer, template, **context) -> TemplateResponse:
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "customer": customer,
                "original": customer,
                **context,
            },
        )

    def connect_view(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        customer = self._customer_or_deny(request, customer_pk, "connections.add_connection")
        config = link_config(
            request,
            customer=customer,
            get_link_token_url=reverse(
                "admin:customers_customer_connect_link_token", args=[customer.pk]
            ),
            store_token_url=reverse(
                "admin:customers_customer_connect_store_token", args=[customer.pk]
            ),
        )
        return self._page(
            request,
            customer,
            "admin/connections/connect.html",
            title=f"Connect a WMS for {customer.name}",
            link_config=config,
            connections=customer.connections.all(),
        )

    def import_token_view(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        customer = self._customer_or_deny(request, customer_pk, "connections.add_connection")
        form = TokenImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                connection = services.connection_import(
                    customer=customer,
                    access_token=form.cleaned_data["access_token"],
                    actor=request.user,
                )
            except ValidationError as e:
                form.add_error("access_token", e)
            else:
                messages.success(request, f"Imported {connection}.")
                return redirect("admin:connections_connection_change", connection.pk)
        return self._page(
            request,
            customer,
            "admin/connections/form_page.html",
            form=form,
            title=f"Import an access token for {customer.name}",
            submit_label="Check with Trackstar and import",
        )

    def invite_view(self, request: HttpRequest, customer_pk: int) -> HttpResponse:
        # Inviting gives access to the customer's data: it is adding a membership. The
        # service also wants "add user" for a new account, and refuses a staff account to
        # anyone but a superuser.
        customer = self._customer_or_deny(request, customer_pk, "customers.add_membership")
        form = PortalUserInviteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                user = portal_user_invite(
                    customer=customer,
                    email=form.cleaned_data["email"],
                    username=form.cleaned_data["username"],
                    role=form.cleaned_data["role"],
                    invited_by=request.user,
                )
            except ValidationError as e:
                form.add_error(None, e)
                # Kept too: a refused invite may be someone trying to reach a customer.
                audit_service.audit_record(
                    actor=request.user,
                    action="customer.user_invite_refused",
                    customer=customer,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    reason=" ".join(e.messages),
                )
            else:
                audit_service.audit_record(
                    actor=request.user,
                    action="customer.user_invited",
                    customer=customer,
                    user_id=user.pk,
                    email=user.email,
                    role=form.cleaned_data["role"],
                )
                messages.success(
                    request, f"Invited {user.email}: they got an email to set their password."
                )
                return redirect("admin:customers_customer_change", customer.pk)
        return self._page(
            request,
            customer,
            "admin/connections/form_page.html",
            form=form,
            title=f"Invite a portal user to {customer.name}",
            submit_label="Create the user and send the invitation",
        )


admin.site.unregister(Customer)
admin.site.register(Customer, ConnectionsCustomerAdmin)


# --- Connections ----------------------------------------------------------------------------


def who(connection: Connection) -> str:
    """How feedback names a connection: "ShipBob 2 of Acme Outdoor"."""
    return f"{connection_label(connection)} of {connection.customer.name}"


def _names(connections: list[Connection], most: int = 5) -> str:
    names = [who(c) for c in connections[:most]]
    if len(connections) > most:
        names.append(f"{len(connections) - most} more")
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1]


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


def run_retrying(run: SyncRun | None) -> bool:
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
        if run_retrying(run):
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
        "retrying": run_retrying(run),
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


HEALTH_KINDS = {
    "invalid_credentials": "Invalid credentials (blocking)",
    "missing_permission": "Missing permission (non-blocking)",
    "unclassified": "Unclassified error",
}


# --- Needs attention: what a person has to do something about --------------------------------

ATTENTION_ROWS = 100  # per section; the section links to the full list past that
LINK_EXPIRY_WARNING = timedelta(hours=24)
# Clicking "Send reconnect link" again within this sends no second email.
RECONNECT_LINK_RESEND_AFTER = timedelta(minutes=10)


@dataclass
class AttentionSection:
    key: str
    title: str
    help: str
    rows: list
    more_url: str = ""

    @property
    def shown(self) -> list:
        return self.rows[:ATTENTION_ROWS]

    @property
    def more(self) -> bool:
        return len(self.rows) > ATTENTION_ROWS


def _retrying_q(prefix: str = "") -> Q:
    return Q(**{f"{prefix}current_run__status": SyncRun.Status.RUNNING}) & ~Q(
        **{f"{prefix}current_run__error": ""}
    )


def needs_attention(*, with_links: bool) -> list[AttentionSection]:
    """Across every customer, for staff: one query a section (and one for the schedules in
    use), whatever the number of rows."""
    now = timezone.now()
    limit = ATTENTION_ROWS + 1
    live_syncs = ResourceSync.objects.filter(
        connection__status=Connection.Status.ACTIVE,
        connection__sync_paused=False,
        paused=False,
        enabled=True,
        unsupported=False,
    ).select_related("connection__customer", "current_run")

    reconnect = list(
        Connection.objects.filter(
            status__in=[Connection.Status.NEEDS_RECONNECT, Connection.Status.ERROR]
        )
        .select_related("customer")
        .order_by("updated_at", "pk")[:limit]
    )
    no_access = list(
        ResourceSync.objects.exclude(permission_error="")
        .exclude(connection__status=Connection.Status.DISCONNECTED)
        .select_related("connection__customer")
        .order_by("permission_error_at", "pk")[:limit]
    )
    failing = list(
        live_syncs.filter(permission_error="")
        .filter(_retrying_q() | ~Q(last_error=""))
        .order_by("updated_at", "pk")[:limit]
    )
    # "Stale" is older than twice the resource's own schedule. The schedules in use are a
    # handful of values: one range per value keeps the query portable and indexable.
    intervals = sorted(
        set(ResourceSync.objects.values_list("interval_seconds", flat=True).distinct())
    )
    stale_q = Q(pk__in=[])
    for interval in intervals:
        cutoff = now - timedelta(seconds=2 * interval)
        stale_q |= Q(interval_seconds=interval) & (
            Q(last_success_at__lt=cutoff)
            # Trackstar has the history and it was never read, for as long.
            | Q(last_success_at__isnull=True, history_ready=True, created_at__lt=cutoff)
        )
    stale = list(
        live_syncs.filter(stale_q, permission_error="", last_error="")
        .exclude(_retrying_q())
        .order_by("last_success_at", "pk")[:limit]
    )
    unassigned = list(
        UnassignedConnection.objects.filter(resolution="").order_by("first_seen_at")[:limit]
    )

    sections = [
        AttentionSection(
            "reconnect",
            "Connections that need reconnecting",
            "The WMS or Trackstar refuses the saved credentials: nothing syncs until the "
            "customer reconnects. Send them a reconnect link.",
            reconnect,
            reverse("admin:connections_connection_changelist") + "?status__exact=needs_reconnect",
        ),
        AttentionSection(
            "no_access",
            "Missing permissions",
            "The WMS user Trackstar signs in with may not read this resource; everything "
            "else keeps syncing. The customer's WMS administrator grants the access "
            "(reconnecting with the same credentials will not help); then read it again.",
            no_access,
        ),
        AttentionSection(
            "failing",
            "Failing syncs",
            "Runs that stopped on an error. Those retrying keep trying by themselves.",
            failing,
            reverse("admin:connections_syncrun_changelist") + "?status__exact=failed",
        ),
        AttentionSection(
            "stale",
            "Stale data",
            "Last read longer ago than twice its schedule, with no error to say why: the "
            "queue may be long, or a worker stuck.",
            stale,
        ),
        AttentionSection(
            "unassigned",
            "Unassigned connections from Trackstar",
            "Made in Trackstar's dashboard or by Trackstar's own magic links, for no "
            "customer of ours: assign each to a customer, or delete it at Trackstar.",
            unassigned,
            reverse("admin:connections_unassignedconnection_changelist"),
        ),
    ]
    if with_links:
        expiring = list(
            MagicLink.objects.filter(
                revoked_at__isnull=True,
                use_count=0,
                expires_at__gt=now,
                expires_at__lte=now + LINK_EXPIRY_WARNING,
            )
            .select_related("customer", "reinstall_connection")
            .order_by("expires_at", "pk")[:limit]
        )
        sections.append(
            AttentionSection(
                "links",
                "Magic links about to expire unused",
                "They run out within 24 hours and nobody has connected with them yet. "
                "Remind the customer, or issue a new link.",
                expiring,
                reverse("admin:connections_magiclink_changelist") + "?funnel=issued",
            )
        )
    return sections


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
            if request.user.has_perm("connections.view_auditentry"):
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
        magic_link_service.magic_link_issue(
            customer=connection.customer,
            created_by=request.user,
            reinstall_connection=connection,
            email_to=email,
        )
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


# --- Magic links -----------------------------------------------------------------------------


class FunnelFilter(admin.SimpleListFilter):
    title = "funnel"
    parameter_name = "funnel"

    def lookups(self, request, model_admin):
        return [
            ("issued", "Issued, not opened"),
            ("opened", "Opened, not completed"),
            ("completed", "Completed"),
            ("expired", "Expired"),
            ("revoked", "Revoked"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        live = Q(revoked_at__isnull=True, expires_at__gt=now)
        match self.value():
            case "issued":
                return queryset.filter(live, first_opened_at__isnull=True)
            case "opened":
                return queryset.filter(
                    live, first_opened_at__isnull=False, completed_at__isnull=True
                )
            case "completed":
                return queryset.filter(completed_at__isnull=False)
            case "expired":
                return queryset.filter(
                    revoked_at__isnull=True, expires_at__lte=now, completed_at__isnull=True
                )
            case "revoked":
                return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(MagicLink)
class MagicLinkAdmin(admin.ModelAdmin):
    list_display = [
        "customer",
        "state_label",
        "created_at",
        "first_opened_at",
        "completed_at",
        "expires_at",
        "uses",
        "reinstall_connection",
        "created_by",
        "revoked_at",
    ]
    list_filter = [FunnelFilter, "created_at"]
    search_fields = ["customer__name", "emailed_to"]
    list_select_related = ["customer", "created_by", "reinstall_connection"]
    actions = ["revoke"]
    fields = readonly_fields = (
        "customer",
        "state_label",
        "connections_made",
        "reinstall_link",
        "allowed_wms",
        "expires_at",
        "max_uses",
        "use_count",
        "emailed_to",
        "created_by",
        "created_at",
        "first_opened_at",
        "last_opened_at",
        "open_count",
        "completed_at",
        "expired_at",
        "revoked_at",
        "revoked_by",
    )

    @admin.display(description="State")
    def state_label(self, obj: MagicLink) -> str:
        return obj.state_label

    @admin.display(description="WMSes offered")
    def allowed_wms(self, obj: MagicLink) -> str:
        if not obj.allowed_integrations:
            return "Every WMS"
        return ", ".join(integration_display_name(slug) for slug in obj.allowed_integrations)

    @admin.display(description="Reconnects")
    def reinstall_link(self, obj: MagicLink) -> str:
        connection = obj.reinstall_connection
        if connection is None:
            return "— (connects a new WMS)"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:connections_connection_change", args=[connection.pk]),
            connection_label(connection),
        )

    @admin.display(description="Connection made")
    def connections_made(self, obj: MagicLink) -> str:
        made = (
            Connection.objects.filter(exchanges__magic_link=obj)
            .distinct()
            .order_by("created_at", "pk")
        )
        if not made:
            return "None yet"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a> ({})',
            (
                (
                    reverse("admin:connections_connection_change", args=[c.pk]),
                    connection_label(c),
                    c.get_status_display().lower(),
                )
                for c in made
            ),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Nothing here is edited (revoke is an action): no Save buttons.
        return super().change_view(
            request,
            object_id,
            form_url,
            {
                **(extra_context or {}),
                "show_save": False,
                "show_save_and_continue": False,
                "show_save_and_add_another": False,
                "show_save_as_new": False,
            },
        )

    @admin.display(description="Uses")
    def uses(self, obj: MagicLink) -> str:
        return f"{obj.use_count} / {obj.max_uses}"

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the funnel keeps its history

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("connections.change_magiclink")

    @admin.action(description="Revoke", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[MagicLink]) -> None:
        count = sum(
            magic_link_service.magic_link_revoke(link=link, actor=request.user)
            for link in queryset.select_related("customer")
        )
        messages.success(request, f"Revoked {count} link(s).")

    def get_urls(self):
        return [
            path(
                "issued/",
                self.admin_site.admin_view(self.issued_view),
                name="connections_magiclink_issued",
            ),
            path(
                "reconnect-choices/",
                self.admin_site.admin_view(self.reconnect_choices_view),
                name="connections_magiclink_reconnect_choices",
            ),
            *super().get_urls(),
        ]

    def reconnect_choices_view(self, request: HttpRequest) -> JsonResponse:
        """The issue form's "Reconnect an existing connection" options for one customer
        (static/staff/magic-link-form.js asks when the customer changes)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        customer_pk = pk_or_none(request.GET.get("customer"))
        if customer_pk is None:
            return JsonResponse({"error": "Choose a customer."}, status=400)
        customer = Customer.objects.filter(pk=customer_pk, is_active=True).first()
        if customer is None:
            return JsonResponse({"error": "No such customer."}, status=404)
        response = JsonResponse(
            {
                "customer": customer.pk,
                "contact_email": customer.contact_email,
                "connections": [
                    {"id": c.pk, "name": reconnect_label(c)} for c in reconnect_choices(customer.pk)
                ],
            }
        )
        add_never_cache_headers(response)
        return response

    def issued_view(self, request: HttpRequest) -> HttpResponse:
        issued = request.session.pop(ISSUED_SESSION_KEY, None)
        link = MagicLink.objects.filter(pk=issued["link"]).first() if issued else None
        response = TemplateResponse(
            request,
            "admin/connections/magiclink_issued.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Magic link issued" if link else "Magic link",
                "link": link,
                "url": decrypt(issued["url"]) if link else None,
                "allowed_wms": [
                    integration_display_name(slug) for slug in link.allowed_integrations
                ]
                if link
                else [],
            },
        )
        add_never_cache_headers(response)
        return response

    def add_view(self, request: HttpRequest, form_url="", extra_context=None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {
            "customer": request.GET.get("customer"),
            "reinstall_connection": request.GET.get("reinstall_connection"),
        }
        form = MagicLinkIssueForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = magic_link_service.magic_link_issue(
                    customer=data["customer"],
                    created_by=request.user,
                    expires_in_days=data["expires_in_days"],
                    max_uses=data["max_uses"],
                    allowed_integrations=data["allowed_integrations"],
                    reinstall_connection=data["reinstall_connection"],
                    email_to=data["customer"].contact_email if data["send_email"] else "",
                )
            except ValidationError as e:
                form.add_error(None, e)
            else:
                # The URL holds the token. Post/redirect/get, so a reload cannot issue a
                # second link; the session holds the URL encrypted, and only until the
                # page after the redirect shows it once.
                request.session[ISSUED_SESSION_KEY] = {
                    "link": issued.link.pk,
                    "url": encrypt(issued.url),
                }
                return HttpResponseRedirect(reverse("admin:connections_magiclink_issued"))
        return TemplateResponse(
            request,
            "admin/connections/magiclink_form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "form": form,
                "title": "Issue a magic link",
                "submit_label": "Issue the link",
            },
        )


# --- Read-only history ---------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuthCodeExchange)
class AuthCodeExchangeAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "customer",
        "integration_name",
        "source",
        "status",
        "attempts",
        "created_by",
        "created_at",
        "finished_at",
        "connection",
        "last_error",
    ]
    # "Refused delete: owed" lists the refused connections Trackstar still has to delete.
    list_filter = ["status", "source", "integration_name", "refused_delete"]
    search_fields = ["customer__name", "public_id", "refused_connection_id"]
    list_select_related = ["customer", "created_by", "connection"]
    exclude = ["auth_code", "auth_code_hash", "refused_access_token"]


class CalendarSafeChangeList(ChangeList):
    """Django's date hierarchy adds a year, a month or a day to the one chosen: past 9999,
    or for a year too big for an int, that raised (a 500). It is an invalid filter here, as
    Django treats any other: the list redirects to ?e=1."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as e:
            raise IncorrectLookupParameters(e) from e


class AuditActorKindFilter(admin.SimpleListFilter):
    title = "who"
    parameter_name = "by"

    def lookups(self, request, model_admin):
        return AuditEntry.ActorKind.choices

    def queryset(self, request, queryset):
        kind = self.value()
        if kind not in AuditEntry.ActorKind.values:
            return queryset
        # Entries from before the kind was written: told apart as AuditEntry.actor_kind does.
        unwritten = ~Q(detail__has_key="by")
        older = {
            AuditEntry.ActorKind.STAFF: Q(actor__is_staff=True),
            AuditEntry.ActorKind.CUSTOMER: Q(actor__isnull=False, actor__is_staff=False),
            AuditEntry.ActorKind.TRACKSTAR: Q(
                actor__isnull=True, action__in=AuditEntry.TRACKSTAR_ACTIONS
            ),
            AuditEntry.ActorKind.SYSTEM: Q(actor__isnull=True)
            & ~Q(action__in=AuditEntry.TRACKSTAR_ACTIONS),
        }[kind]
        return queryset.filter(Q(detail__by=kind) | (unwritten & older))


class AuditConnectionFilter(admin.SimpleListFilter):
    """The chosen customer's connections (or the one a link chose): never every connection
    of every customer in the sidebar."""

    title = "connection"
    parameter_name = "connection__id__exact"

    def lookups(self, request, model_admin):
        customer_id = request.GET.get("customer__id__exact", "")
        chosen = self.value() or ""
        wanted = Q(pk=int(chosen)) if chosen.isdigit() else Q(pk__in=[])
        if customer_id.isdigit():
            wanted |= Q(customer_id=int(customer_id))
        connections = Connection.objects.filter(wanted).select_related("customer")
        return [(str(c.pk), f"{connection_label(c)} of {c.customer.name}") for c in connections]

    def has_output(self) -> bool:
        # Shown (and so applied) whenever one is chosen, even one with nothing to list.
        return self.value() is not None or super().has_output()

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"Not a connection: {value!r}")
        return queryset.filter(connection_id=int(value))


AUDIT_FIELDS = (
    "sentence",
    "created_at",
    "actor",
    "actor_kind",
    "customer",
    "connection",
    "action",
    "detail",
)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Read-only: no add, change or delete, so no Save button on an entry's page."""

    list_display = ["sentence", "created_at", "actor_kind", "action", "detail_short"]
    list_display_links = ["sentence"]
    list_filter = [
        ("customer", admin.RelatedOnlyFieldListFilter),
        AuditConnectionFilter,
        AuditActorKindFilter,
        "action",
        "created_at",
    ]
    search_fields = [
        "action",
        "customer__name",
        "actor__username",
        "actor__first_name",
        "actor__last_name",
        "connection__label",
        "connection__integration_name",
        "connection__trackstar_connection_id",
    ]
    list_select_related = ["actor", "customer", "connection"]
    date_hierarchy = "created_at"
    fields = readonly_fields = AUDIT_FIELDS

    def get_changelist(self, request, **kwargs):
        return CalendarSafeChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        # The entry's own page names its customer and connection too.
        return super().get_queryset(request).select_related("actor", "customer", "connection")

    @admin.display(description="What happened")
    def sentence(self, obj: AuditEntry) -> str:
        return audit_sentence(obj)

    @admin.display(description="Who")
    def actor_kind(self, obj: AuditEntry) -> str:
        return AuditEntry.ActorKind(obj.actor_kind).label

    @admin.display(description="Detail")
    def detail_short(self, obj: AuditEntry) -> str:
        return format_html("<code>{}</code>", str(obj.detail)[:120])


def audit_log_url(*, customer: Customer | None = None, connection: Connection | None = None) -> str:
    """The audit log filtered to one customer or one connection ("View audit log" links)."""
    url = reverse("admin:connections_auditentry_changelist")
    if connection is not None:
        return f"{url}?customer__id__exact={connection.customer_id}&connection__id__exact={connection.pk}"
    if customer is not None:
        return f"{url}?customer__id__exact={customer.pk}"
    return url


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


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    exclude = ["access_token"]  # decrypted on load: never rendered
    list_display = [
        "received_at",
        "event_type",
        "connection",
        "status",
        "attempts",
        "svix_id",
        "error_short",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["svix_id", "trackstar_connection_id", "event_type"]
    list_select_related = ["connection"]
    actions = ["retry"]

    @admin.display(description="Error")
    def error_short(self, obj: WebhookEvent) -> str:
        return obj.error[:100]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and request.user.has_perm("connections.change_connection")

    @admin.action(description="Retry failed events", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        count = 0
        for event in queryset.filter(status=WebhookEvent.Status.FAILED):
            count += webhook_service.webhook_retry(event=event, actor=request.user)
        messages.success(request, f"Queued {count} event(s) again.")


class OpenFilter(admin.SimpleListFilter):
    """By default the list shows what needs a person; "Handled" and "All" show the rest."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("resolved", "Handled"), ("all", "All")]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "display": "Waiting",
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
        }
        for value, title in self.lookup_choices:
            yield {
                "selected": self.value() == value,
                "display": title,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
            }

    def queryset(self, request, queryset):
        if self.value() == "resolved":
            return queryset.exclude(resolution="")
        if self.value() == "all":
            return queryset
        return queryset.filter(resolution="")


@admin.register(UnassignedConnection)
class UnassignedConnectionAdmin(ReadOnlyAdmin):
    """Connections Trackstar has and Dockside does not, until staff assign or delete them."""

    list_display = [
        "trackstar_connection_id",
        "integration_name",
        "trackstar_created_at",
        "trackstar_customer_id",
        "has_token",
        "seen_via",
        "first_seen_at",
        "resolution",
        "held_reason",
    ]
    list_filter = [OpenFilter, "integration_name", "seen_via"]
    search_fields = ["trackstar_connection_id", "trackstar_customer_id"]
    exclude = ["access_token"]
    change_list_template = "admin/connections/unassignedconnection/change_list.html"
    change_form_template = "admin/connections/unassignedconnection/change_form.html"

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("connections.view_connection")

    def _may_act(self, request) -> bool:
        return request.user.has_perm("connections.add_connection") and request.user.has_perm(
            "connections.change_connection"
        )

    @admin.display(description="Token", boolean=True)
    def has_token(self, obj: UnassignedConnection) -> bool:
        return bool(obj.access_token)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "reconcile/",
                wrap(self.reconcile_view),
                name="connections_unassignedconnection_reconcile",
            ),
            path(
                "<int:pk>/assign/",
                wrap(self.assign_view),
                name="connections_unassignedconnection_assign",
            ),
            path(
                "<int:pk>/delete-at-trackstar/",
                wrap(self.delete_view_at_trackstar),
                name="connections_unassignedconnection_delete_at_trackstar",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        account = TrackstarAccount.objects.filter(pk=1).first()
        return super().changelist_view(
            request,
            {**(extra_context or {}), "account": account, "may_act": self._may_act(request)},
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return super().change_view(
            request,
            object_id,
            form_url,
            {**(extra_context or {}), "may_act": self._may_act(request)},
        )

    def reconcile_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not self._may_act(request):
            raise PermissionDenied
        try:
            adoption_service.reconcile_enqueue()
        except adoption_service.BrokerUnavailable:
            messages.error(
                request, "The task queue is not reachable; the hourly check runs when it is back."
            )
        else:
            messages.success(request, "Checking Trackstar now; this list updates in a minute.")
        return redirect("admin:connections_unassignedconnection_changelist")

    def _act(self, request, pk: int, form_class, title: str, submit: str, action):
        if not self._may_act(request):
            raise PermissionDenied
        unassigned = get_object_or_404(UnassignedConnection, pk=pk)
        form = form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                message = action(unassigned, form.cleaned_data)
            except ValidationError as e:
                form.add_error(None, e)
            else:
                messages.success(request, message)
                return redirect("admin:connections_unassignedconnection_changelist")
        return TemplateResponse(
            request,
            "admin/connections/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"{title}: {unassigned}",
                "form": form,
                "submit_label": submit,
                "intro": "Trackstar has this connection; Dockside has no customer for it."
                + (
                    ""
                    if unassigned.access_token
                    else " Its access token never reached Dockside "
                    "(the connection.created webhook was missed): paste it from Trackstar's "
                    "dashboard."
                ),
            },
        )

    @method_decorator(sensitive_post_parameters("access_token"))
    def assign_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        def assign(unassigned, data):
            connection = adoption_service.unassigned_assign(
                unassigned=unassigned,
                customer=data["customer"],
                access_token=data["access_token"],
                actor=request.user,
            )
            return (
                f"{connection_label(connection)} now belongs to {data['customer'].name} "
                "and is syncing."
            )

        return self._act(
            request, pk, UnassignedAssignForm, "Assign to a customer", "Assign", assign
        )

    @method_decorator(sensitive_post_parameters("access_token"))
    def delete_view_at_trackstar(self, request: HttpRequest, pk: int) -> HttpResponse:
        def delete(unassigned, data):
            adoption_service.unassigned_delete(
                unassigned=unassigned, access_token=data["access_token"], actor=request.user
            )
            return f"Deleted {unassigned} at Trackstar."

        return self._act(request, pk, UnassignedDeleteForm, "Delete at Trackstar", "Delete", delete)


# --- Failed logins ---------------------------------------------------------------------------


class LoginSlowdownForm(forms.Form):
    username = forms.CharField(max_length=254)

    def clean_username(self) -> str:
        # As the login form reads it (stripped, NFKC, case kept), so the count cleared is
        # the one logins add to; only a real account's, as only those can log in.
        username = login_username(self.cleaned_data["username"])
        user_model = get_user_model()
        if (
            username is None
            or not user_model._default_manager.filter(
                **{user_model.USERNAME_FIELD: username}
            ).exists()
        ):
            raise ValidationError("No user has this username.")
        return username


class LoginAttemptAdmin(AccessAttemptAdmin):
    """django-axes' failed-login records, with an audited Unlock, and a form to lift a
    username's slowdown, for staff who may delete them."""

    actions = [*AccessAttemptAdmin.actions, "unlock"]
    change_list_template = "admin/axes/accessattempt/change_list.html"

    def get_changelist(self, request, **kwargs):
        return CalendarSafeChangeList

    @admin.action(description="Unlock these usernames from these addresses", permissions=["delete"])
    def unlock(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        # Per (username, address): a row of the attacker's, left unselected, keeps its
        # lockout when staff unlock the real user's address.
        pairs = sorted(
            {(a.username, a.ip_address) for a in queryset if a.username},
            key=lambda pair: (pair[0], pair[1] or ""),
        )
        for username, ip_address in pairs:
            login_unlock(username=username, ip_address=ip_address, actor=request.user)
        unlocked = ", ".join(f"{u} from {ip or 'an unknown address'}" for u, ip in pairs)
        self.message_user(request, f"Unlocked {unlocked or 'nobody'}.")

    def get_urls(self):
        return [
            path(
                "clear-slowdown/",
                self.admin_site.admin_view(self.clear_slowdown_view),
                name="axes_accessattempt_clear_slowdown",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        may = self.has_delete_permission(request)
        return super().changelist_view(
            request, {**(extra_context or {}), "may_clear_slowdown": may}
        )

    def clear_slowdown_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_delete_permission(request):
            raise PermissionDenied
        form = LoginSlowdownForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            username = form.cleaned_data["username"]
            failures = login_slowdown_lift(username=username, actor=request.user)
            self.message_user(
                request,
                f"Cleared the login slowdown for {username} ({failures} failed logins "
                "were counted). Lockouts from single addresses stay: Unlock those rows.",
            )
            return redirect("admin:axes_accessattempt_changelist")
        return TemplateResponse(
            request,
            "admin/connections/form_page.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Clear login slowdown for a username",
                "form": form,
                "submit_label": "Clear slowdown",
                "intro": "Failed logins for a username from any address slow down new "
                "browsers trying it, whether or not records remain below. This forgets "
                "them, for that username only.",
            },
        )


class CalendarSafeAccessLogAdmin(AccessLogAdmin):
    def get_changelist(self, request, **kwargs):
        return CalendarSafeChangeList


class CalendarSafeAccessFailureLogAdmin(AccessFailureLogAdmin):
    def get_changelist(self, request, **kwargs):
        return CalendarSafeChangeList


# axes registers its own (AXES_ENABLE_ADMIN); their date hierarchy overflowed (a 500).
for _axes_model, _axes_admin in (
    (AccessAttempt, LoginAttemptAdmin),
    (AccessLog, CalendarSafeAccessLogAdmin),
    (AccessFailureLog, CalendarSafeAccessFailureLogAdmin),
):
    if admin.site.is_registered(_axes_model):
        admin.site.unregister(_axes_model)
    admin.site.register(_axes_model, _axes_admin)
