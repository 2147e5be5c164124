"""Magic links: issued, opened, completed; issue one, revoke one."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join

from connections.crypto import decrypt, encrypt
from connections.forms import MagicLinkIssueForm, pk_or_none, reconnect_choices, reconnect_label
from connections.integrations import connection_label, integration_display_name
from connections.link import magic_links as magic_link_service
from connections.models import Connection, MagicLink
from customers.models import Customer

ISSUED_SESSION_KEY = "dockside_issued_magic_link"


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
